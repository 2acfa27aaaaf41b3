"""Issue 18's processor side through the running gateway and services: a phone match
never replaces a CRM id; the duplicate-lead window (the ``Prefer: wait`` answer and the
status endpoint say ``rejected`` / ``duplicate_lead``); the suppression list (``leadwire
suppress``: add, import, list, remove) rejecting or flagging a lead, and the notifier
sending nothing to a suppressed number or address and no SMS about a flagged lead."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest

from shared.db import connect
from shared.settings import CommonSettings
from tests.support.cli import arun_cli, cli_inprocess
from tests.support.ingest import GENERIC_BODY, create_webhook
from tests.support.pipeline import Pipeline, running_pipeline
from tests.support.polling import eventually

pytestmark = pytest.mark.e2e

DAY = 86_400


async def _post(pipe: Pipeline, hook_id: uuid.UUID, **fields: Any) -> tuple[int, dict[str, Any]]:
    # The template's example lead, without its CRM id unless one is given.
    body = orjson.dumps({**GENERIC_BODY, "external_crm_id": None, **fields})
    headers = {"Content-Type": "application/json", "Prefer": "wait=20"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(pipe.gateway.hook_url(hook_id), data=body, headers=headers) as resp,
    ):
        return resp.status, await resp.json()


async def _status(pipe: Pipeline, hook_id: uuid.UUID, request_id: str) -> dict[str, Any]:
    url = f"{pipe.gateway.url}/webhooks/{hook_id}/requests/{request_id}"
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 200
        doc: dict[str, Any] = await resp.json()
        return doc


async def test_crm_ids_and_the_duplicate_window_through_the_gateway(
    settings: CommonSettings,
) -> None:
    hook = await create_webhook(settings.database_url, duplicate_window_s=30 * DAY)
    other = await create_webhook(settings.database_url, workspace_id=hook.workspace_id)
    db = await connect(settings.database_url)
    try:
        async with running_pipeline(settings, ip_rate_per_minute=0) as pipe:
            # Point 7: contact A {crm X, phone P}; a lead {crm Y, phone P} keeps Y.
            code, a = await _post(pipe, other.id, external_crm_id="X", phone_number="+16266633444")
            assert code == 200 and a["is_new_contact"], a
            code, b = await _post(pipe, other.id, external_crm_id="Y", phone_number="+16266633444")
            assert code == 200 and b["is_new_contact"] and b["contact_id"] != a["contact_id"], b
            crm = await db.fetchval(
                "SELECT crm_id FROM contacts WHERE id = $1", uuid.UUID(a["contact_id"])
            )
            assert crm == "X"
            pair = await db.fetchrow(
                "SELECT contact_id, other_contact_id, key_type FROM possible_duplicates"
            )
            assert (str(pair["contact_id"]), str(pair["other_contact_id"]), pair["key_type"]) == (
                b["contact_id"],
                a["contact_id"],
                "phone",
            )
            code, x = await _post(
                pipe, other.id, external_crm_id="X", phone_number=None, email="x@acme.io"
            )
            assert (
                code == 200 and x["match_type"] == "crm_id" and x["contact_id"] == a["contact_id"]
            )

            # Point 2: the windowed webhook takes a lead once; a repeat by email is rejected.
            code, first = await _post(pipe, hook.id, phone_number="+12025550143", email="w@acme.io")
            assert code == 200 and first["status"] == "processed", first
            code, again = await _post(
                pipe,
                hook.id,
                external_crm_id="other",
                phone_number="+12025550199",
                email="w@acme.io",
            )
            assert code == 422, again
            assert (again["status"], again["error"]["type"]) == ("rejected", "duplicate_lead")
            assert again["errors"][0]["field"] == "email"
            status = await _status(pipe, hook.id, again["request_id"])
            assert status["status"] == "rejected"
            assert (status["result"]["reason"], status["result"]["status_code"]) == (
                "duplicate_lead",
                409,
            )
            # Contact dedupe across webhooks is unchanged: the other webhook's is a lead.
            code, elsewhere = await _post(
                pipe, other.id, phone_number="+12025550143", email="w@acme.io"
            )
            assert code == 200 and elsewhere["match_type"] == "phone"
            assert (
                await db.fetchval("SELECT count(*) FROM leads WHERE webhook_id = $1", hook.id) == 1
            )
            stored = await db.fetchrow(
                "SELECT status, error FROM webhook_requests WHERE request_id = $1",
                uuid.UUID(again["request_id"]),
            )
            assert stored["status"] == "rejected"
            error = stored["error"]
            assert (orjson.loads(error) if isinstance(error, str) else error)[
                "type"
            ] == "duplicate_lead"
    finally:
        await db.close()


async def _sends(db: asyncpg.Connection, request_id: str) -> set[tuple[str, str]]:
    rows = await db.fetch(
        """SELECT s.channel, s.recipient FROM notification_sends s
             JOIN webhook_requests r ON (r.result->>'event_id')::uuid = s.event_id
            WHERE r.request_id = $1""",
        uuid.UUID(request_id),
    )
    return {(r["channel"], r["recipient"]) for r in rows}


async def test_the_suppression_list_from_the_cli_to_the_notifier(
    settings: CommonSettings, settings_env: dict[str, str], tmp_path: Path
) -> None:
    hook = await create_webhook(settings.database_url)
    ws = str(hook.workspace_id)
    db = await connect(settings.database_url)
    rules = {
        "rules": [
            {
                "event": "lead_created",
                "channel": "email",
                "recipients": ["ops@acme.io", "stop@acme.io"],
            },
            {"event": "lead_created", "channel": "sms", "recipients": ["+12025550100"]},
        ]
    }
    await db.execute(
        "INSERT INTO notification_settings (workspace_id, settings) VALUES ($1, $2::text::jsonb)",
        hook.workspace_id,
        orjson.dumps(rules).decode(),
    )
    try:
        added = await arun_cli(
            settings_env, "suppress", "add", "-W", ws, "--phone", "(626) 663-3444"
        )
        assert (added["added"], added["already"]) == (1, 0)
        again = await arun_cli(settings_env, "suppress", "add", "-W", ws, "--phone", "+16266633444")
        assert (again["added"], again["already"]) == (0, 1)
        csv = tmp_path / "dnc.csv"
        csv.write_text("name,email,phone\nA,STOP@Acme.io,\nB,,202-555-0101\nC,not-an-email,\n")
        imported = await arun_cli(settings_env, "suppress", "import", str(csv), "-W", ws)
        assert (imported["read"], imported["added"], imported["invalid"]) == (3, 2, 1)
        assert imported["errors"] == [{"line": 3, "field": "email", "code": "invalid_email"}]
        listed = await arun_cli(settings_env, "suppress", "list", "-W", ws)
        assert listed["total"] == 3 and {i["kind"] for i in listed["items"]} == {"phone", "email"}
        assert "6266633444" not in orjson.dumps(listed).decode()
        check = await arun_cli(
            settings_env, "suppress", "list", "-W", ws, "--email", "stop@acme.io"
        )
        assert check["total"] == 1
        removed = await arun_cli(
            settings_env, "suppress", "remove", "-W", ws, "--phone", "+12025550101"
        )
        assert removed["removed"] == 1
        bad = await cli_inprocess(settings_env, "suppress", "add", "-W", ws, "--phone", "12")
        assert bad.code == 2 and "invalid" in bad.stdout + bad.stderr
        # Hashes only: the table never holds a value as given.
        assert (
            await db.fetchval(
                "SELECT count(*) FROM suppressions WHERE workspace_id = $1", hook.workspace_id
            )
            == 2
        )

        async with running_pipeline(settings, ip_rate_per_minute=0) as pipe:
            code, refused = await _post(
                pipe, hook.id, phone_number="6266633444", email="ann@acme.io"
            )
            assert code == 422 and refused["error"]["type"] == "suppressed", refused
            status = await _status(pipe, hook.id, refused["request_id"])
            assert (status["status"], status["result"]["reason"]) == ("rejected", "suppressed")

            mode = await arun_cli(settings_env, "workspace", "update", ws, "--suppressed", "flag")
            assert mode["suppressed_mode"] == "flag"
            code, flagged = await _post(
                pipe, hook.id, phone_number="6266633444", email="ann@acme.io"
            )
            assert code == 200 and flagged["status"] == "processed", flagged
            code, plain = await _post(pipe, hook.id, phone_number="2025550177", email="bo@acme.io")
            assert code == 200
            result = orjson.loads(
                await db.fetchval(
                    "SELECT result::text FROM webhook_requests WHERE request_id = $1",
                    uuid.UUID(flagged["request_id"]),
                )
            )
            assert result["flags"] == ["suppressed"]

            # The notifier: no SMS about the flagged lead; nothing to the suppressed address.
            want_plain = {("email", "ops@acme.io"), ("sms", "+12025550100")}
            await eventually(
                lambda: _sends(db, plain["request_id"]),
                until=lambda s: s == want_plain,
                deadline_s=30,
                what="the plain lead's notifications",
            )
            assert await _sends(db, flagged["request_id"]) == {("email", "ops@acme.io")}
            assert await _sends(db, refused["request_id"]) == set()
    finally:
        await db.close()
