"""The admin CLI's old look-ups on one asyncpg connection, kept for the commands not moved
yet: the management tables' SQL and operations now live in the management API's admin
(:mod:`services.api.admin`, :mod:`services.api.repository`), which the CLI and the API
share. New code calls ``services.api.admin`` through ``cli.context.run_admin``.

Each function here answers as it used to: plain dicts, and a refusal as a
:class:`~cli.output.CliError` with a message that says what to do.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg

from cli.output import cli_error
from shared.errors import AdminError

if TYPE_CHECKING:
    from services.api.admin import Repository

T = TypeVar("T")


def _admin() -> ModuleType:
    # Imported when a look-up runs, not when the CLI starts (it is most of its start-up).
    from services.api import admin

    return admin


def as_uuid(value: str) -> uuid.UUID | None:
    result: uuid.UUID | None = _admin().as_uuid(value)
    return result


async def _cli(work: Awaitable[T]) -> T:
    try:
        return await work
    except AdminError as err:
        raise cli_error(err) from None


def _repo(conn: asyncpg.Connection) -> Repository:
    repo: Repository = _admin().PostgresRepository(conn)
    return repo


async def get_workspace(conn: asyncpg.Connection, ref: str) -> dict[str, Any]:
    """A workspace by name or id."""
    return await _cli(_admin().find_workspace(_repo(conn), ref))


async def workspace_filter(conn: asyncpg.Connection, ref: str | None) -> uuid.UUID | None:
    """The id of the workspace a listing is narrowed to (``--workspace``), None for all."""
    return await _cli(_admin().workspace_filter(_repo(conn), ref))


async def get_webhook(
    conn: asyncpg.Connection, ref: str, workspace: str | None = None
) -> dict[str, Any]:
    """A webhook by id, or by name (within ``workspace`` when given, else unique overall)."""
    return await _cli(_admin().find_webhook(_repo(conn), ref, workspace))
