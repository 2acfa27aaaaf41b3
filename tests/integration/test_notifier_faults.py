"""N1 provider down, N2 restart mid-batch, D7 redelivery and replay: nothing lost, nothing
sent twice, never both sent and dead-lettered."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from shared import topics
from shared.settings import CommonSettings
from tests.support.events import processed, publish_events
from tests.support.notifier import (
    SmsStub,
    SmtpSink,
    notifier_settings,
    running_notifier,
    seed_workspace,
    send_rows,
    settings_env,
)
from tests.support.polling import eventually
from tests.support.processes import ServiceProcess
from tests.support.topics import read_json

pytestmark = pytest.mark.integration

OPS = "ops@acme.test"
PHONE = "+14155552671"
RULES = {"rules": [{"event": "lead_created", "channel": "email", "recipients": [OPS]}]}


async def _rows(database_url: str, channel: str | None = None) -> list[dict[str, Any]]:
    return [r for r in await send_rows(database_url) if channel is None or r["channel"] == channel]


async def test_provider_down_retries_twice_then_deadletters_and_recovers(
    settings: CommonSettings,
) -> None:
    smtp = SmtpSink()  # not started: connections are refused
    sms = await SmsStub(status=500).start()
    try:
        ws = await seed_workspace(
            settings.database_url,
            settings={
                **RULES,
                "high_priority": {
                    "conditions": [{"field": "product", "op": "eq", "value": "Solar"}],
                    "sms_recipients": [PHONE],
                },
            },
        )
        s = notifier_settings(settings, smtp=smtp, sms=sms)
        async with running_notifier(s):
            lost = processed(ws)
            await publish_events(settings, [lost])
            rows = await eventually(
                lambda: _rows(settings.database_url),
                until=lambda rs: len(rs) == 2 and all(r["status"] == "dead" for r in rs),
                what="both notifications dead",
            )
            assert {r["channel"]: r["attempts"] for r in rows} == {"email": 3, "sms": 3}
            assert sms.attempts == 3  # the first attempt and exactly 2 retries
            entries = await read_json(settings, topics.NOTIFY_DEADLETTER, min_count=2)
            assert len(entries) == 2
            by_channel = {e["channel"]: e for e in entries}
            for channel, recipient in (("email", OPS), ("sms", PHONE)):
                entry = by_channel[channel]
                assert entry["attempts"] == 3 and entry["retries"] == 2
                assert entry["reason"] == "retries_exhausted"
                assert entry["event_ids"] == [str(lost.event_id)]
                assert entry["recipient"] == recipient
                assert entry["last_error"]
            assert "500" in by_channel["sms"]["last_error"]

            # Providers back: later events are sent; the dead one is not resurrected.
            smtp.start()
            sms.status = 201
            later = processed(ws)
            await publish_events(settings, [later])
            await eventually(lambda: _sent(smtp, sms), until=lambda n: n == (1, 1))
            assert smtp.per_event() == {str(later.event_id): 1}
            assert str(lost.event_id)[:8] not in sms.messages[0]["Body"]
            statuses = {
                (str(r["event_id"]), r["channel"]): r["status"]
                for r in await _rows(settings.database_url)
            }
            assert statuses == {
                (str(lost.event_id), "email"): "dead",
                (str(lost.event_id), "sms"): "dead",
                (str(later.event_id), "email"): "sent",
                (str(later.event_id), "sms"): "sent",
            }
    finally:
        smtp.stop()
        await sms.stop()


async def _sent(smtp: SmtpSink, sms: SmsStub) -> tuple[int, int]:
    return len(smtp.received()), len(sms.messages)


async def test_killed_mid_batch_loses_nothing_and_sends_nothing_twice(
    settings: CommonSettings, tmp_path: Path
) -> None:
    smtp = SmtpSink().start()
    try:
        ws = await seed_workspace(settings.database_url, settings=RULES)
        # A window long enough to kill the notifier while the batch waits in it.
        s = notifier_settings(settings, smtp=smtp, notify_batch_window_s=3.0)
        env = settings_env(s)
        first = ServiceProcess("notifier", env, tmp_path).start()
        try:
            await first.wait_ready(f"http://127.0.0.1:{s.notifier_ops_port}/readyz")
            before = [processed(ws) for _ in range(3)]
            await publish_events(settings, before)
            await eventually(
                lambda: _rows(settings.database_url, "email"),
                until=lambda rs: len(rs) == 3 and all(r["status"] == "pending" for r in rs),
                what="three pending notifications",
            )
            first.kill(signal.SIGKILL)
            first.wait(10)
        finally:
            first.kill(signal.SIGKILL)
        assert smtp.received() == []
        during = [processed(ws) for _ in range(2)]
        await publish_events(settings, during)

        second = ServiceProcess("notifier", env, tmp_path).start()
        try:
            await second.wait_ready(f"http://127.0.0.1:{s.notifier_ops_port}/readyz")
            expected = {str(e.event_id) for e in before + during}
            await eventually(
                lambda: _rows(settings.database_url, "email"),
                until=lambda rs: len(rs) == 5 and all(r["status"] == "sent" for r in rs),
                what="all five sent",
                deadline_s=60,
            )
        finally:
            second.stop()
        assert smtp.per_event() == dict.fromkeys(expected, 1)
    finally:
        smtp.stop()


class SlowHandler:
    """An SMTP server that takes its time to answer DATA (the message is already whole)."""

    def __init__(self, sink: SmtpSink, delay_s: float) -> None:
        from tests.support.notifier import _Handler

        self._inner = _Handler(sink)
        self._delay_s = delay_s

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self._delay_s)
        return await self._inner.handle_DATA(server, session, envelope)


async def test_killed_during_a_send_is_deadlettered_as_interrupted_not_resent(
    settings: CommonSettings, tmp_path: Path
) -> None:
    from aiosmtpd.controller import Controller

    sink = SmtpSink()
    controller = Controller(SlowHandler(sink, 2.0), hostname="127.0.0.1", port=sink.port)
    controller.start()
    try:
        ws = await seed_workspace(settings.database_url, settings=RULES)
        s = notifier_settings(
            settings,
            smtp=sink,
            notify_batch_window_s=0.1,
            notify_send_timeout_s=3.0,
            notify_claim_lease_s=4.5,
        )
        env = settings_env(s)
        first = ServiceProcess("notifier", env, tmp_path).start()
        try:
            await first.wait_ready(f"http://127.0.0.1:{s.notifier_ops_port}/readyz")
            lead = processed(ws)
            await publish_events(settings, [lead])
            await eventually(
                lambda: _rows(settings.database_url, "email"),
                until=lambda rs: len(rs) == 1 and rs[0]["status"] == "sending",
            )
            first.kill(signal.SIGKILL)
        finally:
            first.kill(signal.SIGKILL)
        second = ServiceProcess("notifier", env, tmp_path).start()
        try:
            await second.wait_ready(f"http://127.0.0.1:{s.notifier_ops_port}/readyz")
            [row] = await eventually(
                lambda: _rows(settings.database_url, "email"),
                until=lambda rs: rs[0]["status"] == "dead",
                deadline_s=30,
            )
            assert row["last_error"].startswith("interrupted")
            [entry] = await read_json(settings, topics.NOTIFY_DEADLETTER, min_count=1)
            assert entry["reason"] == "interrupted" and entry["event_ids"] == [str(lead.event_id)]
            assert entry["attempts"] == 1
        finally:
            second.stop()
        # The server may have taken the message before the kill: at most once, never twice.
        assert sum(sink.per_event().values()) <= 1
    finally:
        controller.stop()


async def test_redelivered_and_replayed_events_are_not_sent_twice(settings: CommonSettings) -> None:
    smtp = SmtpSink().start()
    try:
        ws = await seed_workspace(settings.database_url, settings=RULES)
        leads = [processed(ws) for _ in range(4)]
        s = notifier_settings(settings, smtp=smtp, notify_batch_size=2)
        async with running_notifier(s):
            # Every event delivered twice.
            await publish_events(settings, leads + leads)
            await eventually(lambda: _all_sent(settings.database_url, 4), what="four sent")
        # A new consumer group reads the topic from offset 0: every event again.
        replay = notifier_settings(settings, smtp=smtp, notify_group_id=f"replay-{time.time_ns()}")
        async with running_notifier(replay):
            sentinel = processed(ws)
            await publish_events(settings, [sentinel])
            # Same workspace key, same partition: the sentinel comes after the replayed ones.
            await eventually(lambda: _all_sent(settings.database_url, 5), what="sentinel sent")
        assert smtp.per_event() == {str(e.event_id): 1 for e in [*leads, sentinel]}
        conn = await asyncpg.connect(settings.database_url)
        try:
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM notification_sends WHERE channel = 'email'"
                )
                == 5
            )
        finally:
            await conn.close()
    finally:
        smtp.stop()


async def _all_sent(database_url: str, n: int) -> bool:
    rows = await _rows(database_url, "email")
    return len(rows) == n and all(r["status"] == "sent" for r in rows)


class RefusingHandler:
    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        return f"550 5.1.1 <{address}> mailbox unavailable"


async def test_a_permanent_refusal_is_deadlettered_at_once(settings: CommonSettings) -> None:
    from aiosmtpd.controller import Controller

    sink = SmtpSink()
    controller = Controller(RefusingHandler(), hostname="127.0.0.1", port=sink.port)
    controller.start()
    try:
        ws = await seed_workspace(settings.database_url, settings=RULES)
        async with running_notifier(notifier_settings(settings, smtp=sink)):
            lead = processed(ws)
            await publish_events(settings, [lead])
            [row] = await eventually(
                lambda: _rows(settings.database_url, "email"),
                until=lambda rs: rs and rs[0]["status"] == "dead",
            )
            assert row["attempts"] == 1
            [entry] = await read_json(settings, topics.NOTIFY_DEADLETTER, min_count=1)
            assert entry["reason"] == "permanent_error" and entry["attempts"] == 1
            assert "550" in entry["last_error"] and OPS not in entry["last_error"]
    finally:
        controller.stop()
