"""Analytics and the consumers' dead-letter topic, against real Kafka and Postgres: dead
letters counted per webhook and workspace exactly once (a replay by a new consumer group
counts nothing again), in the API and in /metrics; and the dead-letter growth alert,
one firing event and one resolved event."""

from __future__ import annotations

import uuid

import aiohttp
import orjson
import pytest

from shared import topics
from shared.events import LeadFailed, SystemHealthAlert, decode_alert
from shared.kafka import deadletter
from shared.settings import CommonSettings
from tests.support.analytics import analytics_settings, running_analytics, seed_webhooks
from tests.support.events import failed, publish_events
from tests.support.polling import eventually
from tests.support.topics import read_topic, wait_caught_up

pytestmark = pytest.mark.integration


def dead_letter_of(event: LeadFailed, offset: int, group: str) -> bytes:
    """The dead-letter entry a consumer runner writes for an outcome it gave up on."""
    return orjson.dumps(
        deadletter.entry(
            source_topic=topics.OUTCOMES,
            partition=0,
            offset=offset,
            key=str(event.workspace_id).encode(),
            payload=event.model_dump_json().encode(),
            reason="permanent: CharacterNotInRepertoireError: invalid byte sequence",
            group_id=group,
            error_class="CharacterNotInRepertoireError",
        )
    )


async def growth_alerts(settings: CommonSettings) -> list[SystemHealthAlert]:
    alerts = [decode_alert(v) for v in await read_topic(settings, topics.ALERTS)]
    return [
        a for a in alerts if isinstance(a, SystemHealthAlert) and a.check == "deadletter_growth"
    ]


async def test_dead_letters_are_counted_per_webhook_exactly_once(settings: CommonSettings) -> None:
    ws, noisy, quiet = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await seed_webhooks(settings.database_url, ws, "Acme", {noisy: "noisy", quiet: "quiet"})
    first = failed(ws, webhook_id=noisy)
    entries = [
        dead_letter_of(first, 3, "leadwire-analytics"),
        dead_letter_of(first, 3, "leadwire-archiver"),  # the same message, another consumer
        dead_letter_of(failed(ws, webhook_id=noisy), 4, "leadwire-notifier"),
        b"\xff not even json",  # counted, under no webhook
    ]
    await publish_events(settings, entries, logical=topics.DEADLETTER, key=str(ws))
    s = analytics_settings(settings, analytics_deadletter_check_s=60)

    async def figures(svc) -> tuple[int, int, int]:
        _, hook = await svc.get(f"/analytics/webhooks/{noisy}")
        _, other = await svc.get(f"/analytics/webhooks/{quiet}")
        _, space = await svc.get(f"/analytics/workspaces/{ws}")
        return hook["deadletters"], other["deadletters"], space["deadletters"]

    async with running_analytics(s) as svc:
        counted = await eventually(
            lambda: figures(svc), until=lambda f: f == (3, 0, 3), what="dead letters counted"
        )
        await wait_caught_up(s, s.analytics_deadletter_group, topics.DEADLETTER)
        text = await eventually(
            lambda: _metrics(svc.ops_url),
            until=lambda t: f'webhook="{noisy}"' in t and "leadwire_analytics_deadletters{" in t,
            what="dead letters in /metrics",
        )
        assert f'leadwire_analytics_deadletters{{webhook="{noisy}",workspace="{ws}"}} 3.0' in text
        assert 'leadwire_analytics_deadletters{webhook="other",workspace="other"} 1.0' in text
    # Every dead letter delivered again: a new consumer group reads the topic from offset
    # 0 (as a redelivery after a crash before the commit would); nothing more is counted.
    replay = analytics_settings(settings, analytics_deadletter_group="replay-group")
    async with running_analytics(replay) as svc:
        await wait_caught_up(replay, "replay-group", topics.DEADLETTER)
        assert await figures(svc) == counted


async def test_new_dead_letters_raise_one_growth_alert_and_a_quiet_window_resolves_it(
    settings: CommonSettings,
) -> None:
    ws = uuid.uuid4()
    s = analytics_settings(
        settings,
        analytics_deadletter_check_s=0.2,
        analytics_deadletter_window_minutes=0.05,  # 3 s
        analytics_deadletter_alert_min=2,
    )
    async with running_analytics(s):
        one = [dead_letter_of(failed(ws), 1, "g")]
        await publish_events(settings, one, logical=topics.DEADLETTER, key=str(ws))
        await wait_caught_up(s, s.analytics_deadletter_group, topics.DEADLETTER)
        await publish_events(settings, one * 2, logical=topics.DEADLETTER, key=str(ws))
        [firing] = await eventually(
            lambda: growth_alerts(settings), until=lambda a: len(a) >= 1, what="growth alert"
        )
        assert (firing.service, firing.state) == ("analytics", "firing")
        assert "new dead letter(s)" in firing.detail and "permanent: " in firing.detail
        alerts = await eventually(
            lambda: growth_alerts(settings),
            until=lambda a: len(a) >= 2,
            deadline_s=30,
            what="resolved after a quiet window",
        )
    assert [(a.state, a.since) for a in alerts] == [
        ("firing", firing.since),
        ("resolved", firing.since),
    ]


async def _metrics(url: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as resp:
        return await resp.text()
