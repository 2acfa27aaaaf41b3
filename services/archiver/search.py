"""Finding archived requests of a webhook in a time window.

Keys carry the UTC day, so a window reads only the day folders it touches (one listing
per day). Status and exact receive time come from the object's metadata (a HEAD, no body)
and, for objects stored without metadata, from the record itself.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeVar

from services.archiver import records
from services.archiver.repository import Archive

T = TypeVar("T")
U = TypeVar("U")

STATUSES = ("processed", "failed", "rejected")


@dataclass(frozen=True, slots=True)
class ListedRecord:
    key: str
    parts: records.RecordKey


@dataclass(frozen=True, slots=True)
class ArchivedEntry:
    key: str
    request_id: uuid.UUID
    received_at: datetime
    status: str
    replay_of: uuid.UUID | None
    record: dict[str, Any] | None = None

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "request_id": str(self.request_id),
            "received_at": self.received_at.isoformat(),
            "status": self.status,
            "replay_of": str(self.replay_of) if self.replay_of else None,
            "key": self.key,
        }
        if self.record is not None:
            out["result"] = self.record.get("result")
            out["error"] = self.record.get("error")
        return out


async def bounded_map(
    items: Iterable[T], work: Callable[[T], Awaitable[U]], *, concurrency: int = 16
) -> list[U]:
    """``work`` over ``items`` with at most ``concurrency`` in flight, results in order."""
    limit = asyncio.Semaphore(concurrency)

    async def one(item: T) -> U:
        async with limit:
            return await work(item)

    return list(await asyncio.gather(*(one(i) for i in items)))


def entry_from_record(key: str, record: dict[str, Any]) -> ArchivedEntry:
    replay_of = record.get("replay_of")
    return ArchivedEntry(
        key=key,
        request_id=uuid.UUID(str(record["request_id"])),
        received_at=records.parse_time(str(record["timestamp"])),
        status=str(record.get("status") or (record.get("result") or {}).get("status")),
        replay_of=uuid.UUID(str(replay_of)) if replay_of else None,
        record=record,
    )


async def records_for_days(
    archive: Archive, workspace_id: uuid.UUID, webhook_id: uuid.UUID, days: Iterable[date]
) -> AsyncIterator[ListedRecord]:
    """Every record of a webhook received on the given UTC days (key order)."""
    for day in days:
        async for key in archive.keys(records.day_prefix(workspace_id, webhook_id, day)):
            parts = records.parse_record_key(key)
            if parts is not None:
                yield ListedRecord(key=key, parts=parts)


async def find_archived(
    archive: Archive,
    *,
    workspace_id: uuid.UUID,
    webhook_id: uuid.UUID,
    since: datetime,
    until: datetime,
    status: str | None = None,
    with_records: bool = False,
    concurrency: int = 16,
    on_listed: Callable[[int], None] | None = None,
    on_loaded: Callable[[], None] | None = None,
) -> list[ArchivedEntry]:
    """Archived requests received in [since, until), oldest first; filtered by status."""
    listed: list[ListedRecord] = [
        item
        async for item in records_for_days(
            archive, workspace_id, webhook_id, records.days_between(since, until)
        )
    ]
    if on_listed:
        on_listed(len(listed))

    async def load(item: ListedRecord) -> ArchivedEntry | None:
        try:
            entry = await _load(archive, item, with_records=with_records)
        finally:
            if on_loaded:
                on_loaded()
        return entry

    loaded = await bounded_map(listed, load, concurrency=concurrency)
    found = [
        e
        for e in loaded
        if e is not None
        and since <= e.received_at < until
        and (status is None or e.status == status)
    ]
    found.sort(key=lambda e: (e.received_at, str(e.request_id)))
    return found


async def _load(
    archive: Archive, item: ListedRecord, *, with_records: bool
) -> ArchivedEntry | None:
    if not with_records:
        meta = await archive.metadata(item.key)
        if meta and meta.get("status") and meta.get("received-at"):
            replay_of = meta.get("replay-of")
            return ArchivedEntry(
                key=item.key,
                request_id=item.parts.request_id,
                received_at=records.parse_time(meta["received-at"]),
                status=meta["status"],
                replay_of=uuid.UUID(replay_of) if replay_of else None,
            )
    record = await archive.get_json(item.key)
    if not isinstance(record, dict):
        return None  # gone since the listing (pruned) or not a record
    try:
        return entry_from_record(item.key, record)
    except (KeyError, ValueError):
        return None
