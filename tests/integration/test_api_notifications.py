"""Notification rules through the management API, stored where the notifier reads them
(and where `leadwire notify show` finds them): rules, recipients checked and normalized,
the high-priority SMS rule, and the real-time token shown once."""

from __future__ import annotations

import pytest

from services.api import admin
from services.api.repository import PostgresRepository
from shared.db import connect
from shared.settings import CommonSettings
from tests.support.api import api_settings, make_key, running_api
from tests.support.cli import arun_cli

pytestmark = pytest.mark.integration


async def test_notification_rules_through_the_api(
    settings: CommonSettings, settings_env: dict[str, str]
) -> None:
    conn = await connect(settings.database_url)
    try:
        repo = PostgresRepository(conn)
        ws = await admin.create_workspace(repo, "acme", "GB")
        key = await make_key(repo, ws["id"], "manage")
    finally:
        await conn.close()
    base = f"/v1/workspaces/{ws['id']}/notifications"
    async with running_api(api_settings(settings)) as api:
        crm = api.client(key)
        shown = await crm.ok("GET", base)
        assert shown["defaults"] is True and shown["realtime_token"] == {"set": False}

        rule = {"event": "lead_created", "channel": "email", "recipients": ["Sales@Acme.Example"]}
        stored = await crm.ok("PUT", f"{base}/rules", rule)
        assert {
            "event": "lead_created",
            "channel": "email",
            "recipients": ["sales@acme.example"],
        } in stored["rules"]
        sms = {"event": "processing_failed", "channel": "sms", "recipients": ["020 7946 0958"]}
        stored = await crm.ok("PUT", f"{base}/rules", sms)
        assert {
            "event": "processing_failed",
            "channel": "sms",
            "recipients": ["+442079460958"],
        } in stored["rules"]

        for bad, field in [
            ({**rule, "recipients": ["not-an-email"]}, "recipients"),
            ({**rule, "channel": "realtime"}, "recipients"),
            ({**rule, "recipients": []}, "recipients"),
            ({**rule, "event": "nothing"}, "event"),
        ]:
            answer = await crm.call("PUT", f"{base}/rules", bad)
            assert answer.status == 400 and answer.body["errors"][0]["field"] == field, answer.body

        high = {
            "conditions": [{"field": "product", "op": "in", "value": ["Solar", "Roof"]}],
            "sms_recipients": ["+447911123456"],
        }
        bad_phone = await crm.call(
            "PUT", f"{base}/high-priority", {**high, "sms_recipients": ["12"]}
        )
        assert bad_phone.status == 400 and bad_phone.body["errors"][0]["field"] == "sms_recipients"
        stored = await crm.ok("PUT", f"{base}/high-priority", high)
        assert stored["high_priority"]["sms_recipients"] == ["+447911123456"]
        cli_view = await arun_cli(settings_env, "notify", "show", "--workspace", "acme")
        assert cli_view["high_priority"] == stored["high_priority"]
        assert cli_view["rules"] == stored["rules"]

        assert (await crm.ok("DELETE", f"{base}/high-priority"))["high_priority"] is None
        removed = await crm.ok("DELETE", f"{base}/rules/processing_failed/sms")
        assert all(r["channel"] != "sms" for r in removed["rules"])
        again = await crm.call("DELETE", f"{base}/rules/processing_failed/sms")
        assert again.status == 404
        assert (await crm.call("DELETE", f"{base}/rules/nothing/sms")).status == 404

        token = await crm.ok("POST", f"{base}/realtime-token", {})
        assert token["token"].startswith("lwrt_") and token["rotated"] is False
        exists = await crm.call("POST", f"{base}/realtime-token", {})
        assert exists.status == 409 and exists.error_codes() == ["token_exists"]
        rotated = await crm.ok("POST", f"{base}/realtime-token", {"rotate": True})
        assert rotated["rotated"] is True and rotated["token"] != token["token"]
        assert (await crm.ok("GET", base))["realtime_token"] == {"set": True}
