"""``leadwire notify ...`` against a real database: rules, high priority, tokens, errors."""

from __future__ import annotations

import hashlib
from typing import Any

import asyncpg
import orjson
import pytest

from services.notifier.rules import parse_settings
from shared.settings import CommonSettings
from tests.support.cli import cli_inprocess
from tests.support.notifier import seed_workspace
from tests.support.processes import env_for

pytestmark = pytest.mark.integration


async def _cli(settings: CommonSettings, *args: str) -> tuple[int, Any, str]:
    r = await cli_inprocess(env_for(settings), "notify", *args, json=False)
    return (
        r.code,
        (r.json() if r.code == 0 and "--json" in args else r.stdout or r.stderr),
        r.stderr,
    )


def set_rule(workspace: str, channel: str, *more: str) -> list[str]:
    """``set-rule`` arguments for a rule on lead_created."""
    return ["set-rule", "-W", workspace, "--event", "lead_created", "--channel", channel, *more]


async def _stored(database_url: str) -> asyncpg.Record:
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT settings::text, realtime_token_hash FROM notification_settings"
        )
        assert row is not None
        return row
    finally:
        await conn.close()


async def test_rules_round_trip_through_the_cli(settings: CommonSettings) -> None:
    ws = await seed_workspace(settings.database_url, name="Acme")

    code, doc, _ = await _cli(settings, "show", "--workspace", "Acme", "--json")
    assert code == 0 and doc["defaults"] is True
    assert doc["rules"] == [{"event": "lead_created", "channel": "realtime", "recipients": []}]
    assert doc["realtime_token"] == {"set": False}

    code, doc, _ = await _cli(
        settings, *set_rule("Acme", "email", "--to", "Sales@Acme.test, b@acme.test", "--json")
    )
    assert code == 0, doc
    assert {
        "event": "lead_created",
        "channel": "email",
        "recipients": ["sales@acme.test", "b@acme.test"],
    } in doc["rules"]
    assert doc["defaults"] is False and len(doc["rules"]) == 2  # the default realtime rule is kept

    code, doc, _ = await _cli(
        settings,
        "high-priority",
        "-W",
        str(ws),
        "--when",
        "product=Solar",
        "--when",
        "lead_status=hot,warm",
        "--sms",
        "+1 415 555 2671",
        "--json",
    )
    assert code == 0, doc
    assert doc["high_priority"] == {
        "conditions": [
            {"field": "product", "op": "eq", "value": "Solar"},
            {"field": "lead_status", "op": "in", "value": ["hot", "warm"]},
        ],
        "sms_recipients": ["+14155552671"],
    }
    code, doc, _ = await _cli(
        settings,
        "remove-rule",
        "-W",
        "Acme",
        "--event",
        "lead_created",
        "--channel",
        "realtime",
        "--json",
    )
    assert code == 0 and [r["channel"] for r in doc["rules"]] == ["email"]

    # What the notifier reads is exactly what the CLI wrote.
    stored = await _stored(settings.database_url)
    parsed, defaults = parse_settings(orjson.loads(stored["settings"]))
    assert not defaults and parsed.to_json()["rules"] == doc["rules"]

    code, text, _ = await _cli(settings, "show", "-W", "Acme")
    assert code == 0 and "lead_created" in text and "product=Solar" in text

    code, doc, _ = await _cli(settings, "high-priority", "-W", "Acme", "--clear", "--json")
    assert code == 0 and doc["high_priority"] is None


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (set_rule("nope", "email", "--to", "a@x.test"), 1, "no workspace named 'nope'"),
        (set_rule("Acme", "email"), 2, "needs --to"),
        (set_rule("Acme", "email", "--to", "not-an-email"), 2, "not a valid email"),
        (set_rule("Acme", "sms", "--to", "+1 12"), 2, "not a valid phone"),
        (set_rule("Acme", "realtime", "--to", "a@x.test"), 2, "has no --to"),
        (
            ["remove-rule", "-W", "Acme", "--event", "processing_failed", "--channel", "sms"],
            1,
            "has no",
        ),
        (
            ["high-priority", "-W", "Acme", "--when", "product", "--sms", "+14155552671"],
            2,
            "field=value",
        ),
        (["high-priority", "-W", "Acme", "--when", "product=Solar"], 2, "--when and --sms"),
    ],
)
async def test_errors_say_what_to_fix(
    settings: CommonSettings, args: list[str], code: int, message: str
) -> None:
    await seed_workspace(settings.database_url, name="Acme")
    got, _, err = await _cli(settings, *args, "--json")
    assert got == code
    doc = orjson.loads(err.strip().splitlines()[-1])
    assert message in doc["error"], doc


async def test_token_is_created_once_stored_hashed_and_rotated(settings: CommonSettings) -> None:
    await seed_workspace(settings.database_url, name="Acme")
    code, doc, _ = await _cli(settings, "token", "-W", "Acme", "--json")
    assert code == 0 and doc["rotated"] is False and doc["token"].startswith("lwrt_")
    assert doc["auth"] == {"workspace_id": doc["workspace_id"], "token": doc["token"]}
    first = doc["token"]
    assert (await _stored(settings.database_url))["realtime_token_hash"] == hashlib.sha256(
        first.encode()
    ).hexdigest()

    code, _, err = await _cli(settings, "token", "-W", "Acme", "--json")
    assert code == 1 and "--rotate" in err

    code, doc, _ = await _cli(settings, "token", "-W", "Acme", "--rotate", "--json")
    assert code == 0 and doc["rotated"] is True and doc["token"] != first
    stored = (await _stored(settings.database_url))["realtime_token_hash"]
    assert stored == hashlib.sha256(doc["token"].encode()).hexdigest()
    code, doc, _ = await _cli(settings, "show", "-W", "Acme", "--json")
    assert doc["realtime_token"] == {"set": True} and first not in orjson.dumps(doc).decode()
