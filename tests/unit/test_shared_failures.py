"""Which failures a consumer retries, and which it isolates and dead-letters."""

from __future__ import annotations

import asyncpg
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from pydantic import BaseModel, ValidationError

from shared.kafka import KafkaUnavailable
from shared.kafka.deadletter import entry, ids_of, payload_of
from shared.kafka.failures import StuckPartitions, classify, reason_code

pytestmark = pytest.mark.unit


def _s3(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "x"}}, "PutObject")


def _validation_error() -> ValidationError:
    class M(BaseModel):
        n: int

    try:
        M.model_validate({"n": "x"})
    except ValidationError as exc:
        return exc
    raise AssertionError


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (ConnectionRefusedError("db away"), "transient"),
        (TimeoutError(), "transient"),
        (KafkaUnavailable("no broker"), "transient"),
        (asyncpg.SerializationError("retry"), "transient"),
        (asyncpg.DeadlockDetectedError("retry"), "transient"),
        (asyncpg.UndefinedTableError("migrations not run"), "transient"),
        (asyncpg.CharacterNotInRepertoireError("NUL"), "permanent"),
        (asyncpg.NumericValueOutOfRangeError("2^64"), "permanent"),
        (asyncpg.NotNullViolationError("null"), "permanent"),
        (asyncpg.UniqueViolationError("race"), "unknown"),
        (EndpointConnectionError(endpoint_url="http://s3"), "transient"),
        (_s3("SlowDown"), "transient"),
        (_s3("AccessDenied"), "transient"),
        (_s3("EntityTooLarge"), "permanent"),
        (_validation_error(), "permanent"),
        (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogate"), "permanent"),
        (KeyError("a handler bug"), "unknown"),
    ],
)
def test_classify(exc: BaseException, kind: str) -> None:
    assert classify(exc) == kind


def test_a_services_own_rule_is_asked_first() -> None:
    assert classify(KeyError("x"), lambda e: "permanent") == "permanent"
    assert classify(KeyError("x"), lambda e: None) == "unknown"


def test_reason_codes_are_bounded_labels() -> None:
    assert reason_code("permanent: DataError: value too long") == "permanent"
    assert reason_code("x" * 100 + ": y") == "x" * 40
    assert reason_code("") == "unknown"


def test_a_partition_is_stuck_until_its_offset_is_settled() -> None:
    stuck = StuckPartitions()
    stuck.failed({("outcomes", 1): 40}, "DataError")
    stuck.failed({("outcomes", 1): 40}, "DataError")
    assert [s.attempts for s in stuck.all()] == [2]
    assert stuck.longer_than(3600) == []
    assert [s.offset for s in stuck.longer_than(-1)] == [40]
    stuck.settled({("outcomes", 1)})
    assert stuck.all() == []


def test_a_dead_letter_keeps_the_bytes_and_names_the_event() -> None:
    payload = b'{"request_id": "r1", "webhook_id": "w1", "workspace_id": "s1", "x": "\\u0000"}'
    record = entry(
        source_topic="outcomes",
        partition=2,
        offset=7,
        key=b"s1",
        payload=payload,
        reason="permanent: CharacterNotInRepertoireError: NUL",
        group_id="leadwire-analytics",
        error_class="CharacterNotInRepertoireError",
    )
    assert record["reason_code"] == "permanent"
    assert (record["request_id"], record["webhook_id"], record["workspace_id"]) == (
        "r1",
        "w1",
        "s1",
    )
    assert payload_of(record) == payload
    assert ids_of(b"\xff garbage") == {}
    assert ids_of(b"[1, 2]") == {}
