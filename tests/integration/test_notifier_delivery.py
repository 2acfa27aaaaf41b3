"""Email and SMS delivery against a real SMTP server and a local SMS provider."""

from __future__ import annotations

import signal
from pathlib import Path

import aiohttp
import pytest

from shared.settings import CommonSettings
from tests.support.events import alert, failed, processed, publish_events
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

pytestmark = pytest.mark.integration

SALES = "sales.team@acme-solar.test"
ONCALL = "+14155552671"


async def test_a_lead_produces_the_configured_email_and_sms_and_no_pii_in_logs(
    settings: CommonSettings, tmp_path: Path
) -> None:
    smtp = SmtpSink().start()
    sms = await SmsStub().start()
    try:
        ws = await seed_workspace(
            settings.database_url,
            name="Acme Solar",
            settings={
                "rules": [{"event": "contact_created", "channel": "email", "recipients": [SALES]}],
                "high_priority": {
                    "conditions": [{"field": "product", "op": "eq", "value": "solar"}],
                    "sms_recipients": [ONCALL],
                },
            },
        )
        s = notifier_settings(settings, smtp=smtp, sms=sms, log_level="DEBUG")
        proc = ServiceProcess("notifier", settings_env(s), tmp_path).start()
        try:
            await proc.wait_ready(f"http://127.0.0.1:{s.notifier_ops_port}/readyz")
            lead = processed(
                ws,
                first_name="Zyxwin",
                last_name="Quorrel",
                phone="+16266633444",
                email="zyxwin.quorrel@example.com",
                product="Solar",
            )
            ignored = processed(ws, first_name="Other", product="Wind", action="updated")
            await publish_events(settings, [lead, ignored])
            await eventually(
                lambda: _count(smtp, sms),
                until=lambda n: n[0] >= 1 and n[1] >= 1,
                what="email and sms",
            )

            [mail] = smtp.received()
            assert mail.rcpt_tos == [SALES]
            assert mail.message["Subject"] == "[leadwire] New contact: Zyxwin Quorrel (Solar)"
            assert mail.event_ids == [str(lead.event_id)]
            for expected in (
                "Zyxwin Quorrel",
                "+16266633444",
                "zyxwin.quorrel@example.com",
                "Solar",
                str(lead.contact.id),
            ):
                assert expected in mail.body
            [text] = sms.messages
            assert text["To"] == ONCALL and text["From"] == "+15550000000"
            assert text["Body"].startswith(
                "leadwire: High-priority lead: Zyxwin Quorrel (Solar) +16266633444"
            )

            rows = await eventually(
                lambda: send_rows(settings.database_url),
                until=lambda rs: all(
                    r["status"] == "sent" for r in rs if r["channel"] != "realtime"
                ),
            )
            assert {(r["channel"], r["recipient"]) for r in rows} == {
                ("email", SALES),
                ("sms", ONCALL),
            }

            async def scrape() -> str:
                async with (
                    aiohttp.ClientSession() as http,
                    http.get(f"http://127.0.0.1:{s.notifier_ops_port}/metrics") as resp,
                ):
                    return await resp.text()

            # The other lead matched no rule: consumed, nothing sent.
            metrics = await eventually(
                scrape, until=lambda m: 'leadwire_notifier_events_total{result="no_rule"} 1.0' in m
            )
            assert 'leadwire_notifications_sent_total{channel="email"} 1.0' in metrics
            assert 'leadwire_notifications_sent_total{channel="sms"} 1.0' in metrics
            assert 'leadwire_notification_delay_seconds_count{channel="email"} 1.0' in metrics
            assert 'leadwire_notification_queue_depth{channel="email"}' in metrics
        finally:
            proc.kill(signal.SIGTERM)
            assert proc.wait(30) == 0
        logs = proc.logs()
        assert "notification_sent" in logs
        for pii in (
            "Zyxwin",
            "Quorrel",
            "6266633444",
            "zyxwin.quorrel",
            "example.com",
            SALES,
            "acme-solar",
            ONCALL,
            "4155552671",
            "Acme Solar",
        ):
            assert pii not in logs, f"{pii!r} leaked into the notifier's logs"
    finally:
        smtp.stop()
        await sms.stop()


async def _count(smtp: SmtpSink, sms: SmsStub) -> tuple[int, int]:
    return len(smtp.received()), len(sms.messages)


async def test_six_leads_in_a_burst_make_two_digests(settings: CommonSettings) -> None:
    smtp = SmtpSink().start()
    try:
        ws = await seed_workspace(
            settings.database_url,
            settings={
                "rules": [{"event": "lead_created", "channel": "email", "recipients": [SALES]}],
            },
        )
        s = notifier_settings(settings, smtp=smtp, notify_batch_window_s=1.0)
        async with running_notifier(s):
            leads = [
                processed(ws, first_name=f"Burst{i}", phone=f"+1626663340{i}") for i in range(6)
            ]
            await publish_events(settings, leads)
            await eventually(
                lambda: _events(smtp), until=lambda n: n >= 6, what="six notifications"
            )
        mails = smtp.received()
        assert sorted(len(m.event_ids) for m in mails) == [1, 5]
        digest = next(m for m in mails if len(m.event_ids) == 5)
        assert digest.message["Subject"].startswith("[leadwire] 5 notifications for ")
        assert sum(f"Burst{i} Malinao" in digest.body for i in range(6)) == 5
        assert sorted(e for m in mails for e in m.event_ids) == sorted(
            str(lead.event_id) for lead in leads
        )
    finally:
        smtp.stop()


async def _events(smtp: SmtpSink) -> int:
    return sum(smtp.per_event().values())


async def test_failed_processing_and_alerts_reach_their_rules(settings: CommonSettings) -> None:
    from shared import topics

    smtp = SmtpSink().start()
    try:
        ws = await seed_workspace(
            settings.database_url,
            settings={
                "rules": [
                    {
                        "event": "processing_failed",
                        "channel": "email",
                        "recipients": ["ops@acme.test"],
                    },
                    {
                        "event": "performance_alert",
                        "channel": "email",
                        "recipients": ["ops@acme.test"],
                    },
                ]
            },
        )
        s = notifier_settings(settings, smtp=smtp, notify_batch_size=1)
        async with running_notifier(s):
            f, a = failed(ws, error_type="MappingError"), alert(ws)
            await publish_events(settings, [f, processed(ws)])
            await publish_events(settings, [a], logical=topics.ALERTS)
            await eventually(lambda: _events(smtp), until=lambda n: n >= 2)
        subjects = sorted(str(m.message["Subject"]) for m in smtp.received())
        assert subjects == [
            "[leadwire] Lead processing failed: MappingError",
            "[leadwire] Performance alert firing: error_rate 0.25 (threshold 0.1)",
        ]
        assert {e for m in smtp.received() for e in m.event_ids} == {
            str(f.event_id),
            str(a.event_id),
        }
    finally:
        smtp.stop()
