"""``leadwire archive compact``: rewrite first-layout objects (one per request, plus a
pointer each) into segments with index rows, then delete them.

The walk visits the ``<workspace>/<webhook>/<yyyy>/<mm>/<dd>/`` day folders (from
``since``'s day on) and takes each folder's record keys in chunks of ``chunk`` (key
order), so memory stays bounded on a large folder. Per chunk:

1. read the records; those the index holds already are only deleted (a run that crashed
   after indexing them);
2. group the others by workspace and hour and write one segment per group (its key
   derived from the requests it holds, :func:`segments.compacted_key`), then their index
   rows in one statement;
3. only then delete the chunk's objects and their pointers.

A crash anywhere leaves every record readable, and running compact again finishes the
job without doubling anything: the same chunk gives the same segment keys (overwritten),
and indexed records are not written again.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from services.archiver import records, segments
from services.archiver.index import ArchiveIndex, IndexRow
from services.archiver.repository import Archive
from services.archiver.search import bounded_map, legacy_days


@dataclass
class CompactResult:
    dry_run: bool
    since: str | None
    days: list[str] = field(default_factory=list)
    records: int = 0  # first-layout records found
    rewritten: int = 0  # written into new segments (or, dry run, to be)
    already_indexed: int = 0  # in a segment already: only deleted
    unreadable: int = 0  # not a record: left in place
    segments: list[str] = field(default_factory=list)
    deleted_objects: int = 0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class _Loaded:
    key: str
    record: dict[str, Any]
    facts: records.RecordFacts


async def compact(
    archive: Archive,
    index: ArchiveIndex,
    *,
    since: datetime | None = None,
    dry_run: bool = False,
    chunk: int = 5000,
    level: int = segments.GZIP_LEVEL,
    on_day: Callable[[str], None] | None = None,
) -> CompactResult:
    """Rewrite the first-layout records received on or after ``since``'s day (all without
    it); with ``dry_run`` only count."""
    result = CompactResult(dry_run=dry_run, since=since.isoformat() if since else None)
    first_day = since.astimezone(UTC).date() if since else None
    async for prefix, day in legacy_days(archive):
        if first_day is not None and day < first_day:
            continue
        keys = [k async for k in archive.keys(prefix) if records.parse_record_key(k)]
        if not keys:
            continue
        result.days.append(prefix.rstrip("/"))
        if on_day:
            on_day(prefix.rstrip("/"))
        for start in range(0, len(keys), chunk):
            await _compact_chunk(archive, index, keys[start : start + chunk], result, level)
    return result


async def _compact_chunk(
    archive: Archive, index: ArchiveIndex, keys: list[str], result: CompactResult, level: int
) -> None:
    loaded = [item for item in await bounded_map(keys, lambda k: _load(archive, k)) if item]
    result.records += len(keys)
    result.unreadable += len(keys) - len(loaded)
    known = await index.known([item.facts.request_id for item in loaded])
    fresh = [item for item in loaded if item.facts.request_id not in known]
    result.already_indexed += len(loaded) - len(fresh)
    result.rewritten += len(fresh)
    groups: dict[tuple[uuid.UUID, datetime], list[_Loaded]] = {}
    for item in fresh:
        hour = segments.hour_of(item.facts.received_at)
        groups.setdefault((item.facts.workspace_id, hour), []).append(item)
    written: list[tuple[str, list[_Loaded], list[segments.Placement]]] = []
    for (workspace_id, hour), items in sorted(groups.items(), key=lambda kv: str(kv[0])):
        items.sort(key=lambda i: (i.facts.received_at, str(i.facts.request_id)))
        key = segments.compacted_key(workspace_id, hour, (i.facts.request_id for i in items))
        result.segments.append(key)
        if result.dry_run:
            continue
        lines = [orjson.dumps(i.record, option=orjson.OPT_APPEND_NEWLINE) for i in items]
        data, placements = segments.encode(lines, level=level)
        await archive.put_bytes(key, data, content_type=segments.CONTENT_TYPE)
        written.append((key, items, placements))
    if result.dry_run:
        return
    await index.insert(
        [
            IndexRow(facts=item.facts, segment_key=key, placement=placement)
            for key, items, placements in written
            for item, placement in zip(items, placements, strict=True)
        ]
    )
    # Records first: a pointer without its record reads as "not archived".
    result.deleted_objects += await archive.delete([i.key for i in loaded])
    result.deleted_objects += await archive.delete(
        [records.pointer_key(i.facts.request_id) for i in loaded]
    )


async def _load(archive: Archive, key: str) -> _Loaded | None:
    record = await archive.get_json(key)
    if not isinstance(record, dict):
        return None
    try:
        return _Loaded(key, record, records.facts(record))
    except (KeyError, ValueError):
        return None
