"""The segment writer against an in-memory bucket and index: once per request, nothing
committed before it is stored, a crash re-run rewrites the same segments, failures wait."""

from __future__ import annotations

import gzip
import uuid
from collections.abc import Sequence
from typing import Any

import orjson
import pytest

from services.archiver import segments
from services.archiver.handlers import FlushFailed, Hooks, SegmentWriter, classify
from services.archiver.index import FakeIndex
from services.archiver.repository import FakeArchive, S3Archive
from services.archiver.segments import Bounds
from shared.kafka import Message, PoisonMessage
from shared.kafka.failures import classify as runner_classify
from tests.support.archiver import FakeS3
from tests.support.events import (
    CANARY_VALUES,
    as_messages,
    failed,
    mixed_outcomes,
    processed,
    rejected,
)

pytestmark = pytest.mark.unit

WS, WH = uuid.uuid4(), uuid.uuid4()
TP = ("outcomes", 0)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def writer(
    archive: Any | None = None,
    index: FakeIndex | None = None,
    *,
    records: int = 1000,
    hooks: Hooks = Hooks(),
    clock: Clock | None = None,
) -> SegmentWriter:
    return SegmentWriter(
        archive=archive if archive is not None else FakeArchive(),
        index=index if index is not None else FakeIndex(),
        bounds=Bounds(records=records, age_s=30, idle_s=5),
        hooks=hooks,
        clock=clock or Clock(),
    )


def lines_of(archive: FakeArchive) -> list[dict[str, Any]]:
    return [
        orjson.loads(line)
        for key, data in sorted(archive.objects.items())
        if segments.parse_segment_key(key)
        for line in segments.decode(data)
    ]


def assert_once(archive: FakeArchive, index: FakeIndex, events: Sequence[Any]) -> None:
    """Each request on exactly one line, with an index row naming that line."""
    ids = [r["request_id"] for r in lines_of(archive)]
    assert sorted(ids) == sorted({str(e.request_id) for e in events})
    assert {str(r) for r in index.rows} == set(ids)
    for row in index.rows.values():
        data = archive.objects[row.segment_key]
        p = row.placement
        member = data[p.member_offset : p.member_offset + p.member_length]
        line = segments.decode(member)[p.line - p.member_first_line]
        assert orjson.loads(line)["request_id"] == str(row.request_id)


async def test_records_are_held_until_a_bound_then_stored_once_with_index_rows() -> None:
    archive, index = FakeArchive(), FakeIndex()
    w = writer(archive, index, records=4)
    events = mixed_outcomes(7, WS, WH, canaries=True)
    messages = as_messages(events)
    await w.handle(messages[:3])
    assert not archive.objects and dict(w.held()) == {TP: 0}
    await w.handle(messages[3:5])  # the bound is checked after each batch
    assert archive.puts == 1 and dict(w.held()) == {}
    await w.handle(messages[5:])
    assert dict(w.held()) == {TP: 5}
    await w.flush()
    assert archive.puts == 2 and dict(w.held()) == {}
    assert sorted(archive.objects) == sorted(
        segments.segment_key(WS, events[0].received_at, 0, first) for first in (0, 5)
    )
    assert_once(archive, index, events)
    statuses = {str(e.request_id): e.status for e in events}
    assert all(statuses[str(rid)] == row.facts.status for rid, row in index.rows.items())
    blob = b"".join(gzip.decompress(v) for v in archive.objects.values()).decode()
    assert not [v for v in CANARY_VALUES if v in blob]
    assert index.inserts == 2  # one statement per flush


async def test_a_redelivery_or_a_replay_of_the_topic_adds_nothing() -> None:
    archive, index = FakeArchive(), FakeIndex()
    w = writer(archive, index)
    events = mixed_outcomes(6, WS, WH)
    await w.handle(as_messages(events))
    await w.flush()
    before = dict(archive.objects)
    await w.handle(as_messages(events, start=100))  # re-published at later offsets
    assert dict(w.held()) == {}
    await w.flush()
    assert archive.objects == before and len(index.rows) == 6


async def test_a_batch_handed_over_again_adds_nothing_twice() -> None:
    archive, index = FakeArchive(), FakeIndex()
    w = writer(archive, index)
    messages = as_messages(mixed_outcomes(5, WS, WH))
    await w.handle(messages)
    await w.handle(messages)
    await w.flush()
    assert len(lines_of(archive)) == 5


async def test_the_later_event_of_a_request_wins_while_it_is_held() -> None:
    archive, index = FakeArchive(), FakeIndex()
    w = writer(archive, index)
    first = failed(WS, WH)
    second = processed(WS, WH, request_id=first.request_id, received_at=first.received_at)
    other = rejected(WS, WH, received_at=first.received_at)
    await w.handle(as_messages([first, other]))
    await w.handle(as_messages([second], start=2))
    await w.flush()
    assert [r["status"] for r in lines_of(archive)] == ["processed", "rejected"]
    assert index.rows[first.request_id].facts.status == "processed"
    assert index.rows[first.request_id].placement.line == 1


async def test_s3_down_raises_holds_and_the_retry_stores_once() -> None:
    s3 = FakeS3()
    index = FakeIndex()
    w = writer(S3Archive(s3, "b"), index, records=3)
    events = mixed_outcomes(3, WS, WH)
    messages = as_messages(events)
    s3.down = True
    with pytest.raises(FlushFailed) as caught:
        await w.handle(messages)
    assert classify(caught.value) == "transient"
    assert runner_classify(caught.value, classify) == "transient"
    assert dict(w.held()) == {TP: 0} and not index.rows
    s3.down = False
    await w.handle(messages)  # the runner's retry of the same batch
    assert s3.puts == 1 and len(index.rows) == 3 and dict(w.held()) == {}


async def test_index_down_after_the_upload_rewrites_the_same_segment() -> None:
    archive, index = FakeArchive(), FakeIndex()
    uploads: list[list[str]] = []

    def down_after_upload(keys: list[str]) -> None:
        uploads.append(keys)
        index.down = len(uploads) == 1

    w = writer(archive, index, records=3, hooks=Hooks(after_upload=down_after_upload))
    messages = as_messages(mixed_outcomes(3, WS, WH))
    with pytest.raises(FlushFailed):
        await w.handle(messages)
    assert len(archive.objects) == 1 and not index.rows and dict(w.held()) == {TP: 0}
    index.down = False
    await w.handle(messages)
    assert uploads[0] == uploads[1]  # the same key, overwritten
    assert len(archive.objects) == 1 and len(index.rows) == 3 and archive.puts == 2


class Crash(BaseException):
    """Stands for the process dying (kill -9): nothing after it runs."""


async def _run_until_crash(w: SegmentWriter, messages: list[Message[Any]], chunk: int) -> int:
    """Feed ``messages`` as the runner would; return the committed offset at the crash."""
    committed = 0
    for start in range(0, len(messages), chunk):
        batch = messages[start : start + chunk]
        try:
            await w.handle(batch)
        except Crash:
            return committed
        committed = dict(w.held()).get(TP, batch[-1].offset + 1)
    raise AssertionError("no crash")


@pytest.mark.parametrize("window", ["after_upload", "after_index"])
async def test_a_crash_between_upload_and_commit_leaves_each_record_once(window: str) -> None:
    archive, index = FakeArchive(), FakeIndex()
    calls = 0

    def crash_on_the_third(_keys: list[str]) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise Crash

    events = mixed_outcomes(40, WS, WH)
    messages = as_messages(events + events[:5])  # with a redelivery
    before = writer(archive, index, records=7, hooks=Hooks(**{window: crash_on_the_third}))
    committed = await _run_until_crash(before, messages, chunk=5)
    keys_at_crash = set(archive.objects)
    assert committed < len(messages)
    after = writer(archive, index, records=7)
    for start in range(committed, len(messages), 5):
        await after.handle(messages[start : start + 5])
    await after.flush()
    assert_once(archive, index, events)
    assert keys_at_crash <= set(archive.objects)  # rewritten under the same keys
    assert all(row.segment_key in archive.objects for row in index.rows.values())


async def test_a_record_that_cannot_be_serialized_is_poison_and_changes_nothing() -> None:
    archive, index = FakeArchive(), FakeIndex()
    w = writer(archive, index)
    good = mixed_outcomes(2, WS, WH)
    bad = rejected(WS, WH, payload={"n": 2**70})  # beyond JSON's 64-bit integers
    messages = as_messages([good[0], bad, good[1]])
    with pytest.raises(PoisonMessage) as caught:
        await w.handle(messages)
    assert caught.value.message is messages[1] and len(w._buffers) == 0
    await w.handle([messages[0], messages[2]])  # the runner dead-letters it, hands the rest
    await w.flush()
    assert_once(archive, index, good)


async def test_release_drops_what_is_held_and_age_stores_the_rest() -> None:
    clock = Clock()
    archive, index = FakeArchive(), FakeIndex()
    w = writer(archive, index, clock=clock)
    ours = as_messages(mixed_outcomes(3, WS, WH))
    theirs = [
        Message(topic="outcomes", partition=1, offset=i, key=None, value=e, raw=b"", timestamp_ms=0)
        for i, e in enumerate(mixed_outcomes(2, WS, WH))
    ]
    await w.handle(ours + theirs)
    assert dict(w.held()) == {TP: 0, ("outcomes", 1): 0}
    w.release({("outcomes", 1)})
    assert dict(w.held()) == {TP: 0}
    await w.flush_due()
    assert not archive.objects
    clock.now = 5  # idle for idle_s
    await w.flush_due()
    assert len(index.rows) == 3 and dict(w.held()) == {}
