"""``leadwire board ...`` and ``leadwire rule ...`` against a real Postgres."""

from __future__ import annotations

from typing import Any

import pytest

from shared.db import connect
from shared.settings import CommonSettings
from tests.support.cli import (
    add_rule,
    arun_cli,
    cli_inprocess,
    make_board,
    make_webhook,
    make_workspace,
)

pytestmark = pytest.mark.integration


async def _rules(settings: CommonSettings) -> list[dict[str, Any]]:
    conn = await connect(settings.database_url)
    try:
        rows = await conn.fetch(
            "SELECT conditions, priority, webhook_id::text AS webhook_id FROM board_rules ORDER BY priority, created_at"
        )
        return [dict(r) for r in rows]
    finally:
        await conn.close()


async def test_boards(settings_env: dict[str, str], unique: str) -> None:
    ws = await arun_cli(settings_env, "workspace", "create", f"boards-{unique}")
    board = await arun_cli(settings_env, "board", "create", "Solar", "-W", ws["name"])
    assert (board["name"], board["workspace"], board["workspace_id"]) == (
        "Solar",
        ws["name"],
        ws["id"],
    )
    text = await cli_inprocess(
        settings_env, "board", "create", "Roofing", "--workspace", ws["id"], json=False
    )
    assert text.stdout.startswith("created board Roofing (")
    listed = await arun_cli(settings_env, "board", "list", "-W", ws["name"])
    assert [b["name"] for b in listed] == ["Roofing", "Solar"]
    assert listed[0]["rules"] == 0
    table = await cli_inprocess(settings_env, "board", "list", json=False)
    assert "Roofing" in table.stdout and "WORKSPACE" in table.stdout

    dup = await cli_inprocess(settings_env, "board", "create", "Solar", "-W", ws["name"])
    assert dup.code == 1 and "already has a board named 'Solar'" in dup.error()["error"]
    ghost = await cli_inprocess(settings_env, "board", "create", "X", "-W", "ghost")
    assert ghost.code == 1 and ghost.error()["error"] == "no workspace named 'ghost'"
    assert "leadwire workspace list" in ghost.error()["hint"]


async def test_rules(settings: CommonSettings, settings_env: dict[str, str], unique: str) -> None:
    ws = await arun_cli(settings_env, "workspace", "create", f"rules-{unique}")
    for name in ("Solar", "Hot", "Default"):
        await arun_cli(settings_env, "board", "create", name, "-W", ws["name"])
    hook = await arun_cli(
        settings_env,
        "webhook",
        "create",
        "-W",
        ws["name"],
        "--name",
        "fb",
        "--template",
        "facebook",
    )

    hot = await arun_cli(
        settings_env,
        "rule",
        "add",
        "-W",
        ws["name"],
        "--board",
        "Hot",
        "--webhook",
        "fb",
        "--when",
        "lead_status~in:new, hot",
        "--when",
        "custom.lead_source=facebook",
        "--priority",
        "10",
    )
    assert hot["board"] == "Hot" and hot["webhook"] == "fb" and hot["priority"] == 10
    assert hot["conditions"] == [
        {"field": "lead_status", "op": "in", "value": ["new", "hot"]},
        {"field": "lead_source", "op": "eq", "value": "facebook"},
    ]
    solar = await arun_cli(
        settings_env,
        "rule",
        "add",
        "-W",
        ws["id"],
        "--board",
        "Solar",
        "--when",
        "product=Solar Panels",
    )
    text = await cli_inprocess(
        settings_env,
        "rule",
        "add",
        "-W",
        ws["name"],
        "-b",
        "Default",
        "--priority",
        "1000",
        json=False,
    )
    assert text.code == 0 and "(always) -> board Default" in text.stdout

    stored = await _rules(settings)
    assert stored[0] == {"conditions": hot["conditions"], "priority": 10, "webhook_id": hook["id"]}
    assert stored[1]["conditions"] == [{"field": "product", "op": "eq", "value": "Solar Panels"}]
    assert stored[2] == {"conditions": [], "priority": 1000, "webhook_id": None}

    listed = await arun_cli(settings_env, "rule", "list", "-W", ws["name"])
    assert [r["board"] for r in listed] == ["Hot", "Solar", "Default"]
    table = await cli_inprocess(settings_env, "rule", "list", json=False)
    assert "lead_status in [new, hot] and lead_source = facebook" in table.stdout
    assert "(any)" in table.stdout

    removed = await arun_cli(settings_env, "rule", "remove", solar["id"])
    assert removed["id"] == solar["id"]
    assert [r["board"] for r in await arun_cli(settings_env, "rule", "list")] == ["Hot", "Default"]
    again = await cli_inprocess(settings_env, "rule", "remove", solar["id"])
    assert again.code == 1 and "no rule with id" in again.error()["error"]


async def test_bad_rules(settings_env: dict[str, str], unique: str) -> None:
    ws = await arun_cli(settings_env, "workspace", "create", f"bad-{unique}")
    other = await arun_cli(settings_env, "workspace", "create", f"other-{unique}")
    await arun_cli(settings_env, "board", "create", "B", "-W", ws["name"])
    foreign = await arun_cli(
        settings_env, "webhook", "create", "-W", other["name"], "--name", "theirs"
    )
    base = ("rule", "add", "-W", ws["name"], "--board", "B")
    cases = [
        ((*base, "--when", "nonsense"), 2, "cannot read the condition 'nonsense'"),
        ((*base, "--when", "product~like:x"), 2, "unknown operator"),
        ((*base, "--when", "product="), 2, "empty value"),
        ((*base, "--when", "product~in:a,,b"), 2, "empty value"),
        ((*base, "--when", "bad field=x"), 2, "bad field name"),
        ((*base, "--when", "webhook=x"), 2, "--webhook"),
        (("rule", "add", "-W", ws["name"], "--board", "Nope"), 1, "no board named 'Nope'"),
        (("rule", "add", "-W", "ghost", "--board", "B"), 1, "no workspace named 'ghost'"),
        ((*base, "--webhook", foreign["id"]), 1, f"belongs to workspace 'other-{unique}'"),
        ((*base, "--webhook", "missing"), 1, "no webhook named 'missing'"),
        (("rule", "remove", "not-an-id"), 2, "is not a rule id"),
    ]
    for args, code, fragment in cases:
        result = await cli_inprocess(settings_env, *args)
        assert result.code == code, (args, result.stderr)
        assert fragment in result.error()["error"], (args, result.stderr)
    assert await arun_cli(settings_env, "rule", "list", "-W", ws["name"]) == []


def test_support_helpers_for_other_tests(settings_env: dict[str, str], unique: str) -> None:
    """tests/support/cli.py: the shortcuts other areas use to set up config (subprocesses)."""
    ws = make_workspace(settings_env, f"helpers-{unique}", region="GB")
    assert ws["default_region"] == "GB"
    hook = make_webhook(settings_env, ws["name"], "h", template="zapier")
    assert hook["secret"].startswith("lwk_")
    make_board(settings_env, ws["name"], "Board")
    rule = add_rule(
        settings_env, ws["name"], "Board", "product=Solar", webhook=hook["id"], priority=5
    )
    assert rule["conditions"] == [{"field": "product", "op": "eq", "value": "Solar"}]
