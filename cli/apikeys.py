"""``leadwire apikey create|list|revoke``: the keys of the management API (and, next, of
every API that reads a workspace's data).

A key is printed once, by ``create``; only its sha256 is stored, so a lost key is revoked
and replaced, never shown again. A workspace key sees one workspace; ``--operator`` makes
a key over every workspace. ``read`` keys read; ``manage`` keys also change things. Keys
travel as ``Authorization: Bearer <key>``; a revoke takes effect within a second.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cli.context import run_admin
from cli.options import WorkspaceFilter, object_id
from cli.output import CliError, JsonFlag, emit, fail, table
from services.api import admin

apikey_app = typer.Typer(
    name="apikey",
    help="API keys: who may read or manage a workspace through the management API.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(apikey_app, name="apikey")


def _owner(key: dict[str, Any]) -> str:
    return "every workspace (operator)" if key["operator"] else f"workspace {key['workspace']}"


def _created_text(key: dict[str, Any]) -> str:
    expires = f"expires {key['expires_at']:%Y-%m-%d %H:%M:%S %Z}" if key["expires_at"] else ""
    return "\n".join(
        [
            f"created {key['scope']} key {key['id']} for {_owner(key)}"
            + (f" ({expires})" if expires else ""),
            f"  key:        {key['key']}",
            "  send it as: Authorization: Bearer <key>",
            f"  (shown once: store it now; `leadwire apikey revoke {key['id']}` ends it)",
        ]
    )


@apikey_app.command("create")
def create(
    workspace: Annotated[
        str | None, typer.Option("--workspace", "-W", help="The key's workspace (name or id).")
    ] = None,
    operator: Annotated[
        bool, typer.Option("--operator", help="A key over every workspace (no --workspace).")
    ] = False,
    scope: Annotated[
        str, typer.Option("--scope", help="read (read only) or manage (read and change).")
    ] = "read",
    name: Annotated[str, typer.Option("--name", "-n", help="What the key is for.")] = "",
    expires: Annotated[
        str | None,
        typer.Option("--expires", help="Lifetime, e.g. 90d, 12h (default: no expiry)."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Make an API key and print it (this once)."""
    if operator == (workspace is not None):
        fail(
            CliError("give --workspace W or --operator (one of them)", exit_code=2),
            as_json=as_json,
        )

    async def work(repo: admin.Repository) -> dict[str, Any]:
        lifetime = (
            admin.checks.parse_duration(
                expires, maximum=admin.checks.MAX_KEY_LIFETIME, what="--expires"
            )
            if expires is not None
            else None
        )
        ws = await admin.find_workspace(repo, workspace) if workspace is not None else None
        return await admin.create_api_key(
            repo,
            workspace_id=ws["id"] if ws else None,
            scope=scope,
            name=name,
            expires_in=lifetime,
        )

    emit(run_admin(work, as_json=as_json), as_json=as_json, text=_created_text)


@apikey_app.command("list")
def list_(
    workspace: WorkspaceFilter = None,
    operator: Annotated[bool, typer.Option("--operator", help="Only operator keys.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """List keys (never the keys themselves: their first and last characters)."""

    async def work(repo: admin.Repository) -> list[dict[str, Any]]:
        ws_id = await admin.workspace_filter(repo, workspace)
        return await admin.list_api_keys(repo, ws_id, operator_only=operator)

    def text(rows: list[dict[str, Any]]) -> str:
        shown = [{**r, "workspace": r["workspace"] or "(operator)"} for r in rows]
        return table(
            shown,
            ["id", "workspace", "scope", "name", "key_hint", "state", "expires_at", "last_used_at"],
        )

    emit(run_admin(work, as_json=as_json), as_json=as_json, text=text)


@apikey_app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (see `leadwire apikey list`).")],
    as_json: JsonFlag = False,
) -> None:
    """Revoke a key: every service refuses it within a second."""

    async def work(repo: admin.Repository) -> dict[str, Any]:
        return await admin.revoke_api_key(repo, object_id(key_id, "key", "apikey list"))

    emit(
        run_admin(work, as_json=as_json),
        as_json=as_json,
        text=lambda k: f"revoked {k['scope']} key {k['id']} ({k['key_hint']}) of {_owner(k)}",
    )
