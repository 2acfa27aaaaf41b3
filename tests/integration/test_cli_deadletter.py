"""``leadwire deadletter list|show|retry`` against real Kafka and Postgres: dead letters
made by a real consumer runner and by the notifier are listed (counted per reason, also
in /metrics), shown whole, and sent back once after the fix: a second ``retry --all``
sends nothing, ``--dry-run`` changes nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import orjson
import pytest
from prometheus_client import REGISTRY

from shared import topics
from shared.kafka import ConsumerRunner, Message, Publisher, ensure_topics
from shared.settings import CommonSettings
from tests.support.cli import arun_cli, cli_inprocess
from tests.support.events import processed, publish_events
from tests.support.notifier import (
    SmtpSink,
    notifier_settings,
    running_notifier,
    seed_workspace,
    send_rows,
)
from tests.support.polling import eventually
from tests.support.topics import read_json, read_records

pytestmark = pytest.mark.integration

OPS = "ops@acme-solar.test"


def deadlettered(topic: str, reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "leadwire_deadlettered_total", {"topic": topic, "reason": reason}
    )
    return value or 0.0


async def test_a_consumers_dead_letters_are_listed_shown_and_sent_back_once(
    settings: CommonSettings, settings_env: dict[str, str]
) -> None:
    await ensure_topics(settings, [topics.RAW, topics.DEADLETTER, topics.NOTIFY_DEADLETTER])
    ws, hook, request = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    refused = {"request_id": str(request), "workspace_id": str(ws), "webhook_id": str(hook)}
    fixed = asyncio.Event()
    handled: list[dict] = []

    async def handle(messages: list[Message[dict]]) -> None:
        if not fixed.is_set() and any(m.value.get("request_id") for m in messages):
            raise UnicodeError("the store refuses this value")  # permanent
        handled.extend(m.value for m in messages)

    before = deadlettered(topics.RAW, "permanent"), deadlettered(topics.RAW, "undecodable")
    async with Publisher(settings) as pub:
        await pub.publish(topics.RAW, b"\xff not json", key="k")
        await pub.publish(topics.RAW, orjson.dumps(refused), key=str(ws))
        await _consume(settings, pub, handle, until=lambda: _dead_letters(settings, 2))
    assert deadlettered(topics.RAW, "permanent") == before[0] + 1  # counted per reason
    assert deadlettered(topics.RAW, "undecodable") == before[1] + 1

    listing = await arun_cli(settings_env, "deadletter", "list", "--topic", "deadletter")
    assert (listing["count"], listing["by_reason"]) == (2, {"permanent": 1, "undecodable": 1})
    garbage, event = listing["deadletters"]
    assert event["webhook_id"] == str(hook) and event["error_class"] == "UnicodeError"
    assert "reason" not in event  # the free text (it may quote a value) only in `show`
    only = await arun_cli(settings_env, "deadletter", "list", "--reason", "undecodable")
    assert [d["id"] for d in only["deadletters"]] == [garbage["id"]]

    text = await cli_inprocess(settings_env, "deadletter", "list", json=False)
    assert (
        text.code == 0 and event["id"] in text.stdout and "permanent (UnicodeError)" in text.stdout
    )
    assert "2 dead letter(s) since" in text.stdout and "the store refuses" not in text.stdout
    text = await cli_inprocess(settings_env, "deadletter", "show", event["id"], json=False)
    assert "reason      permanent: UnicodeError: the store refuses this value" in text.stdout
    assert f"goes back to {topics.RAW}" in text.stdout and str(request) in text.stdout
    shown = await arun_cli(settings_env, "deadletter", "show", event["id"])
    assert shown["payload"] == refused and shown["target"] == topics.RAW
    assert shown["reason"] == "permanent: UnicodeError: the store refuses this value"
    assert shown["request_id"] == str(request) and shown["group_id"] == "g-dl"

    dry = await arun_cli(settings_env, "deadletter", "retry", "--all", "--dry-run")
    assert dry["summary"] == {"retried": 2, "skipped": 0}
    assert len(await read_records(settings, topics.RAW)) == 2  # nothing published

    bad = await cli_inprocess(settings_env, "deadletter", "show", "outcomes:1:2")
    assert bad.code == 2 and "is not a dead letter id" in bad.error()["error"]
    missing = await cli_inprocess(settings_env, "deadletter", "show", "deadletter:0:999")
    assert missing.code == 1 and missing.error()["error"] == "no dead letter deadletter:0:999"
    first = await arun_cli(settings_env, "deadletter", "retry", "--all")
    assert sorted(r["id"] for r in first["retried"]) == sorted([garbage["id"], event["id"]])
    raw = await read_records(settings, topics.RAW, min_count=4)
    assert Counter((r.key, r.value) for r in raw) == {  # each sent back as it was, once
        (b"k", b"\xff not json"): 2,
        (str(ws).encode(), orjson.dumps(refused)): 2,
    }
    again = await arun_cli(settings_env, "deadletter", "retry", "--all")
    assert again["summary"] == {"retried": 0, "skipped": 2}
    one = await arun_cli(settings_env, "deadletter", "retry", event["id"])
    assert one["retried"] == [] and "sent back already" in one["skipped"][0]["why"]
    assert len(await read_records(settings, topics.RAW)) == 4
    listing = await arun_cli(settings_env, "deadletter", "list")
    assert all(d["retried_at"] for d in listing["deadletters"]) and listing["retried"] == 2

    fixed.set()  # the fix is in: the consumer handles the event it refused, once
    async with Publisher(settings) as pub:
        await _consume(settings, pub, handle, until=lambda: _handled(handled, refused))
    assert handled.count(refused) == 1


async def test_the_notifiers_dead_letters_are_listed_and_their_sends_requeued_once(
    settings: CommonSettings, settings_env: dict[str, str]
) -> None:
    ws = await seed_workspace(
        settings.database_url,
        settings={"rules": [{"event": "lead_created", "channel": "email", "recipients": [OPS]}]},
    )
    lead = processed(ws)
    before = deadlettered("notifications", "permanent_error")
    # No SMTP server configured: the email is dead-lettered at once (permanent).
    async with running_notifier(notifier_settings(settings)):
        await publish_events(settings, [lead])
        await read_json(settings, topics.NOTIFY_DEADLETTER, min_count=1)
    assert deadlettered("notifications", "permanent_error") == before + 1

    listing = await arun_cli(settings_env, "deadletter", "list")
    [dead] = listing["deadletters"]
    assert dead["id"].startswith("notifications.deadletter:")
    assert (dead["reason_code"], dead["source"]) == ("permanent_error", "email notifications")
    assert (dead["workspace_id"], dead["sends"]) == (str(ws), 1)
    shown = await arun_cli(settings_env, "deadletter", "show", dead["id"])
    assert shown["entry"]["event_ids"] == [str(lead.event_id)]
    assert shown["target"] == "notification_sends"

    smtp = SmtpSink().start()  # the fix: an SMTP server
    try:
        async with running_notifier(notifier_settings(settings, smtp=smtp)):
            dry = await arun_cli(settings_env, "deadletter", "retry", dead["id"], "--dry-run")
            assert dry["summary"] == {"retried": 1, "skipped": 0}
            assert [r["status"] for r in await send_rows(settings.database_url)] == ["dead"]
            done = await arun_cli(settings_env, "deadletter", "retry", "--all")
            assert done["retried"] == [
                {"id": dead["id"], "target": "notification_sends", "requeued": 1, "sends": 1}
            ]
            await eventually(
                lambda: _value(smtp.per_event(OPS)),
                until=lambda seen: str(lead.event_id) in seen,
                what="the email sent after the retry",
            )
            again = await arun_cli(settings_env, "deadletter", "retry", dead["id"])
            assert again["summary"] == {"retried": 0, "skipped": 1}
            rows = await eventually(
                lambda: send_rows(settings.database_url),
                until=lambda r: [x["status"] for x in r] == ["sent"],
                what="the send recorded as sent",
            )
        assert smtp.per_event(OPS) == {str(lead.event_id): 1}
        assert rows[0]["attempts"] == 1  # a new start, not the dead row's count
    finally:
        smtp.stop()


async def _consume(settings: CommonSettings, pub: Publisher, handle, *, until) -> None:
    """A real consumer runner on the raw topic (group ``g-dl``) until ``until()``."""
    runner: ConsumerRunner[dict] = ConsumerRunner(
        settings,
        topics=[topics.RAW],
        group_id="g-dl",
        decode=orjson.loads,
        handler=handle,
        publisher=pub,
        max_backoff_s=0.2,
    )
    task = asyncio.create_task(runner.run())
    try:
        await eventually(until, what="the consumer's work")
    finally:
        runner.stop()
        await asyncio.wait_for(task, 30)


async def _dead_letters(settings: CommonSettings, count: int) -> bool:
    return len(await read_records(settings, topics.DEADLETTER)) >= count


async def _handled(handled: list[dict], value: dict) -> bool:
    return value in handled


async def _value(value: object) -> object:
    return value
