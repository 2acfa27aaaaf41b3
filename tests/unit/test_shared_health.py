"""System-health alerts: one event per crossing (firing after the bound, resolved when the
check passes again), deterministic ids, nothing lost while Kafka is away."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.events import SystemHealthAlert, decode_alert, encode, health_event_id
from shared.health import CheckState, HealthMonitor, age_check, describe, step
from shared.kafka import KafkaUnavailable

pytestmark = pytest.mark.unit

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_step_fires_once_after_the_bound_and_resolves_once() -> None:
    state = CheckState()
    seen = []
    for second, ok in enumerate([True, False, False, False, False, True, True]):
        now = T0 + timedelta(seconds=second)
        crossing = step(state, ok, after_s=2, mono=float(second), now=now)
        seen.append(crossing and (crossing.state, crossing.since))
    started = T0 + timedelta(seconds=1)
    assert seen == [None, None, None, ("firing", started), None, ("resolved", started), None]


def test_step_raises_nothing_for_a_failure_shorter_than_the_bound() -> None:
    state = CheckState()
    pattern = [False, False, True, False, True]
    crossings = [step(state, ok, after_s=3, mono=float(i), now=T0) for i, ok in enumerate(pattern)]
    assert crossings == [None] * len(pattern)


def test_step_with_no_bound_fires_at_the_first_failure() -> None:
    crossing = step(CheckState(), False, after_s=0, mono=0.0, now=T0)
    assert crossing is not None and crossing.state == "firing"


def test_event_ids_are_one_per_crossing_and_state() -> None:
    a = health_event_id("processor", "consumer", T0, "firing")
    assert a == health_event_id("processor", "consumer", T0, "firing")
    others = {
        health_event_id("processor", "consumer", T0, "resolved"),
        health_event_id("processor", "consumer", T0 + timedelta(seconds=1), "firing"),
        health_event_id("analytics", "consumer", T0, "firing"),
        health_event_id("processor", "database", T0, "firing"),
    }
    assert a not in others and len(others) == 4


def test_the_event_round_trips_on_the_alerts_topic() -> None:
    event = SystemHealthAlert(
        event_id=health_event_id("archiver", "archive_behind", T0, "firing"),
        service="archiver",
        check="archive_behind",
        state="firing",
        detail='{"behind_s": 900.0, "limit_s": 600.0}',
        since=T0,
        occurred_at=T0,
    )
    assert decode_alert(encode(event)) == event


def test_details_are_one_short_line() -> None:
    assert describe({}) == ""
    assert describe({"stuck": [{"topic": "outcomes", "partition": 1}]}) == (
        '{"stuck":[{"topic":"outcomes","partition":1}]}'
    )
    assert len(describe({"x": "y" * 2000})) == 500


def test_age_check_fails_past_its_limit() -> None:
    ages = iter([10.0, 700.0])
    check = age_check(lambda: next(ages), 600.0)
    assert check() == (True, {"behind_s": 10.0, "limit_s": 600.0})
    assert check() == (False, {"behind_s": 700.0, "limit_s": 600.0})


class _Clock:
    def __init__(self) -> None:
        self.mono = 0.0

    def now(self) -> datetime:
        return T0 + timedelta(seconds=self.mono)


async def test_monitor_publishes_one_firing_and_one_resolved_and_keeps_them_while_kafka_is_away() -> (
    None
):
    clock = _Clock()
    published: list[SystemHealthAlert] = []
    kafka_up = [False]
    ready = [False]

    async def publish(event: SystemHealthAlert) -> None:
        if not kafka_up[0]:
            raise KafkaUnavailable("away")
        published.append(event)

    monitor = HealthMonitor("processor", publish, mono=lambda: clock.mono, now=clock.now)
    monitor.watch("consumer", lambda: (ready[0], {"stuck": [{"offset": 7}]}), after_s=10)
    for second in range(0, 30, 5):  # not ready for 25 s; Kafka away meanwhile
        clock.mono = float(second)
        await monitor.tick()
    assert published == [] and monitor.firing == ["consumer"]
    kafka_up[0] = True
    clock.mono = 30.0
    await monitor.tick()
    [firing] = published
    assert (firing.service, firing.check, firing.state) == ("processor", "consumer", "firing")
    assert firing.since == T0 and firing.detail == '{"stuck":[{"offset":7}]}'
    assert firing.event_id == health_event_id("processor", "consumer", T0, "firing")
    ready[0] = True
    for second in (35, 40):
        clock.mono = float(second)
        await monitor.tick()
    assert [e.state for e in published] == ["firing", "resolved"]
    resolved = published[1]
    assert resolved.since == T0 and resolved.detail == "passing again after 35 s"
    assert monitor.firing == []
