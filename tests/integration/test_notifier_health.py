"""System-health alerts through the notifier, against real Kafka, Postgres and SMTP: a
workspace whose rules ask for ``system_health`` (set with ``leadwire notify set-rule``)
gets one email per crossing; a workspace without such a rule gets nothing."""

from __future__ import annotations

import pytest

from shared import topics
from shared.settings import CommonSettings
from tests.support.cli import arun_cli
from tests.support.events import health_alert, publish_events
from tests.support.notifier import (
    SmtpSink,
    notifier_settings,
    running_notifier,
    seed_workspace,
    send_rows,
)
from tests.support.polling import eventually

pytestmark = pytest.mark.integration

OPS = "ops.oncall@acme-solar.test"
SALES = "sales@acme-solar.test"


async def test_a_health_alert_is_emailed_once_to_the_workspaces_that_asked_for_it(
    settings: CommonSettings, settings_env: dict[str, str]
) -> None:
    smtp = SmtpSink().start()
    try:
        await seed_workspace(settings.database_url, name="ops-team")
        await seed_workspace(
            settings.database_url,
            name="sales-team",
            settings={
                "rules": [{"event": "performance_alert", "channel": "email", "recipients": [SALES]}]
            },
        )
        doc = await arun_cli(
            settings_env,
            "notify",
            "set-rule",
            "-W",
            "ops-team",
            "--event",
            "system_health",
            "--channel",
            "email",
            "--to",
            OPS,
        )
        assert {"event": "system_health", "channel": "email", "recipients": [OPS]} in doc["rules"]
        firing = health_alert(service="archiver", check="archive_behind")
        resolved = health_alert(
            service="archiver", check="archive_behind", state="resolved", since=firing.since
        )
        async with running_notifier(notifier_settings(settings, smtp=smtp)):
            # The firing event twice (a monitor re-publishing it after Kafka was away).
            await publish_events(settings, [firing, firing, resolved], logical=topics.ALERTS)
            wanted = {str(firing.event_id), str(resolved.event_id)}
            await eventually(
                lambda: _per_event(smtp),
                until=lambda seen: wanted <= set(seen),
                what="both alerts emailed",
            )
            rows = await eventually(
                lambda: send_rows(settings.database_url),
                until=lambda r: len(r) == 2 and all(x["status"] == "sent" for x in r),
                what="both sends recorded as sent",
            )
        assert {(r["recipient"], r["channel"]) for r in rows} == {(OPS, "email")}
        assert smtp.per_event(OPS) == dict.fromkeys(wanted, 1)  # once each, though sent twice
        assert all(m.rcpt_tos == [OPS] for m in smtp.received())  # the sales team: nothing
        text = "\n".join(str(m.message["Subject"]) + "\n" + m.body for m in smtp.received())
        assert "System health alert firing: archiver archive_behind" in text
        assert "System health alert resolved: archiver archive_behind" in text
    finally:
        smtp.stop()


async def _per_event(smtp: SmtpSink) -> dict[str, int]:
    return smtp.per_event(OPS)
