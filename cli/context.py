"""Settings for the CLI: the same LEADWIRE_* env vars the services read, or, when they
are not set, the running local stack's ``.leadwire/stack.env``."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg

from cli.output import CliError, cli_error, fail
from shared.db import connect
from shared.errors import AdminError
from shared.logs import configure_logging
from shared.settings import CommonSettings

if TYPE_CHECKING:
    from services.api.admin import Repository

T = TypeVar("T")


def _find_stack_env() -> Path | None:
    explicit = os.environ.get("LEADWIRE_STACK_ENV")
    if explicit:
        return Path(explicit)
    for folder in (Path.cwd(), *Path.cwd().parents):
        candidate = folder / ".leadwire" / "stack.env"
        if candidate.exists():
            return candidate
    return None


_logging_ready = False


def configure_cli_logging() -> None:
    """Library logs (migrations, Kafka clients) go to stderr, warnings and up only: stdout
    is the command's result (one JSON document with --json)."""
    global _logging_ready
    if not _logging_ready:
        configure_logging("cli", level=os.environ.get("LEADWIRE_CLI_LOG_LEVEL", "WARNING"))
        _logging_ready = True


def load_settings() -> CommonSettings:
    """Env vars win; stack.env fills what they leave unset."""
    configure_cli_logging()
    values: dict[str, str] = {}
    path = _find_stack_env()
    if path and path.exists():
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            key, _, value = line.removeprefix("export ").partition("=")
            values[key.strip()] = value.strip().strip("'\"")
    fields: dict[str, Any] = {}
    for key, value in values.items():
        name = key.removeprefix("LEADWIRE_").lower()
        if (
            key.startswith("LEADWIRE_")
            and name in CommonSettings.model_fields
            and key not in os.environ
        ):
            fields[name] = value
    return CommonSettings(**fields)


@contextlib.asynccontextmanager
async def database(settings: CommonSettings) -> AsyncIterator[asyncpg.Connection]:
    """One Postgres connection; connection and schema errors become clear CLI errors."""
    try:
        conn = await connect(settings.database_url, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise CliError(
            f"cannot connect to Postgres ({type(exc).__name__})",
            hint="start the stack with `make up`, or set LEADWIRE_DATABASE_URL",
        ) from exc
    try:
        yield conn
    except asyncpg.UndefinedTableError as exc:
        raise CliError(
            "the database has no leadwire schema", hint="run `leadwire db migrate`"
        ) from exc
    finally:
        await conn.close()


def run_async(work: Callable[[CommonSettings], Coroutine[Any, Any, T]], *, as_json: bool) -> T:
    """Run ``work(settings)``; a :class:`CliError` (or a refusal of the management admin)
    becomes the command's error."""
    settings = load_settings()
    try:
        return asyncio.run(work(settings))
    except CliError as err:
        fail(err, as_json=as_json)
    except AdminError as err:
        fail(cli_error(err), as_json=as_json)


def run_db(work: Callable[[asyncpg.Connection], Awaitable[T]], *, as_json: bool) -> T:
    """Run ``work`` on one Postgres connection; connection errors become clear CLI errors."""

    async def _main(settings: CommonSettings) -> T:
        async with database(settings) as conn:
            try:
                return await work(conn)
            except asyncpg.UndefinedTableError:
                raise
            except asyncpg.PostgresError as exc:
                # Constraint checks the CLI did not catch first (the row stays unchanged).
                raise CliError(
                    f"the database refused the change ({type(exc).__name__}: {exc})"
                ) from exc

    return run_async(_main, as_json=as_json)


def run_admin(work: Callable[[Repository], Awaitable[T]], *, as_json: bool) -> T:
    from services.api.admin import PostgresRepository  # the management domain, when used

    """Run a management operation (:mod:`services.api.admin`) on the management tables,
    through one Postgres connection."""
    return run_db(lambda conn: work(PostgresRepository(conn)), as_json=as_json)
