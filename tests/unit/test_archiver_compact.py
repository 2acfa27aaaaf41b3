"""The first layout (one object per request) stays readable beside segments, and compact
rewrites it into segments with index rows, resumably (in-memory bucket and index)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.archiver import records, segments
from services.archiver.compact import compact
from services.archiver.handlers import SegmentWriter
from services.archiver.index import FakeIndex
from services.archiver.repository import FakeArchive
from services.archiver.search import find_archived, read_record
from shared.events import Outcome
from tests.support.archiver import write_legacy
from tests.support.events import as_messages, mixed_outcomes

pytestmark = pytest.mark.unit

NOW = datetime(2025, 6, 30, 12, tzinfo=UTC)
WS, WH = uuid.uuid4(), uuid.uuid4()


async def _both_layouts() -> tuple[FakeArchive, FakeIndex, list[Outcome], list[Outcome]]:
    archive, index = FakeArchive(), FakeIndex()
    old = mixed_outcomes(5, WS, WH, received_at=NOW - timedelta(days=2, hours=1))
    old += mixed_outcomes(4, WS, WH, received_at=NOW - timedelta(days=2, hours=3))
    old += mixed_outcomes(3, WS, WH, received_at=NOW - timedelta(days=1))
    for e in old:
        await write_legacy(archive, e)
    new = mixed_outcomes(4, WS, WH, received_at=NOW - timedelta(hours=1))
    writer = SegmentWriter(archive=archive, index=index)
    await writer.handle(as_messages(new))
    await writer.flush()
    return archive, index, old, new


async def _window(archive: FakeArchive, index: FakeIndex) -> list[uuid.UUID]:
    found = await find_archived(
        archive, index, workspace_id=WS, webhook_id=WH, since=NOW - timedelta(days=3), until=NOW
    )
    assert all(e.record is not None for e in found)
    return [e.request_id for e in found]


async def test_show_and_find_read_both_layouts() -> None:
    archive, index, old, new = await _both_layouts()
    for e in old + new:
        record = await read_record(archive, index, e.request_id)
        assert record is not None and record["request_id"] == str(e.request_id)
    assert await read_record(archive, index, uuid.uuid4()) is None
    assert sorted(await _window(archive, index)) == sorted(e.request_id for e in old + new)


async def test_compact_rewrites_into_hour_segments_and_deletes_the_old_objects() -> None:
    archive, index, old, _ = await _both_layouts()
    window_before = await _window(archive, index)
    dry = await compact(archive, index, dry_run=True)
    assert dry.rewritten == 12 and len(dry.segments) == 3 and dry.deleted_objects == 0
    assert len(index.rows) == 4

    done = await compact(archive, index, chunk=5)
    assert done.rewritten == 12 and done.deleted_objects == 24 and len(done.days) == 2
    assert not [k for k in archive.objects if not k.startswith(segments.PREFIX)]
    assert len(index.rows) == 16
    compacted = {r.segment_key for r in index.rows.values() if "compacted-" in r.segment_key}
    hours = {segments.parse_segment_key(k).hour for k in compacted}  # type: ignore[union-attr]
    assert len(hours) == 3
    assert await _window(archive, index) == window_before
    for e in old:
        record = await read_record(archive, index, e.request_id)
        assert record == records.build_record(e)
    again = await compact(archive, index)
    assert again.records == 0 and not again.segments


async def test_compact_after_a_crash_before_deleting_only_deletes() -> None:
    archive, index, old, _ = await _both_layouts()
    legacy = {k: v for k, v in archive.objects.items() if not k.startswith(segments.PREFIX)}
    await compact(archive, index)
    archive.objects.update(legacy)  # as if the run died after indexing, before deleting
    segments_before = {k for k in archive.objects if k.startswith(segments.PREFIX)}
    resumed = await compact(archive, index)
    assert resumed.already_indexed == len(old) and resumed.rewritten == 0
    assert {k for k in archive.objects} == segments_before
    assert len(index.rows) == 16


async def test_compact_since_a_day_leaves_older_days() -> None:
    archive, index, _, _ = await _both_layouts()
    result = await compact(archive, index, since=NOW - timedelta(days=1, hours=1))
    assert result.rewritten == 3
    assert len([k for k in archive.objects if records.parse_record_key(k)]) == 9
