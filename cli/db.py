"""``leadwire db migrate``: apply the numbered SQL migrations (safe to run again)."""

from __future__ import annotations

import asyncio

import asyncpg
import typer

from cli.context import load_settings
from cli.output import CliError, JsonFlag, emit, fail
from shared.db import migrate, migration_files

db_app = typer.Typer(name="db", help="The database schema.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")


@db_app.command("migrate")
def migrate_command(as_json: JsonFlag = False) -> None:
    """Apply pending migrations (each in its own transaction; re-running is a no-op)."""
    settings = load_settings()
    try:
        applied = asyncio.run(migrate(settings.database_url))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        fail(
            CliError(
                f"cannot migrate the database ({type(exc).__name__}: {exc})",
                hint="start the stack with `make up`, or set LEADWIRE_DATABASE_URL",
            ),
            as_json=as_json,
        )
    known = [version for version, _ in migration_files()]
    data = {"applied": applied, "current": known[-1] if known else None, "known": len(known)}
    emit(
        data,
        as_json=as_json,
        text=(
            f"applied {len(applied)} migration(s): {', '.join(applied)}"
            if applied
            else f"up to date ({data['current']})"
        ),
    )
