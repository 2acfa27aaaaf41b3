"""Retention by the day a request was received: whole segments with their index rows,
orphan segments, and first-layout objects with their pointers (in-memory bucket/index)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.archiver import records, segments
from services.archiver.handlers import SegmentWriter
from services.archiver.index import FakeIndex
from services.archiver.repository import FakeArchive
from services.archiver.retention import cutoff_for, prune
from tests.support.archiver import write_legacy
from tests.support.events import as_messages, mixed_outcomes

pytestmark = pytest.mark.unit

NOW = datetime(2025, 6, 30, 12, tzinfo=UTC)
WS, WH = uuid.uuid4(), uuid.uuid4()


async def _archive(archive: FakeArchive, index: FakeIndex, ages_days: list[int]) -> None:
    events = []
    for age in ages_days:
        events += mixed_outcomes(3, WS, WH, received_at=NOW - timedelta(days=age))
    writer = SegmentWriter(archive=archive, index=index)
    await writer.handle(as_messages(events))
    await writer.flush()


def test_the_cutoff_is_the_start_of_the_first_day_kept() -> None:
    # 30 days before now is May 31 12:00: May 30 ended before it, May 31 did not.
    assert cutoff_for(NOW, 30) == datetime(2025, 5, 31, tzinfo=UTC)


async def test_prune_deletes_expired_segments_rows_orphans_and_first_layout_days() -> None:
    archive, index = FakeArchive(), FakeIndex()
    await _archive(archive, index, [1, 10, 40, 100])
    for e in mixed_outcomes(2, WS, WH, received_at=NOW - timedelta(days=95)):
        await write_legacy(archive, e)
    for e in mixed_outcomes(2, WS, WH, received_at=NOW - timedelta(days=2)):
        await write_legacy(archive, e)
    old_orphan = segments.segment_key(WS, NOW - timedelta(days=50), 0, 999)
    new_orphan = segments.segment_key(WS, NOW - timedelta(days=3), 0, 998)
    for key in (old_orphan, new_orphan):
        archive.objects[key] = segments.encode([b"{}\n"])[0]
    segments_before = {k for k in archive.objects if segments.parse_segment_key(k)}
    assert len(segments_before) == 6

    dry = await prune(archive, index, older_than_days=30, now=NOW, dry_run=True)
    assert (dry.segments, dry.records, dry.legacy_records) == (3, 6, 2)
    assert len(archive.objects) == 6 + 8 and len(index.rows) == 12

    done = await prune(archive, index, older_than_days=30, now=NOW)
    assert (done.segments, done.records, done.legacy_records, done.pointers) == (3, 6, 2, 2)
    kept = {k for k in archive.objects if segments.parse_segment_key(k)}
    assert new_orphan in kept and old_orphan not in kept and len(kept) == 3
    assert all(r.facts.received_at >= cutoff_for(NOW, 30) for r in index.rows.values())
    assert len(index.rows) == 6
    legacy = [k for k in archive.objects if records.parse_record_key(k)]
    assert len(legacy) == 2
    pointers = [k for k in archive.objects if k.startswith(records.POINTER_PREFIX)]
    assert len(pointers) == 2
    again = await prune(archive, index, older_than_days=30, now=NOW)
    assert (again.segments, again.records, again.legacy_records) == (0, 0, 0)
