"""A CRM drives leadwire through the management API alone, with the keys an operator gave
it: create a webhook, set its mapping, test it, a vendor posts leads to the running
gateway, the CRM reads the webhook's figures, searches the archive, reads a record, fixes
the mapping and dry-runs a replay. A read key of the workspace reads but may not replay;
another workspace's key sees nothing of it.

Processor, analytics, archiver, gateway and API run in this process on real Kafka,
Postgres and S3.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest

from shared.settings import CommonSettings
from tests.support.analytics import analytics_settings, running_analytics
from tests.support.api import api_settings, db_key, running_api
from tests.support.archiver import archiver_settings, running_archiver
from tests.support.ingest import running_gateway
from tests.support.polling import eventually
from tests.support.processor import prepare_topics, processor_settings, processors

pytestmark = pytest.mark.e2e

# The vendor's body, and a mapping that reads only part of it (phones are missed).
VENDOR_LEAD = {"lead": {"mobile": "(415) 555-0134", "mail": "Dana@Example.COM"}, "first": "Dana"}
NO_EMAIL = {"lead": {"mobile": "(415) 555-0135"}, "first": "Eli"}
PARTIAL = {
    "entries": [
        {"source": "lead.mail", "target": "email", "transform": "lowercase"},
        {"source": "first", "target": "first_name"},
    ],
    "keep_unmapped": False,
}
FULL = {
    "entries": [
        *PARTIAL["entries"],
        {"source": "lead.mobile", "target": "phone", "transform": "e164"},
    ]
}


async def _post_lead(url: str, key: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            url,
            data=orjson.dumps(body),
            headers={"Content-Type": "application/json", "X-Vendor-Key": key, "Prefer": "wait=20"},
        ) as resp,
    ):
        return resp.status, await resp.json()


async def test_a_crm_runs_a_webhook_through_the_api(settings: CommonSettings) -> None:
    await prepare_topics(settings)
    operator_key = await db_key(settings.database_url, None, "manage")
    async with (
        running_api(api_settings(settings)) as api,
        running_gateway(settings) as gateway,
        processors(processor_settings(settings)),
        running_analytics(analytics_settings(settings)),
        running_archiver(archiver_settings(settings, archive_segment_idle_s=0.2)),
    ):
        # The operator makes the CRM's workspace and its manage key.
        operator = api.client(operator_key)
        ws = await operator.ok("POST", "/v1/workspaces", {"name": "acme", "default_region": "US"})
        other = await operator.ok("POST", "/v1/workspaces", {"name": "globex"})
        crm_key = await operator.ok(
            "POST", f"/v1/workspaces/{ws['id']}/api-keys", {"scope": "manage"}
        )
        stranger_key = await operator.ok("POST", f"/v1/workspaces/{other['id']}/api-keys", {})
        crm = api.client(crm_key["key"])
        base = f"/v1/workspaces/{ws['id']}"

        # 1. A webhook for a vendor that sends an API key, with the vendor's mapping.
        hook = await crm.ok(
            "POST",
            f"{base}/webhooks",
            {
                "name": "vendor",
                "auth_mode": "api-key",
                "api_key_header": "X-Vendor-Key",
                "mapping": PARTIAL,
            },
        )
        assert hook["secret"].startswith("lwk_") and hook["mapping_entries"] == 2
        hook_path = f"{base}/webhooks/{hook['id']}"
        tested = await crm.ok("POST", f"{hook_path}/mapping/test", {"sample": NO_EMAIL})
        assert tested["valid"] is False  # no phone, no email: the vendor's phone is unmapped

        # 2. The vendor posts: one lead is processed, the other rejected by the mapping.
        lead_url = f"{gateway.url}/webhooks/{hook['id']}"
        status, processed = await _post_lead(lead_url, hook["secret"], VENDOR_LEAD)
        assert status == 200 and processed["status"] == "processed", processed
        status, rejected = await _post_lead(lead_url, hook["secret"], NO_EMAIL)
        assert status == 400 and rejected["status"] == "rejected", rejected

        # The lead's contact, as the processor made it; no possible duplicates yet.
        contact = await crm.ok("GET", f"{base}/contacts/{processed['contact_id']}")
        assert (contact["email"], contact["phone"]) == ("dana@example.com", None)
        assert len(contact["leads"]) == 1
        assert (await crm.ok("GET", f"{base}/duplicates"))["items"] == []

        # The webhook's figures, as analytics counted them: one processed, one rejected.
        figures = await eventually(
            lambda: crm.ok("GET", f"{hook_path}/analytics"),
            until=lambda f: f["metrics"]["total_requests"] == 2,
            deadline_s=60,
            what="both requests counted",
        )
        m = figures["metrics"]
        assert (m["successful_requests"], m["rejected_requests"]) == (1, 1)
        assert m["success_rate"] == 50.0 and m["by_error_type"] == {"validation": 1}
        whole = await crm.ok("GET", f"{base}/analytics")
        assert [w["webhook_id"] for w in whole["webhooks"]] == [hook["id"]]

        # 3. The archive holds both; the CRM finds the rejected one and reads it.
        page = await eventually(
            lambda: crm.ok(
                "GET", f"{base}/archive", params={"webhook_id": hook["id"], "since": "1h"}
            ),
            until=lambda p: p["count"] == 2,
            deadline_s=60,
            what="both requests archived",
        )
        assert {r["status"] for r in page["requests"]} == {"processed", "rejected"}
        only = await crm.ok("GET", f"{base}/archive", params={"status": "rejected", "since": "1h"})
        assert [r["request_id"] for r in only["requests"]] == [rejected["request_id"]]
        record = await crm.ok("GET", f"{base}/archive/{rejected['request_id']}")
        assert record["status"] == "rejected" and record["workspace_id"] == ws["id"]

        # 4. The mapping is fixed; a dry run says what a replay would make of the rejected lead.
        await crm.ok("PUT", f"{hook_path}/mapping", {"mapping": FULL})
        dry = await crm.ok("POST", f"{hook_path}/replays", {"since": "1h", "status": "rejected"})
        assert dry["dry_run"] is True
        assert dry["summary"] == {"found": 1, "replayed": 1, "rejected": 0, "skipped": 0}
        [item] = dry["requests"]
        assert item["request_id"] == rejected["request_id"]
        assert (
            item["current"]["outcome"] == "replay"
            and item["current"]["lead"]["phone"] == "+14155550135"
        )
        after = await crm.ok("GET", f"{base}/archive", params={"since": "1h"})
        assert after["count"] == 2  # nothing was published

        # 5. A read key reads but does not replay; another workspace sees nothing of it.
        reader = api.client((await crm.ok("POST", f"{base}/api-keys", {"scope": "read"}))["key"])
        assert (await reader.ok("GET", f"{base}/archive", params={"since": "1h"}))["count"] == 2
        refused = await reader.post(f"{hook_path}/replays", {"since": "1h"})
        assert refused.status == 403
        stranger = api.client(stranger_key["key"])
        assert (await reader.ok("GET", f"{hook_path}/analytics"))["metrics"]["total_requests"] == 2
        for path in (
            f"{base}/archive",
            f"{base}/archive/{rejected['request_id']}",
            hook_path,
            f"{hook_path}/analytics",
            f"{base}/analytics",
            f"{base}/contacts/{processed['contact_id']}",
        ):
            assert (await stranger.get(path)).status == 404
        foreign = await stranger.get(
            f"/v1/workspaces/{other['id']}/archive/{rejected['request_id']}"
        )
        assert foreign.status == 404
        foreign = await stranger.get(
            f"/v1/workspaces/{other['id']}/webhooks/{hook['id']}/analytics"
        )
        assert foreign.status == 404
