"""The batch archiver against an in-memory S3: once per request, bounded, retry-safe."""

from __future__ import annotations

import uuid
from functools import partial
from typing import Any

import orjson
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from services.archiver import records
from services.archiver.handlers import archive_outcomes
from services.archiver.repository import S3Archive
from shared.kafka import PoisonMessage
from tests.support.archiver import FakeS3
from tests.support.events import CANARY_VALUES, as_messages, failed, mixed_outcomes, processed

pytestmark = pytest.mark.unit

WS, WH = uuid.uuid4(), uuid.uuid4()


def record_objects(s3: FakeS3) -> dict[str, dict[str, Any]]:
    return {k: orjson.loads(o.body) for k, o in s3.objects.items() if records.parse_record_key(k)}


async def test_every_request_is_stored_once_with_a_pointer_and_metadata() -> None:
    s3 = FakeS3()
    events = mixed_outcomes(9, WS, WH, canaries=True)
    await archive_outcomes(
        as_messages(events), archive=S3Archive(s3, "b"), stored=set(), concurrency=4
    )
    stored = record_objects(s3)
    assert len(stored) == 9
    assert {r["log_id"] for r in stored.values()} == {str(e.request_id) for e in events}
    for e in events:
        key = records.record_key(e.workspace_id, e.webhook_id, e.received_at, e.request_id)
        assert s3.objects[key].metadata["status"] == e.status
        pointer = orjson.loads(s3.objects[records.pointer_key(e.request_id)].body)
        assert pointer["key"] == key
    blob = b"".join(o.body for o in s3.objects.values()).decode()
    assert not [v for v in CANARY_VALUES if v in blob]


async def test_redelivery_overwrites_instead_of_adding() -> None:
    s3 = FakeS3()
    archiver = partial(archive_outcomes, archive=S3Archive(s3, "b"), stored=set())
    events = mixed_outcomes(6, WS, WH)
    await archiver(as_messages(events))
    before = set(s3.objects)
    await archiver(as_messages(events, start=100))  # the topic replayed
    assert set(s3.objects) == before


async def test_the_later_event_of_a_request_wins_within_a_batch() -> None:
    s3 = FakeS3()
    first = failed(WS, WH)
    second = processed(WS, WH, request_id=first.request_id, received_at=first.received_at)
    await archive_outcomes(as_messages([first, second]), archive=S3Archive(s3, "b"), stored=set())
    (record,) = record_objects(s3).values()
    assert record["status"] == "processed"


async def test_uploads_are_concurrent_but_bounded() -> None:
    s3 = FakeS3(put_delay_s=0.01)
    await archive_outcomes(
        as_messages(mixed_outcomes(40, WS, WH)),
        archive=S3Archive(s3, "b"),
        stored=set(),
        concurrency=5,
    )
    assert 1 < s3.max_in_flight <= 5


async def test_s3_down_raises_and_the_retry_uploads_only_what_is_missing() -> None:
    s3 = FakeS3()
    # One upload at a time, in order: the first five are stored before the sixth fails.
    archiver = partial(archive_outcomes, archive=S3Archive(s3, "b"), stored=set(), concurrency=1)
    events = mixed_outcomes(6, WS, WH)
    messages = as_messages(events)
    last = events[5]
    s3.fail_keys[
        records.record_key(last.workspace_id, last.webhook_id, last.received_at, last.request_id)
    ] = "ServiceUnavailable"
    with pytest.raises(ClientError):
        await archiver(messages)
    assert len(record_objects(s3)) == 5
    s3.fail_keys.clear()
    s3.down = True
    with pytest.raises(EndpointConnectionError):
        await archiver(messages)
    s3.down = False
    puts_before = s3.puts
    await archiver(messages)  # the runner's retry of the same batch
    assert len(record_objects(s3)) == 6
    assert s3.puts - puts_before == 2  # the missing record and its pointer only


async def test_a_failing_batch_fails_fast() -> None:
    s3 = FakeS3(down=True, put_delay_s=0.05)
    archiver = partial(archive_outcomes, archive=S3Archive(s3, "b"), stored=set(), concurrency=2)
    with pytest.raises(EndpointConnectionError):
        await archiver(as_messages(mixed_outcomes(20, WS, WH)))
    # The first failures cancel the rest instead of every upload failing on its own.
    assert s3.put_attempts <= 4


async def test_an_object_s3_can_never_accept_is_poison() -> None:
    s3 = FakeS3()
    events = mixed_outcomes(3, WS, WH)
    bad = events[1]
    s3.fail_keys[
        records.record_key(bad.workspace_id, bad.webhook_id, bad.received_at, bad.request_id)
    ] = "EntityTooLarge"
    messages = as_messages(events)
    archiver = partial(archive_outcomes, archive=S3Archive(s3, "b"), stored=set())
    with pytest.raises(PoisonMessage) as caught:
        await archiver(messages)
    assert caught.value.message is messages[1]
    # The runner dead-letters it and hands the rest back.
    await archiver([messages[0], messages[2]])
    assert len(record_objects(s3)) == 2
