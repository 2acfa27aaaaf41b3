"""The archive's index in Postgres (table ``archive_index``): one row per archived request,
naming its segment, line and gzip member, with the fields the admin commands filter on.

:class:`ArchiveIndex` is what the archiver and the admin commands need of it;
:class:`PgIndex` keeps it in Postgres (on a pool or one connection), :class:`FakeIndex`
in memory for unit tests (held to the same answers by a contract test).

- The writer inserts a flush's rows in one statement, after the segment is stored.
  ``ON CONFLICT DO NOTHING``: a request has one row, the first archived.
- :meth:`ArchiveIndex.known` is how the writer skips requests already archived (one
  query per batch), which makes a redelivery, a re-run after a crash or a replay of the
  outcome topic from offset 0 add nothing.
- Searches page by ``(received_at, request_id)`` (a keyset cursor), oldest first.
"""

from __future__ import annotations

import base64
import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any, Protocol

import asyncpg

from services.archiver.records import RecordFacts
from services.archiver.segments import Placement


@dataclass(frozen=True, slots=True)
class IndexRow:
    """One archived request: its facts and where its record is."""

    facts: RecordFacts
    segment_key: str
    placement: Placement
    archived_at: datetime | None = None

    @property
    def request_id(self) -> uuid.UUID:
        return self.facts.request_id

    def summary(self) -> dict[str, Any]:
        """JSON-ready, for ``archive list|search``."""
        f = self.facts
        return {
            "request_id": str(f.request_id),
            "received_at": f.received_at.isoformat(),
            "status": f.status,
            "match_type": f.match_type,
            "error_type": f.error_type,
            "replay_of": str(f.replay_of) if f.replay_of else None,
            "webhook_id": str(f.webhook_id),
            "workspace_id": str(f.workspace_id),
            "segment": self.segment_key,
            "line": self.placement.line,
        }


@dataclass(frozen=True, slots=True)
class Query:
    """Which archived requests: every field given must match; received in [since, until)."""

    workspace_id: uuid.UUID | None = None
    webhook_id: uuid.UUID | None = None
    status: str | None = None
    error_type: str | None = None
    match_type: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def matches(self, f: RecordFacts) -> bool:
        return (
            all(
                want is None or want == have
                for want, have in (
                    (self.workspace_id, f.workspace_id),
                    (self.webhook_id, f.webhook_id),
                    (self.status, f.status),
                    (self.error_type, f.error_type),
                    (self.match_type, f.match_type),
                )
            )
            and (self.since is None or f.received_at >= self.since)
            and (self.until is None or f.received_at < self.until)
        )


# The position after which a page starts: (received_at, request_id) of the last row seen.
Cursor = tuple[datetime, uuid.UUID]


def encode_cursor(row: IndexRow) -> str:
    text = f"{row.facts.received_at.isoformat()}|{row.request_id}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(value: str) -> Cursor:
    """``ValueError`` for anything :func:`encode_cursor` did not make."""
    try:
        text = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
        moment, rid = text.split("|")
        return datetime.fromisoformat(moment), uuid.UUID(rid)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{value!r} is not a cursor this command gave") from exc


@dataclass(frozen=True)
class Expired:
    """What a retention cut-off covers in the index."""

    segments: list[str] = field(default_factory=list)
    records: int = 0


class ArchiveIndex(Protocol):
    async def ping(self) -> bool:
        """True when the index answers."""
        ...

    async def known(self, request_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Which of these requests are archived already."""
        ...

    async def insert(self, rows: Sequence[IndexRow]) -> None:
        """Add rows (one statement); a request already indexed keeps its row."""
        ...

    async def get(self, request_id: uuid.UUID) -> IndexRow | None: ...

    async def search(
        self, query: Query, *, limit: int, after: Cursor | None = None
    ) -> list[IndexRow]:
        """Up to ``limit`` matching rows after ``after``, oldest first."""
        ...

    async def expired(self, cutoff: datetime) -> Expired:
        """The segments (and how many records) of requests received before ``cutoff``."""
        ...

    async def delete_segments(self, keys: Sequence[str]) -> int:
        """Delete the rows of these segments; how many."""
        ...

    async def segments_between(
        self, since: datetime, until: datetime, workspace_id: uuid.UUID | None = None
    ) -> list[str]:
        """Keys of the segments holding requests received in [since, until), sorted."""
        ...


# The archiver's sessions: every statement planned for the table as it is now. asyncpg
# prepares each statement, and Postgres otherwise keeps a generic plan until the table is
# next analyzed: one made while archive_index was empty read :data:`KNOWN` by a sequential
# scan of the whole table (22 ms a batch at 10,000 rows) as it grew. These statements are
# small: planning each run costs little.
SESSION = {"plan_cache_mode": "force_custom_plan"}
KNOWN = "SELECT request_id FROM archive_index WHERE request_id = ANY($1::uuid[])"

_FACTS = [f.name for f in fields(RecordFacts)]
_PLACEMENT = [f.name for f in fields(Placement)]
_COLUMNS = ", ".join([*_FACTS, "segment_key", *_PLACEMENT])
# unnest's casts, in _COLUMNS' order.
_TYPES = "uuid uuid uuid timestamptz text text text uuid text int bigint int int".split()
_INSERT = (
    f"INSERT INTO archive_index ({_COLUMNS}) SELECT * FROM unnest("
    + ", ".join(f"${i}::{t}[]" for i, t in enumerate(_TYPES, start=1))
    + ") ON CONFLICT (request_id) DO NOTHING"
)


def _columns(rows: Sequence[IndexRow]) -> list[list[Any]]:
    """The rows as unnest's arrays, in _COLUMNS' order (one pass per column: cheaper than
    transposing tuples on the archiver's hot path)."""
    facts = [r.facts for r in rows]
    places = [r.placement for r in rows]
    return [
        *([getattr(f, n) for f in facts] for n in _FACTS),
        [r.segment_key for r in rows],
        *([getattr(p, n) for p in places] for n in _PLACEMENT),
    ]


def _row(r: asyncpg.Record) -> IndexRow:
    return IndexRow(
        facts=RecordFacts(*(r[n] for n in _FACTS)),
        segment_key=r["segment_key"],
        placement=Placement(*(r[n] for n in _PLACEMENT)),
        archived_at=r["archived_at"],
    )


def _where(query: Query, after: Cursor | None) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    for column, value in (
        ("workspace_id", query.workspace_id),
        ("webhook_id", query.webhook_id),
        ("status", query.status),
        ("error_type", query.error_type),
        ("match_type", query.match_type),
    ):
        if value is not None:
            args.append(value)
            clauses.append(f"{column} = ${len(args)}")
    if query.since is not None:
        args.append(query.since)
        clauses.append(f"received_at >= ${len(args)}")
    if query.until is not None:
        args.append(query.until)
        clauses.append(f"received_at < ${len(args)}")
    if after is not None:
        args += list(after)
        clauses.append(f"(received_at, request_id) > (${len(args) - 1}, ${len(args)})")
    return (" AND ".join(clauses) or "TRUE"), args


class PgIndex:
    """:class:`ArchiveIndex` in Postgres, on a pool (the archiver) or one connection (the
    admin commands)."""

    def __init__(self, db: asyncpg.Pool | asyncpg.Connection) -> None:
        self._db = db

    @contextlib.asynccontextmanager
    async def _conn(self, timeout: float | None = None) -> AsyncIterator[asyncpg.Connection]:
        if isinstance(self._db, asyncpg.Pool):
            async with self._db.acquire(timeout=timeout) as conn:
                yield conn
        else:
            yield self._db

    async def ping(self) -> bool:
        async with self._conn(timeout=2) as conn:
            return bool(await conn.fetchval("SELECT 1", timeout=2) == 1)

    async def known(self, request_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        if not request_ids:
            return set()
        async with self._conn() as conn:
            rows = await conn.fetch(KNOWN, list(request_ids))
        return {r["request_id"] for r in rows}

    async def insert(self, rows: Sequence[IndexRow]) -> None:
        if not rows:
            return
        columns = _columns(rows)
        async with self._conn() as conn:
            await conn.execute(_INSERT, *columns)

    async def get(self, request_id: uuid.UUID) -> IndexRow | None:
        async with self._conn() as conn:
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS}, archived_at FROM archive_index WHERE request_id = $1",
                request_id,
            )
        return _row(row) if row is not None else None

    async def search(
        self, query: Query, *, limit: int, after: Cursor | None = None
    ) -> list[IndexRow]:
        where, args = _where(query, after)
        args.append(limit)
        sql = (
            f"SELECT {_COLUMNS}, archived_at FROM archive_index WHERE {where} "
            f"ORDER BY received_at, request_id LIMIT ${len(args)}"
        )
        async with self._conn() as conn:
            return [_row(r) for r in await conn.fetch(sql, *args)]

    async def expired(self, cutoff: datetime) -> Expired:
        async with self._conn() as conn:
            rows = await conn.fetch(
                "SELECT segment_key, count(*) AS n FROM archive_index WHERE received_at < $1 "
                "GROUP BY segment_key ORDER BY segment_key",
                cutoff,
            )
        return Expired(segments=[r["segment_key"] for r in rows], records=sum(r["n"] for r in rows))

    async def delete_segments(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        async with self._conn() as conn:
            done = await conn.execute(
                "DELETE FROM archive_index WHERE segment_key = ANY($1::text[])", list(keys)
            )
        return int(done.split()[-1])

    async def segments_between(
        self, since: datetime, until: datetime, workspace_id: uuid.UUID | None = None
    ) -> list[str]:
        query = Query(workspace_id=workspace_id, since=since, until=until)
        where, args = _where(query, None)
        async with self._conn() as conn:
            rows = await conn.fetch(
                f"SELECT DISTINCT segment_key FROM archive_index WHERE {where} ORDER BY 1", *args
            )
        return [r["segment_key"] for r in rows]


@dataclass
class FakeIndex:
    """:class:`ArchiveIndex` in memory. ``down = True`` fails every call like an
    unreachable database."""

    rows: dict[uuid.UUID, IndexRow] = field(default_factory=dict)
    down: bool = False
    inserts: int = 0

    def _check(self) -> None:
        if self.down:
            raise ConnectionRefusedError("index unreachable")

    async def ping(self) -> bool:
        return not self.down

    async def known(self, request_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        self._check()
        return {r for r in request_ids if r in self.rows}

    async def insert(self, rows: Sequence[IndexRow]) -> None:
        self._check()
        self.inserts += 1
        now = datetime.now(UTC)
        for row in rows:
            self.rows.setdefault(row.request_id, replace(row, archived_at=now))

    async def get(self, request_id: uuid.UUID) -> IndexRow | None:
        self._check()
        return self.rows.get(request_id)

    async def search(
        self, query: Query, *, limit: int, after: Cursor | None = None
    ) -> list[IndexRow]:
        self._check()
        found = sorted(
            (r for r in self.rows.values() if query.matches(r.facts)),
            key=lambda r: (r.facts.received_at, r.request_id),
        )
        if after is not None:
            found = [r for r in found if (r.facts.received_at, r.request_id) > after]
        return found[:limit]

    async def expired(self, cutoff: datetime) -> Expired:
        self._check()
        old = [r for r in self.rows.values() if r.facts.received_at < cutoff]
        return Expired(segments=sorted({r.segment_key for r in old}), records=len(old))

    async def delete_segments(self, keys: Sequence[str]) -> int:
        self._check()
        gone = [rid for rid, r in self.rows.items() if r.segment_key in set(keys)]
        for rid in gone:
            del self.rows[rid]
        return len(gone)

    async def segments_between(
        self, since: datetime, until: datetime, workspace_id: uuid.UUID | None = None
    ) -> list[str]:
        self._check()
        query = Query(workspace_id=workspace_id, since=since, until=until)
        return sorted({r.segment_key for r in self.rows.values() if query.matches(r.facts)})
