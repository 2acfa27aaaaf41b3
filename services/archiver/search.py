"""Reading archived requests back: one by id, or a webhook's requests of a time window.

Through the index: a row names the segment, and the gzip member inside it, that holds the
record, so reading one record is one ranged GET of one member (tens of kilobytes), and a
window's records are read member by member, each member once.

Objects of the first layout (one per request, not in the index until ``archive compact``
rewrites them) stay readable: :func:`read_record` falls back to the request's pointer
object, and :func:`find_archived` adds a window's first-layout records found by listing
its day folders.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeVar

import orjson

from services.archiver import records, segments
from services.archiver.index import ArchiveIndex, IndexRow, Query
from services.archiver.repository import Archive, ObjectReader

T = TypeVar("T")
U = TypeVar("U")

STATUSES = ("processed", "failed", "rejected")
MATCH_TYPES = ("crm_id", "phone", "email", "new")
_PAGE = 1000


@dataclass(frozen=True, slots=True)
class ArchivedEntry:
    key: str
    request_id: uuid.UUID
    received_at: datetime
    status: str
    replay_of: uuid.UUID | None
    record: dict[str, Any] | None = None


async def bounded_map(
    items: Iterable[T], work: Callable[[T], Awaitable[U]], *, concurrency: int = 16
) -> list[U]:
    """``work`` over ``items`` with at most ``concurrency`` in flight, results in order."""
    limit = asyncio.Semaphore(concurrency)

    async def one(item: T) -> U:
        async with limit:
            return await work(item)

    return list(await asyncio.gather(*(one(i) for i in items)))


# --- through the index ----------------------------------------------------------------------


# One gzip member of one segment: (segment key, member offset, member length).
Member = tuple[str, int, int]


def _member(row: IndexRow) -> Member:
    p = row.placement
    return (row.segment_key, p.member_offset, p.member_length)


async def read_member(archive: ObjectReader, member: Member) -> list[bytes] | None:
    """The lines of one member of a segment, or None when the segment is gone."""
    key, offset, length = member
    data = await archive.get_bytes(key, start=offset, length=length)
    return segments.decode(data) if data is not None else None


def _pick(lines: list[bytes] | None, row: IndexRow) -> dict[str, Any] | None:
    at = row.placement.line - row.placement.member_first_line
    if lines is None or not 0 <= at < len(lines):
        return None
    record = orjson.loads(lines[at])
    return record if isinstance(record, dict) else None


async def read_record(
    archive: ObjectReader, index: ArchiveIndex, request_id: uuid.UUID
) -> dict[str, Any] | None:
    """One request's record: index -> member -> line; else its first-layout pointer."""
    row = await index.get(request_id)
    if row is not None:
        return _pick(await read_member(archive, _member(row)), row)
    pointer = await archive.get_json(records.pointer_key(request_id))
    key = pointer.get("key") if isinstance(pointer, dict) else None
    record = await archive.get_json(key) if isinstance(key, str) else None
    return record if isinstance(record, dict) else None


async def index_rows(index: ArchiveIndex, query: Query) -> list[IndexRow]:
    """Every row matching ``query``, oldest first (read page by page)."""
    rows: list[IndexRow] = []
    while True:
        after = (rows[-1].facts.received_at, rows[-1].request_id) if rows else None
        page = await index.search(query, limit=_PAGE, after=after)
        rows += page
        if len(page) < _PAGE:
            return rows


async def read_records(
    archive: Archive,
    rows: list[IndexRow],
    *,
    concurrency: int = 16,
    on_loaded: Callable[[int], None] | None = None,
) -> dict[uuid.UUID, dict[str, Any] | None]:
    """The records of ``rows``, each member read once (None where a record is missing)."""
    by_member: dict[Member, list[IndexRow]] = {}
    for row in rows:
        by_member.setdefault(_member(row), []).append(row)
    out: dict[uuid.UUID, dict[str, Any] | None] = {}

    async def load(member: Member) -> None:
        lines = await read_member(archive, member)
        for row in by_member[member]:
            out[row.request_id] = _pick(lines, row)
        if on_loaded:
            on_loaded(len(by_member[member]))

    await bounded_map(by_member, load, concurrency=concurrency)
    return out


# --- walking day folders ------------------------------------------------------------------


def _is_uuid(prefix: str) -> bool:
    try:
        uuid.UUID(prefix.rstrip("/").rsplit("/", 1)[-1])
        return True
    except ValueError:
        return False


def _day(prefix: str) -> date | None:
    """The date of a ``.../<yyyy>/<mm>/<dd>/`` folder."""
    parts = prefix.rstrip("/").split("/")
    try:
        return date(int(parts[-3]), int(parts[-2]), int(parts[-1]))
    except (ValueError, IndexError):
        return None


async def _days_below(archive: Archive, prefix: str) -> AsyncIterator[tuple[str, date]]:
    for year in await archive.children(prefix):
        for month in await archive.children(year):
            for day_prefix in await archive.children(month):
                day = _day(day_prefix)
                if day is not None:
                    yield day_prefix, day


async def legacy_days(archive: Archive) -> AsyncIterator[tuple[str, date]]:
    """Every first-layout day folder ``<workspace>/<webhook>/<yyyy>/<mm>/<dd>/`` and its
    date, reading folder names level by level (delimiter listings), never object lists."""
    for workspace in await archive.children(""):
        if not _is_uuid(workspace):
            continue  # archive/ (segments), by-request/ (pointers)
        for webhook in await archive.children(workspace):
            if _is_uuid(webhook):
                async for found in _days_below(archive, webhook):
                    yield found


async def segment_days(archive: Archive) -> AsyncIterator[tuple[str, date]]:
    """Every segment day folder ``archive/<workspace>/<yyyy>/<mm>/<dd>/`` and its date."""
    for workspace in await archive.children(segments.PREFIX):
        if _is_uuid(workspace):
            async for found in _days_below(archive, workspace):
                yield found


# --- a webhook's window, both layouts -------------------------------------------------------


def entry_from_record(key: str, record: dict[str, Any]) -> ArchivedEntry:
    facts = records.facts(record)
    return ArchivedEntry(
        key=key,
        request_id=facts.request_id,
        received_at=facts.received_at,
        status=facts.status,
        replay_of=facts.replay_of,
        record=record,
    )


async def legacy_keys(
    archive: Archive, workspace_id: uuid.UUID, webhook_id: uuid.UUID, days: Iterable[date]
) -> AsyncIterator[str]:
    """Every first-layout record key of a webhook received on the given UTC days."""
    for day in days:
        async for key in archive.keys(records.day_prefix(workspace_id, webhook_id, day)):
            if records.parse_record_key(key) is not None:
                yield key


async def _legacy_entry(archive: Archive, key: str) -> ArchivedEntry | None:
    record = await archive.get_json(key)
    if not isinstance(record, dict):
        return None  # gone since the listing (pruned, compacted) or not a record
    try:
        return entry_from_record(key, record)
    except (KeyError, ValueError):
        return None


async def find_archived(
    archive: Archive,
    index: ArchiveIndex,
    *,
    workspace_id: uuid.UUID,
    webhook_id: uuid.UUID,
    since: datetime,
    until: datetime,
    status: str | None = None,
    concurrency: int = 16,
    on_listed: Callable[[int], None] | None = None,
    on_loaded: Callable[[int], None] | None = None,
) -> list[ArchivedEntry]:
    """A webhook's archived requests received in [since, until) with their records,
    oldest first; filtered by status. Indexed ones first, then first-layout objects the
    index does not hold."""
    query = Query(
        workspace_id=workspace_id, webhook_id=webhook_id, status=status, since=since, until=until
    )
    rows = await index_rows(index, query)
    legacy = [
        k
        async for k in legacy_keys(
            archive, workspace_id, webhook_id, records.days_between(since, until)
        )
    ]
    if on_listed:
        on_listed(len(rows) + len(legacy))
    loaded = await read_records(archive, rows, concurrency=concurrency, on_loaded=on_loaded)
    found = [
        ArchivedEntry(
            key=row.segment_key,
            request_id=row.request_id,
            received_at=row.facts.received_at,
            status=row.facts.status,
            replay_of=row.facts.replay_of,
            record=loaded.get(row.request_id),
        )
        for row in rows
    ]
    indexed = {row.request_id for row in rows}

    async def one(key: str) -> ArchivedEntry | None:
        try:
            return await _legacy_entry(archive, key)
        finally:
            if on_loaded:
                on_loaded(1)

    for entry in await bounded_map(legacy, one, concurrency=concurrency):
        if (
            entry is not None
            and entry.request_id not in indexed
            and since <= entry.received_at < until
            and (status is None or entry.status == status)
        ):
            found.append(entry)
    found.sort(key=lambda e: (e.received_at, str(e.request_id)))
    return found
