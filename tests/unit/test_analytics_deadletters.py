"""What analytics reads from a dead-letter entry (whatever the bytes), and when dead
letters fire and resolve the growth alert (pure logic)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from services.analytics.deadletters import (
    GrowthState,
    decide_growth,
    decode_deadletter,
    growth_event,
    read_entry,
)
from shared.events import health_event_id
from shared.kafka import deadletter
from tests.support.events import failed

pytestmark = pytest.mark.unit

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
WS = uuid.uuid4()


def _read(raw: bytes) -> object:
    return read_entry(
        raw, topic="deadletter", partition=2, offset=41, timestamp_ms=1_772_366_400_000
    )


def test_an_entry_of_an_event_gives_its_ids_reason_and_position() -> None:
    event = failed(WS)
    entry = deadletter.entry(
        source_topic="outcomes",
        partition=1,
        offset=9,
        key=str(WS).encode(),
        payload=event.model_dump_json().encode(),
        reason="permanent: CharacterNotInRepertoireError: NUL",
        group_id="leadwire-analytics",
        error_class="CharacterNotInRepertoireError",
    )
    row = read_entry(
        orjson.dumps(entry), topic="deadletter", partition=2, offset=41, timestamp_ms=0
    )
    assert (row.topic, row.partition, row.offset) == ("deadletter", 2, 41)
    assert (row.source_topic, row.reason_code, row.group_id) == (
        "outcomes",
        "permanent",
        "leadwire-analytics",
    )
    assert (row.workspace_id, row.webhook_id) == (WS, event.webhook_id)
    assert row.failed_at == datetime.fromisoformat(entry["failed_at"])


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xff\xfe garbage",
        b"[1, 2]",
        b'"just a string"',
        orjson.dumps({"webhook_id": "not-a-uuid", "reason_code": "x\u0000y" * 100}),
        orjson.dumps({"failed_at": "yesterday", "source_topic": 7, "workspace_id": 12}),
    ],
)
def test_any_bytes_give_a_row_that_can_be_stored(raw: bytes) -> None:
    row = _read(decode_deadletter(raw))
    assert row.webhook_id is None and row.workspace_id is None
    assert "\x00" not in row.reason_code and len(row.reason_code) <= 40
    assert row.failed_at == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)  # the message's time
    assert decode_deadletter(None) == b""


def test_growth_fires_on_new_dead_letters_and_resolves_after_a_quiet_window() -> None:
    def decide(state: GrowthState, recent: dict[str, int], at: datetime) -> GrowthState | None:
        return decide_growth(state, recent, now=at, window_minutes=5, min_count=2)

    quiet = GrowthState()
    assert decide(quiet, {}, T0) is None
    assert decide(quiet, {"permanent": 1}, T0) is None  # under min_count
    firing = decide(quiet, {"permanent": 2, "undecodable": 1}, T0)
    assert firing is not None and firing.firing and firing.since == T0
    assert firing.detail == "3 new dead letter(s) in the last 5 min (permanent: 2, undecodable: 1)"
    assert decide(firing, {"permanent": 9}, T0 + timedelta(minutes=1)) is None  # still firing
    later = T0 + timedelta(minutes=7)
    resolved = decide(firing, {}, later)
    assert resolved is not None and not resolved.firing
    assert (resolved.since, resolved.changed_at) == (T0, later)


def test_growth_events_have_one_id_per_crossing() -> None:
    firing = GrowthState(firing=True, since=T0, detail="2 new", changed_at=T0, published=False)
    event = growth_event(firing)
    assert (event.service, event.check, event.state) == ("analytics", "deadletter_growth", "firing")
    assert event.event_id == health_event_id("analytics", "deadletter_growth", T0, "firing")
    assert growth_event(firing) == event
    resolved = GrowthState(since=T0, detail="quiet", changed_at=T0 + timedelta(minutes=6))
    assert growth_event(resolved).event_id == health_event_id(
        "analytics", "deadletter_growth", T0, "resolved"
    )
