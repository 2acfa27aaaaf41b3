"""Segments (pure): keys, the gzip NDJSON object and its members, and the buffers the
writer gathers records in."""

from __future__ import annotations

import gzip
import uuid
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest

from services.archiver import records, segments
from services.archiver.segments import Bounds, Buffers
from tests.support.events import failed, processed

pytestmark = pytest.mark.unit

WS = uuid.UUID("11111111-1111-4111-8111-111111111111")
WH = uuid.UUID("22222222-2222-4222-8222-222222222222")
T = "outcomes"


def test_key_names_workspace_utc_hour_partition_and_first_offset() -> None:
    # 23:30 in New York on Oct 25 is 03:30 on Oct 26 in UTC.
    received = datetime(2025, 10, 25, 23, 30, tzinfo=timezone(timedelta(hours=-4)))
    key = segments.segment_key(WS, received, 3, 1207)
    assert key == f"archive/{WS}/2025/10/26/03/3-1207.ndjson.gz"
    parsed = segments.parse_segment_key(key)
    assert parsed == segments.SegmentKey(WS, datetime(2025, 10, 26, 3, tzinfo=UTC), "3-1207")
    compacted = segments.compacted_key(WS, received, [uuid.uuid4()])
    assert segments.parse_segment_key(compacted) is not None
    for stranger in (f"{WS}/{WH}/2025/10/26/{uuid.uuid4()}.json", "archive/x.ndjson.gz"):
        assert segments.parse_segment_key(stranger) is None


def test_compacted_key_depends_on_the_requests_only() -> None:
    ids = [uuid.uuid4() for _ in range(3)]
    hour = datetime(2025, 1, 1, 5, tzinfo=UTC)
    assert segments.compacted_key(WS, hour, ids) == segments.compacted_key(WS, hour, ids[::-1])
    assert segments.compacted_key(WS, hour, ids) != segments.compacted_key(WS, hour, ids[:2])


def _lines(n: int, width: int = 100) -> list[bytes]:
    return [orjson.dumps({"n": i, "pad": "x" * width}) + b"\n" for i in range(n)]


def test_encode_is_gzip_ndjson_in_members_each_readable_alone() -> None:
    lines = _lines(50)
    data, placements = segments.encode(lines, member_bytes=1000)
    # Any gzip reader reads the members as one stream.
    assert gzip.decompress(data) == b"".join(lines)
    assert segments.decode(data) == [line.rstrip(b"\n") for line in lines]
    assert [p.line for p in placements] == list(range(1, 51))
    members = {(p.member_offset, p.member_length, p.member_first_line) for p in placements}
    assert len(members) > 5
    for line, p in zip(lines, placements, strict=True):
        member = data[p.member_offset : p.member_offset + p.member_length]
        assert segments.decode(member)[p.line - p.member_first_line] == line.rstrip(b"\n")
    # Deterministic: no timestamp in the gzip header.
    assert segments.encode(lines, member_bytes=1000)[0] == data


def test_a_line_larger_than_a_member_gets_a_member_of_its_own() -> None:
    lines = _lines(3, width=5000)
    data, placements = segments.encode(lines, member_bytes=1000)
    assert len({p.member_offset for p in placements}) == 3
    assert segments.decode(data) == [line.rstrip(b"\n") for line in lines]


def _facts(event: object) -> records.RecordFacts:
    return records.facts(records.build_record(event))  # type: ignore[arg-type]


def test_buffers_group_by_workspace_hour_and_partition_and_hold_the_first_offset() -> None:
    hour = datetime(2025, 3, 1, 10, 5, tzinfo=UTC)
    other_ws = uuid.uuid4()
    buffers = Buffers(Bounds(records=100, age_s=30, idle_s=5))
    buffers.add(T, 0, 10, _facts(processed(WS, WH, received_at=hour)), b"a\n", now=0)
    buffers.add(T, 0, 11, _facts(processed(other_ws, WH, received_at=hour)), b"b\n", now=0)
    buffers.add(
        T, 0, 12, _facts(processed(WS, WH, received_at=hour + timedelta(hours=1))), b"c\n", now=0
    )
    buffers.add(T, 1, 40, _facts(processed(WS, WH, received_at=hour)), b"d\n", now=0)
    buffers.add(T, 0, 13, _facts(processed(WS, WH, received_at=hour)), b"e\n", now=0)
    assert len(buffers) == 5
    assert dict(buffers.held()) == {(T, 0): 10, (T, 1): 40}
    keys = sorted(b.key for b in buffers.due(0, everything=True))
    assert keys == sorted(
        [
            segments.segment_key(WS, hour, 0, 10),
            segments.segment_key(other_ws, hour, 0, 11),
            segments.segment_key(WS, hour + timedelta(hours=1), 0, 12),
            segments.segment_key(WS, hour, 1, 40),
        ]
    )
    first = next(b for b in buffers.due(0, everything=True) if b.first_offset == 10)
    assert [i.offset for i in first.items] == [10, 13]
    buffers.stored(first)
    assert dict(buffers.held()) == {(T, 0): 11, (T, 1): 40} and len(buffers) == 3


def test_bounds_records_bytes_age_and_idle() -> None:
    def one(bounds: Bounds, n: int, size: int = 10) -> Buffers:
        buffers = Buffers(bounds)
        for i in range(n):
            buffers.add(T, 0, i, _facts(failed(WS, WH)), b"x" * size, now=float(i))
        return buffers

    assert one(Bounds(records=3, idle_s=100), 3).due(now=2)
    assert not one(Bounds(records=4, idle_s=100), 3).due(now=2)
    assert one(Bounds(bytes=30, idle_s=100), 3).due(now=2)
    assert not one(Bounds(bytes=31, idle_s=100), 3).due(now=2)
    aging = one(Bounds(age_s=10, idle_s=100), 3)  # opened at 0
    assert not aging.due(now=9.9) and aging.due(now=10)
    idle = one(Bounds(age_s=100, idle_s=1), 3)  # last added at 2
    assert not idle.due(now=2.9) and idle.due(now=3)


def test_a_message_is_taken_once_and_a_later_event_replaces_in_place() -> None:
    buffers = Buffers(Bounds())
    first = failed(WS, WH)
    later = processed(WS, WH, request_id=first.request_id, received_at=first.received_at)
    buffers.add(T, 0, 5, _facts(first), b"first\n", now=0)
    buffers.add(T, 0, 6, _facts(failed(WS, WH, received_at=first.received_at)), b"other\n", now=0)
    assert buffers.seen(T, 0, 5) and buffers.seen(T, 0, 6) and not buffers.seen(T, 0, 7)
    assert buffers.waiting(first.request_id)
    buffers.add(T, 0, 9, _facts(later), b"later!\n", now=1)
    assert len(buffers) == 2
    (buffer,) = buffers.due(0, everything=True)
    assert [i.line for i in buffer.items] == [b"later!\n", b"other\n"]
    assert buffer.items[0].offset == 5 and buffer.items[0].facts.status == "processed"
    assert buffer.size == len(b"later!\n") + len(b"other\n")
    assert dict(buffers.held()) == {(T, 0): 5}


def test_release_drops_the_partitions_buffers_and_what_was_seen() -> None:
    buffers = Buffers(Bounds())
    kept = failed(WS, WH)
    dropped = failed(WS, WH)
    buffers.add(T, 0, 1, _facts(kept), b"k\n", now=0)
    buffers.add(T, 1, 1, _facts(dropped), b"d\n", now=0)
    buffers.skip(T, 1, 7)
    buffers.release({(T, 1)})
    assert dict(buffers.held()) == {(T, 0): 1} and len(buffers) == 1
    assert not buffers.waiting(dropped.request_id) and buffers.waiting(kept.request_id)
    assert not buffers.seen(T, 1, 1) and buffers.seen(T, 0, 1)
