"""The archive's record format and keys (pure functions)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from services.archiver import records
from tests.support.archiver import RECORD_FIELDS
from tests.support.events import CANARY_HEADERS, CANARY_VALUES, failed, processed, rejected

pytestmark = pytest.mark.unit

WS = uuid.UUID("11111111-1111-4111-8111-111111111111")
WH = uuid.UUID("22222222-2222-4222-8222-222222222222")


def test_key_is_derived_from_the_request_and_its_utc_receive_day() -> None:
    rid = uuid.uuid4()
    # 23:30 in New York on Oct 25 is Oct 26 in UTC.
    received = datetime(2025, 10, 25, 23, 30, tzinfo=timezone(timedelta(hours=-4)))
    key = records.record_key(WS, WH, received, rid)
    assert key == f"{WS}/{WH}/2025/10/26/{rid}.json"
    assert records.record_key(WS, WH, received, rid) == key
    parts = records.parse_record_key(key)
    assert parts == records.RecordKey(WS, WH, date(2025, 10, 26), rid)


def test_pointers_and_strangers_are_not_record_keys() -> None:
    rid = uuid.uuid4()
    assert records.parse_record_key(records.pointer_key(rid)) is None
    assert records.parse_record_key(f"{WS}/{WH}/2025/13/01/{rid}.json") is None
    assert records.parse_record_key("notes.txt") is None


@pytest.mark.parametrize("make", [processed, failed, rejected])
def test_record_has_the_seed_fields_and_no_secret(make: Any) -> None:
    event = make(
        WS, WH, payload={"phone": "4155550100", "note": "hi"}, duration_ms=40, canaries=True
    )
    record = records.build_record(event)
    assert RECORD_FIELDS <= set(record)
    assert record["log_id"] == str(event.request_id)
    assert record["status"] == event.status
    assert record["request"]["method"] == "POST"
    assert record["request"]["payload"] == {"phone": "4155550100", "note": "hi"}
    assert set(record["processing"]) >= {"start_time", "end_time", "duration_ms", "steps"}
    assert record["processing"]["end_time"] - record["processing"]["start_time"] == 40
    headers = record["request"]["headers"]
    assert headers == {"content-type": "application/json", "user-agent": "vendor-sender/1.0"}
    blob = orjson.dumps(record).decode()
    for name in CANARY_HEADERS:
        assert name.lower() not in blob.lower()
    for value in CANARY_VALUES:
        assert value not in blob
    assert record["timestamp"].endswith("Z")


def test_the_line_is_the_record_as_json_with_utc_times() -> None:
    # 23:30 in New York on Oct 25 is 03:30 on Oct 26 in UTC; no microseconds, none written.
    received = datetime(2025, 10, 25, 23, 30, tzinfo=timezone(timedelta(hours=-4)))
    event = processed(WS, WH, received_at=received, board_name="Sales")
    line = records.record_line(event)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    record = orjson.loads(line)
    assert record == records.build_record(event)
    assert record["timestamp"] == "2025-10-26T03:30:00Z"
    assert record["request_id"] == str(event.request_id)
    assert record["result"]["board"]["id"] == str(event.contact.board_id)
    later = processed(WS, WH, received_at=datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=UTC))
    assert records.build_record(later)["timestamp"] == "2025-01-02T03:04:05.000006Z"


def test_results_and_errors_by_outcome() -> None:
    ok = records.build_record(processed(WS, WH, board_name="Sales"))
    assert ok["result"]["success"] is True
    assert ok["result"]["action"] == "created" and ok["result"]["match_type"] == "new"
    assert ok["result"]["contact_id"] and ok["result"]["lead_id"]
    assert ok["result"]["board"]["name"] == "Sales"
    assert ok["error"] is None
    bad = records.build_record(failed(WS, WH, error_type="poison"))
    assert bad["result"]["success"] is False and bad["error"]["type"] == "poison"
    no = records.build_record(rejected(WS, WH, status_code=422))
    assert no["result"]["status_code"] == 422
    assert no["error"]["type"] == "rejected" and no["error"]["errors"][0]["field"] == "phone"


def test_clean_headers_drops_anything_named_like_a_credential() -> None:
    headers = {
        "Content-Type": "application/json",
        "X-Request-Id": "abc",
        "X-Partner-Auth": "s1",
        "X-My-Apikey": "s2",
        "X-Session-Id": "s3",
        "Proxy-Authorization": "s4",
        "X-Signature-Timestamp": "s5",
    }
    assert records.clean_headers(headers) == {
        "content-type": "application/json",
        "x-request-id": "abc",
    }


@pytest.mark.parametrize("make", [processed, failed, rejected])
def test_facts_are_what_the_index_keeps_of_a_record(make: Any) -> None:
    orig = uuid.uuid4()
    event = make(WS, WH, received_at=datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC))
    event = event.model_copy(update={"replay_of": orig})
    facts = records.facts(records.build_record(event))
    assert facts == records.RecordFacts(
        request_id=event.request_id,
        workspace_id=WS,
        webhook_id=WH,
        received_at=event.received_at,
        status=event.status,
        match_type=getattr(event, "match_type", None),
        error_type={"failed": "database_error", "rejected": "rejected"}.get(event.status),
        replay_of=orig,
    )
    assert records.facts(orjson.loads(orjson.dumps(records.build_record(event)))) == facts
    assert records.facts_of(event) == facts  # the writer's shortcut says the same


def test_facts_drop_nul_characters_postgres_text_cannot_hold() -> None:
    event = failed(WS, WH, error_type="db\x00error")
    assert records.facts(records.build_record(event)).error_type == "dberror"
    assert records.facts_of(event).error_type == "dberror"


def test_days_between_and_expiry() -> None:
    since = datetime(2025, 2, 27, 22, tzinfo=UTC)
    until = datetime(2025, 3, 2, 1, tzinfo=UTC)
    assert list(records.days_between(since, until)) == [
        date(2025, 2, 27),
        date(2025, 2, 28),
        date(2025, 3, 1),
        date(2025, 3, 2),
    ]
    now = datetime(2025, 3, 31, 12, tzinfo=UTC)
    # 30 days before now is Mar 1 12:00: Feb 28 ended before that, Mar 1 did not.
    assert records.expired_day(date(2025, 2, 28), now=now, older_than_days=30)
    assert not records.expired_day(date(2025, 3, 1), now=now, older_than_days=30)


def test_parse_time() -> None:
    now = datetime(2025, 5, 1, 12, tzinfo=UTC)
    assert records.parse_time("now", now=now) == now
    assert records.parse_time("90m", now=now) == now - timedelta(minutes=90)
    assert records.parse_time("7d", now=now) == now - timedelta(days=7)
    assert records.parse_time("2025-04-30") == datetime(2025, 4, 30, tzinfo=UTC)
    assert records.parse_time("2025-04-30T10:00:00Z") == datetime(2025, 4, 30, 10, tzinfo=UTC)
    with pytest.raises(ValueError, match="not a time"):
        records.parse_time("yesterday-ish")
