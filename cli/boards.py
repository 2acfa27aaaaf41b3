"""``leadwire board create|list``: the boards board rules route contacts to."""

from __future__ import annotations

from typing import Annotated, Any

import asyncpg
import typer

from cli import repository as repo
from cli.context import run_db
from cli.options import Workspace, WorkspaceFilter
from cli.output import JsonFlag, emit, table
from cli.workspaces import check_name

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

    async def work(conn: asyncpg.Connection) -> dict[str, Any]:
        ws = await repo.get_workspace(conn, workspace)
        board = await repo.create_board(conn, ws["id"], check_name("board", name))
        return {**board, "workspace": ws["name"]}

    emit(
        run_db(work, as_json=as_json),
        as_json=as_json,
        text=lambda b: f"created board {b['name']} ({b['id']}) in workspace {b['workspace']}",
    )


@board_app.command("list")
def list_(
    workspace: WorkspaceFilter = None,
    as_json: JsonFlag = False,
) -> None:
    """List boards (all workspaces, or one)."""

    async def work(conn: asyncpg.Connection) -> list[dict[str, Any]]:
        ws_id = await repo.workspace_filter(conn, workspace)
        return await repo.list_boards(conn, ws_id)

    emit(
        run_db(work, as_json=as_json),
        as_json=as_json,
        text=lambda rows: table(rows, ["workspace", "name", "id", "rules"]),
    )
