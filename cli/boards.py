"""``leadwire board create|list``: the boards board rules route contacts to."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cli.context import run_admin
from cli.options import Workspace, WorkspaceFilter
from cli.output import JsonFlag, emit, table
from services.api import admin

board_app = typer.Typer(
    name="board",
    help="Boards: where board rules put contacts (a pipeline, a team's queue).",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(board_app, name="board")


@board_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="A board name unique in the workspace.")],
    workspace: Workspace,
    as_json: JsonFlag = False,
) -> None:
    """Create a board in a workspace."""

    async def work(repo: admin.Repository) -> dict[str, Any]:
        return await admin.create_board(repo, await admin.find_workspace(repo, workspace), name)

    emit(
        run_admin(work, as_json=as_json),
        as_json=as_json,
        text=lambda b: f"created board {b['name']} ({b['id']}) in workspace {b['workspace']}",
    )


@board_app.command("list")
def list_(
    workspace: WorkspaceFilter = None,
    as_json: JsonFlag = False,
) -> None:
    """List boards (all workspaces, or one)."""

    async def work(repo: admin.Repository) -> list[dict[str, Any]]:
        return await admin.list_boards(repo, await admin.workspace_filter(repo, workspace))

    emit(
        run_admin(work, as_json=as_json),
        as_json=as_json,
        text=lambda rows: table(rows, ["workspace", "name", "id", "rules"]),
    )
