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
from typing import Any, TypeVar

import asyncpg

from cli.output import cli_error
from services.api import admin

T = TypeVar("T")

as_uuid = admin.as_uuid


async def _cli(work: Awaitable[T]) -> T:
    try:
        return await work
    except admin.AdminError as err:
        raise cli_error(err) from None


def _repo(conn: asyncpg.Connection) -> admin.Repository:
    return admin.PostgresRepository(conn)


async def get_workspace(conn: asyncpg.Connection, ref: str) -> dict[str, Any]:
    """A workspace by name or id."""
    return await _cli(admin.find_workspace(_repo(conn), ref))


async def workspace_filter(conn: asyncpg.Connection, ref: str | None) -> uuid.UUID | None:
    """The id of the workspace a listing is narrowed to (``--workspace``), None for all."""
    return await _cli(admin.workspace_filter(_repo(conn), ref))


async def get_webhook(
    conn: asyncpg.Connection, ref: str, workspace: str | None = None
) -> dict[str, Any]:
    """A webhook by id, or by name (within ``workspace`` when given, else unique overall)."""
    return await _cli(admin.find_webhook(_repo(conn), ref, workspace))
