"""The archive repository: the S3 implementation (on an in-memory S3 client) and the fake
beside it keep the same contract, so unit tests on the fake say something about S3; the
batch handler on the fake."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from services.archiver import records
from services.archiver.handlers import Position, archive_outcomes
from services.archiver.repository import Archive, ArchiveRejected, FakeArchive, S3Archive
from shared.kafka import PoisonMessage
from tests.support.archiver import FakeS3
from tests.support.events import as_messages, mixed_outcomes

pytestmark = pytest.mark.unit

WS, WH = uuid.uuid4(), uuid.uuid4()


def _s3() -> Archive:
    return S3Archive(FakeS3(page_size=2, fail_keys={"bad.json": "EntityTooLarge"}), "b")


def _fake() -> Archive:
    return FakeArchive(rejected={"bad.json": "EntityTooLarge"})


ARCHIVES: dict[str, Callable[[], Archive]] = {"s3": _s3, "fake": _fake}


@pytest.fixture(params=sorted(ARCHIVES))
def archive(request: pytest.FixtureRequest) -> Archive:
    return ARCHIVES[request.param]()


async def test_objects_round_trip_with_metadata(archive: Archive) -> None:
    await archive.ensure_bucket()
    assert await archive.ping()
    await archive.put_json("a/b/1.json", {"n": 1}, metadata={"status": "failed"})
    await archive.put_json("a/b/1.json", {"n": 2}, metadata={"status": "processed"})
    assert await archive.get_json("a/b/1.json") == {"n": 2}
    assert await archive.metadata("a/b/1.json") == {"status": "processed"}
    assert await archive.get_json("missing.json") is None
    assert await archive.metadata("missing.json") is None


async def test_listing_pages_and_folders(archive: Archive) -> None:
    for key in ("a/x/1.json", "a/x/2.json", "a/y/1.json", "b/1.json", "top.json"):
        await archive.put_json(key, {})
    assert [k async for k in archive.keys("a/")] == ["a/x/1.json", "a/x/2.json", "a/y/1.json"]
    assert await archive.children("") == ["a/", "b/"]
    assert await archive.children("a/") == ["a/x/", "a/y/"]
    assert await archive.delete(["a/x/1.json", "a/y/1.json"]) == 2
    assert [k async for k in archive.keys("")] == ["a/x/2.json", "b/1.json", "top.json"]


async def test_an_object_never_storable_is_rejected(archive: Archive) -> None:
    with pytest.raises(ArchiveRejected) as caught:
        await archive.put_json("bad.json", {})
    assert caught.value.code == "EntityTooLarge"


async def test_no_lifecycle_rules_on_either() -> None:
    assert not await _s3().apply_lifecycle(30)
    assert not await _fake().apply_lifecycle(30)


async def test_the_handler_on_the_fake_stores_each_request_once_and_skips_on_retry() -> None:
    archive = FakeArchive()
    events = mixed_outcomes(6, WS, WH)
    last = events[-1]
    last_key = records.record_key(WS, WH, last.received_at, last.request_id)
    archive.rejected[last_key] = "InvalidArgument"
    stored: set[Position] = set()
    messages = as_messages(events)
    with pytest.raises(PoisonMessage) as caught:
        await archive_outcomes(messages, archive=archive, stored=stored, concurrency=2)
    assert caught.value.message is messages[-1]
    assert len(stored) == 5
    # The runner dead-letters the poison and hands the rest back: nothing is stored again.
    archive.down = True
    await archive_outcomes(messages[:-1], archive=archive, stored=stored)
    assert not stored  # the batch succeeded: its offsets are committed
    archive.down = False
    keys = [k async for k in archive.keys("")]
    assert len(keys) == 10  # five records, five pointers
    assert sum(1 for k in keys if records.parse_record_key(k)) == 5
