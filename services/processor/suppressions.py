"""A workspace's suppression list (do-not-contact): its statements and operations, for a
person through :mod:`services.processor.admin` (``leadwire suppress``, the management API).

Values are normalized with the workspace's region and stored as sha256 digests
(:mod:`shared.suppression`); what is shown of an entry is its kind, digest, source and
time, never the value. An import is written in chunks of :data:`CHUNK` rows, one
statement each (``ON CONFLICT DO NOTHING``: an entry already on the list is counted as
such, a re-run adds nothing).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

from services.processor.repository import Connection
from shared.errors import Invalid, NotFound
from shared.suppression import KINDS, Kind, digest, normalize

CHUNK = 5000
MAX_ERRORS_SHOWN = 20

ADD = """
WITH added AS (
    INSERT INTO suppressions (workspace_id, kind, value_sha256, source)
    SELECT $1, u.kind, u.h, $4 FROM unnest($2::text[], $3::bytea[]) AS u(kind, h)
    ON CONFLICT DO NOTHING
    RETURNING 1)
SELECT count(*) FROM added
"""

REMOVE = """
WITH gone AS (
    DELETE FROM suppressions s USING unnest($2::text[], $3::bytea[]) AS u(kind, h)
     WHERE s.workspace_id = $1 AND s.kind = u.kind AND s.value_sha256 = u.h
    RETURNING 1)
SELECT count(*) FROM gone
"""

LIST = """
SELECT kind, encode(value_sha256, 'hex') AS sha256, source, created_at,
       count(*) OVER () AS total
  FROM suppressions
 WHERE workspace_id = $1 AND ($2::text IS NULL OR kind = $2)
   AND ($3::bytea IS NULL OR value_sha256 = $3)
 ORDER BY created_at DESC, kind, value_sha256
 LIMIT $4 OFFSET $5
"""

WORKSPACE = "SELECT default_region, suppressed_mode FROM workspaces WHERE id = $1"
SET_MODE = """
UPDATE workspaces SET suppressed_mode = $2, updated_at = now() WHERE id = $1
RETURNING suppressed_mode
"""


@dataclass
class ImportResult:
    """What an import (or an add) did: rows read, entries added, entries already on the
    list, and the rows refused (line, field, code; the first few)."""

    read: int = 0
    added: int = 0
    already: int = 0
    invalid: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "added": self.added,
            "already": self.already,
            "invalid": self.invalid,
            "errors": self.errors,
        }


async def region(conn: Connection, workspace_id: uuid.UUID) -> str:
    row = await conn.fetchrow(WORKSPACE, workspace_id)
    if row is None:
        raise NotFound("no such workspace", field="workspace_id")
    return str(row["default_region"])


def entry(kind: str, value: str, region: str) -> tuple[Kind, bytes]:
    """A value's stored form; :class:`Invalid` naming the field when it does not normalize."""
    if kind not in KINDS:
        raise Invalid(f"{kind!r} is not phone or email", field="kind", code="invalid_kind")
    try:
        return cast(Kind, kind), digest(normalize(cast(Kind, kind), value, region))
    except ValueError as exc:
        raise Invalid(f"not a valid {kind} ({exc})", field=kind, code=str(exc)) from None


async def _write(
    conn: Connection,
    sql: str,
    workspace_id: uuid.UUID,
    entries: list[tuple[Kind, bytes]],
    *extra: str,
) -> int:
    unique = list(dict.fromkeys(entries))
    n = await conn.fetchval(
        sql, workspace_id, [k for k, _ in unique], [h for _, h in unique], *extra
    )
    return int(n or 0)


async def add(
    conn: Connection,
    workspace_id: uuid.UUID,
    rows: Iterable[tuple[str, str]],
    *,
    source: str,
    on_progress: Callable[[int], None] | None = None,
) -> ImportResult:
    """Put (kind, value) rows on the workspace's list, in chunks; a row that does not
    normalize is counted and named (its line: 1-based position in ``rows``), never added."""
    reg = await region(conn, workspace_id)
    result = ImportResult()
    chunk: list[tuple[Kind, bytes]] = []

    async def flush() -> None:
        if chunk:
            added = await _write(conn, ADD, workspace_id, chunk, source[:300])
            result.added += added
            result.already += len(chunk) - added
            if on_progress is not None:
                on_progress(len(chunk))
            chunk.clear()

    for line, (kind, value) in enumerate(rows, start=1):
        result.read += 1
        try:
            chunk.append(entry(kind, value, reg))
        except Invalid as exc:
            result.invalid += 1
            if on_progress is not None:
                on_progress(1)
            if len(result.errors) < MAX_ERRORS_SHOWN:
                result.errors.append({"line": line, "field": exc.field, "code": exc.code})
            continue
        if len(chunk) >= CHUNK:
            await flush()
    await flush()
    return result


async def remove(conn: Connection, workspace_id: uuid.UUID, rows: Iterable[tuple[str, str]]) -> int:
    """Take (kind, value) rows off the list; how many were on it."""
    reg = await region(conn, workspace_id)
    return await _write(conn, REMOVE, workspace_id, [entry(k, v, reg) for k, v in rows])


async def listing(
    conn: Connection,
    workspace_id: uuid.UUID,
    *,
    kind: str | None = None,
    value: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> dict[str, Any]:
    """The list's entries, newest first (kind, sha256, source, created_at) and their total;
    with ``value`` (and its ``kind``) only that value's entry: is it suppressed?"""
    reg = await region(conn, workspace_id)
    wanted = entry(kind, value, reg)[1] if kind is not None and value is not None else None
    rows = await conn.fetch(LIST, workspace_id, kind, wanted, limit, offset)
    total = int(rows[0]["total"]) if rows else 0
    if not rows and offset:
        first = await conn.fetch(LIST, workspace_id, kind, wanted, 1, 0)
        total = int(first[0]["total"]) if first else 0
    items = [{k: r[k] for k in ("kind", "sha256", "source", "created_at")} for r in rows]
    return {"total": total, "items": items}


async def set_mode(conn: Connection, workspace_id: uuid.UUID, mode: str) -> str:
    """What a suppressed lead becomes in the workspace: ``reject`` or ``flag``."""
    if mode not in ("reject", "flag"):
        raise Invalid(f"{mode!r} is not reject or flag", field="suppressed_mode")
    stored = await conn.fetchval(SET_MODE, workspace_id, mode)
    if stored is None:
        raise NotFound("no such workspace", field="workspace_id")
    return str(stored)
