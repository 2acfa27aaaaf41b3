"""``leadwire workspace create|list|show|disable|enable``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cli.context import run_admin
from cli.output import JsonFlag, emit, table
from services.api import admin

workspace_app = typer.Typer(
    name="workspace",
    help="Workspaces: a customer's leads, contacts, boards and webhooks.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(workspace_app, name="workspace")


def _describe(ws: dict[str, Any]) -> str:
    lines = [
        f"workspace {ws['name']} ({ws['id']})",
        f"  status:         {ws['status']}",
        f"  default region: {ws['default_region']}",
        f"  suppressed:     {ws.get('suppressed_mode', 'reject')} (what a suppressed lead becomes)",
    ]
    for key in ("webhooks", "boards", "rules"):
        if key in ws:
            lines.append(f"  {key + ':':<15} {ws[key]}")
    lines.append(f"  created:        {ws['created_at']:%Y-%m-%d %H:%M:%S %Z}")
    return "\n".join(lines)


@workspace_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="A unique workspace name.")],
    default_region: Annotated[
        str,
        typer.Option(
            "--default-region",
            help="Country whose national phone numbers leads may send (ISO code).",
        ),
    ] = "US",
    as_json: JsonFlag = False,
) -> None:
    """Create a workspace."""

    ws = run_admin(lambda repo: admin.create_workspace(repo, name, default_region), as_json=as_json)
    emit(ws, as_json=as_json, text=lambda w: f"created {_describe(w)}")


@workspace_app.command("list")
def list_(as_json: JsonFlag = False) -> None:
    """List workspaces."""
    rows = run_admin(admin.list_workspaces, as_json=as_json)
    emit(
        rows,
        as_json=as_json,
        text=lambda r: table(r, ["name", "id", "status", "default_region", "webhooks", "boards"]),
    )


@workspace_app.command("show")
def show(
    workspace: Annotated[str, typer.Argument(help="Workspace name or id.")],
    as_json: JsonFlag = False,
) -> None:
    """Show one workspace."""

    async def work(repo: admin.Repository) -> dict[str, Any]:
        ws = await admin.find_workspace(repo, workspace)
        return await admin.get_workspace(repo, ws["id"])

    emit(run_admin(work, as_json=as_json), as_json=as_json, text=_describe)


def _set_status(workspace: str, status: str, as_json: bool) -> None:
    async def work(repo: admin.Repository) -> dict[str, Any]:
        ws = await admin.find_workspace(repo, workspace)
        return await admin.set_workspace_status(repo, ws["id"], status)

    ws = run_admin(work, as_json=as_json)
    emit(ws, as_json=as_json, text=lambda w: f"workspace {w['name']} is {w['status']}")


@workspace_app.command("disable")
def disable(
    workspace: Annotated[str, typer.Argument(help="Workspace name or id.")],
    as_json: JsonFlag = False,
) -> None:
    """Stop accepting leads for every webhook of a workspace (they answer 403/404)."""
    _set_status(workspace, "disabled", as_json)


@workspace_app.command("enable")
def enable(
    workspace: Annotated[str, typer.Argument(help="Workspace name or id.")],
    as_json: JsonFlag = False,
) -> None:
    """Accept leads for a workspace again."""
    _set_status(workspace, "active", as_json)


@workspace_app.command("update")
def update(
    workspace: Annotated[str, typer.Argument(help="Workspace name or id.")],
    suppressed: Annotated[
        str,
        typer.Option(
            "--suppressed",
            help="What a lead whose phone or email is on the suppression list becomes: "
            "reject (rejected as suppressed) or flag (processed, flagged, never sent an SMS).",
        ),
    ],
    as_json: JsonFlag = False,
) -> None:
    """Change a workspace's settings."""
    import asyncpg

    from cli import repository
    from cli.context import run_db
    from services.processor import admin as processor  # the suppression list's owner

    async def work(conn: asyncpg.Connection) -> dict[str, Any]:
        ws = await repository.get_workspace(conn, workspace)
        mode = await processor.set_suppressed_mode(conn, ws["id"], suppressed)
        return {**ws, "suppressed_mode": mode}

    ws = run_db(work, as_json=as_json)
    emit(ws, as_json=as_json, text=lambda w: f"updated {_describe(w)}")
