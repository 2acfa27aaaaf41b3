"""``leadwire webhook ...`` against a real Postgres: creation per auth mode and template,
limits, errors, and secret rotation with a grace period."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from shared.db import connect
from shared.mapping import compile_stored
from shared.secrets import current_secrets, hash_secret, verify_hashed
from shared.settings import CommonSettings
from shared.templates import TEMPLATES
from tests.support.cli import arun_cli, cli_inprocess
from tests.support.polling import eventually

pytestmark = pytest.mark.integration

CREATED_KEYS = {
    "id",
    "workspace_id",
    "workspace",
    "name",
    "url",
    "status",
    "template",
    "auth_mode",
    "secret",
    "basic_username",
    "api_key_header",
    "verify_token",
    "rate_limit_per_minute",
    "max_body_bytes",
    "idempotency_field",
    "mapping_entries",
    "acceptance",
    "duplicate_window_s",
    "duplicate_key",
    "has_page_token",
    "created_at",
}


async def _row(settings: CommonSettings, webhook_id: str) -> dict[str, Any]:
    conn = await connect(settings.database_url)
    try:
        record = await conn.fetchrow(
            "SELECT *, now() AS db_now FROM webhooks WHERE id = $1::uuid", webhook_id
        )
        assert record is not None
        return dict(record)
    finally:
        await conn.close()


async def _workspace(settings_env: dict[str, str], name: str) -> dict[str, Any]:
    doc: dict[str, Any] = await arun_cli(settings_env, "workspace", "create", name)
    return doc


async def test_create_in_each_auth_mode(
    settings: CommonSettings, settings_env: dict[str, str], unique: str
) -> None:
    ws = await _workspace(settings_env, f"modes-{unique}")
    hooks = {
        mode: await arun_cli(
            settings_env, "webhook", "create", "-W", ws["name"], "--name", mode, "--auth", mode
        )
        for mode in ("none", "standard", "github", "basic", "api-key")
    }
    for mode, hook in hooks.items():
        assert set(hook) == CREATED_KEYS
        assert hook["auth_mode"] == mode
        assert hook["url"] == f"{settings.public_url}/webhooks/{hook['id']}"
        assert hook["workspace"] == ws["name"]
        assert hook["template"] == "generic"
        assert hook["status"] == "active"

    assert hooks["none"]["secret"] is None
    assert (await _row(settings, hooks["none"]["id"]))["secret"] is None

    std = hooks["standard"]["secret"]
    assert std.startswith("whsec_") and len(base64.b64decode(std[6:])) == 32
    assert (await _row(settings, hooks["standard"]["id"]))["secret"] == std  # HMAC key: verbatim

    assert (await _row(settings, hooks["github"]["id"]))["secret"] == hooks["github"]["secret"]

    basic = hooks["basic"]
    row = await _row(settings, basic["id"])
    assert (
        basic["basic_username"].startswith("lw_")
        and row["basic_username"] == basic["basic_username"]
    )
    assert row["secret"] == hash_secret(basic["secret"]) and basic["secret"] not in row["secret"]
    assert verify_hashed(basic["secret"], row["secret"])

    key = hooks["api-key"]
    row = await _row(settings, key["id"])
    assert key["secret"].startswith("lwk_") and key["api_key_header"] == "X-API-Key"
    assert verify_hashed(key["secret"], row["secret"]) and key["secret"] not in row["secret"]


async def test_create_text_output_shows_the_secret_once(
    settings_env: dict[str, str], unique: str
) -> None:
    ws = await _workspace(settings_env, f"text-{unique}")
    result = await cli_inprocess(
        settings_env,
        "webhook",
        "create",
        "-W",
        ws["id"],
        "--name",
        "form",
        "--auth",
        "basic",
        json=False,
    )
    assert result.code == 0, result.stderr
    out = result.stdout
    assert out.startswith("created webhook form (")
    assert "/webhooks/" in out and "auth:         basic" in out
    assert "password:" in out and "shown once" in out
    hook = await arun_cli(settings_env, "webhook", "show", "form", "-W", ws["name"])
    assert "secret" not in hook and hook["has_secret"] is True
    shown = await cli_inprocess(settings_env, "webhook", "show", hook["id"], json=False)
    assert (
        "password" not in shown.stdout and f"username:     {hook['basic_username']}" in shown.stdout
    )


@pytest.mark.parametrize("template", sorted(TEMPLATES))
async def test_create_from_each_template(
    settings: CommonSettings, settings_env: dict[str, str], unique: str, template: str
) -> None:
    ws = await _workspace(settings_env, f"tpl-{template}-{unique}")
    hook = await arun_cli(
        settings_env,
        "webhook",
        "create",
        "-W",
        ws["name"],
        "--name",
        template,
        "--template",
        template,
    )
    tpl = TEMPLATES[template]
    assert hook["template"] == template
    assert hook["auth_mode"] == tpl.auth_mode
    assert hook["idempotency_field"] == tpl.idempotency_field
    assert hook["mapping_entries"] == len(tpl.mapping.entries)
    assert (hook["verify_token"] is not None) == (template == "facebook")
    row = await _row(settings, hook["id"])
    assert compile_stored(row["mapping"]).mapping == tpl.mapping
    # The stored mapping accepts the vendor's example payload (what the gateway will run).
    tested = await arun_cli(
        settings_env,
        "mapping",
        "test",
        hook["id"],
        "-",
        stdin=orjson.dumps(tpl.example_payload),
    )
    assert tested["valid"] is True, tested["errors"]


async def test_limits_and_update(
    settings: CommonSettings, settings_env: dict[str, str], unique: str
) -> None:
    ws = await _workspace(settings_env, f"limits-{unique}")
    hook = await arun_cli(
        settings_env,
        "webhook",
        "create",
        "-W",
        ws["name"],
        "--name",
        "limited",
        "--auth",
        "api-key",
        "--rate-limit",
        "120",
        "--max-body",
        "64k",
        "--idempotency-field",
        "lead.id",
        "--api-key-header",
        "X-Vendor-Key",
    )
    assert (hook["rate_limit_per_minute"], hook["max_body_bytes"]) == (120, 65536)
    assert (hook["idempotency_field"], hook["api_key_header"]) == ("lead.id", "X-Vendor-Key")
    row = await _row(settings, hook["id"])
    assert (row["rate_limit_per_minute"], row["max_body_bytes"], row["idempotency_field"]) == (
        120,
        65536,
        "lead.id",
    )

    updated = await arun_cli(
        settings_env,
        "webhook",
        "update",
        hook["id"],
        "--rate-limit",
        "0",
        "--max-body",
        "1mb",
        "--idempotency-field",
        "",
        "--rename",
        "renamed",
    )
    assert updated["name"] == "renamed"
    assert (
        updated["rate_limit_per_minute"],
        updated["max_body_bytes"],
        updated["idempotency_field"],
    ) == (None, 1048576, None)
    nothing = await cli_inprocess(settings_env, "webhook", "update", hook["id"])
    assert nothing.code == 2 and "nothing to change" in nothing.error()["error"]

    listed = await arun_cli(settings_env, "webhook", "list", "-W", ws["name"])
    assert [h["name"] for h in listed] == ["renamed"]
    assert "secret" not in listed[0]
    table = await cli_inprocess(settings_env, "webhook", "list", json=False)
    assert "renamed" in table.stdout and "AUTH_MODE" in table.stdout

    off = await arun_cli(settings_env, "webhook", "disable", "renamed", "-W", ws["id"])
    assert off["status"] == "disabled"
    on = await cli_inprocess(settings_env, "webhook", "enable", hook["id"], json=False)
    assert on.stdout.strip() == f"webhook renamed ({hook['id']}) is active"


async def test_webhook_errors(settings_env: dict[str, str], unique: str, tmp_path: Path) -> None:
    a = await _workspace(settings_env, f"a-{unique}")
    b = await _workspace(settings_env, f"b-{unique}")
    await arun_cli(
        settings_env, "webhook", "create", "-W", a["name"], "--name", "same", "--auth", "none"
    )
    await arun_cli(
        settings_env, "webhook", "create", "-W", b["name"], "--name", "same", "--auth", "none"
    )

    dup = await cli_inprocess(settings_env, "webhook", "create", "-W", a["name"], "--name", "same")
    assert dup.code == 1 and "already has a webhook named 'same'" in dup.error()["error"]

    ambiguous = await cli_inprocess(settings_env, "webhook", "show", "same")
    assert ambiguous.code == 1
    assert "2 webhooks are named 'same'" in ambiguous.error()["error"]
    assert "--workspace" in ambiguous.error()["hint"]
    assert (await arun_cli(settings_env, "webhook", "show", "same", "-W", b["name"]))[
        "workspace"
    ] == b["name"]

    checks = [
        (("webhook", "create", "-W", "ghost", "--name", "x"), 1, "no workspace named 'ghost'"),
        (("webhook", "show", "ghost-hook"), 1, "no webhook named 'ghost-hook'"),
        (
            ("webhook", "create", "-W", a["name"], "--name", "x", "--template", "hubspot"),
            2,
            "no template named 'hubspot'",
        ),
        (
            ("webhook", "create", "-W", a["name"], "--name", "x", "--auth", "oauth"),
            2,
            "unknown auth mode 'oauth'",
        ),
        (
            ("webhook", "create", "-W", a["name"], "--name", "x", "--rate-limit", "0"),
            2,
            "--rate-limit",
        ),
        (
            ("webhook", "create", "-W", a["name"], "--name", "x", "--max-body", "lots"),
            2,
            "cannot read the size",
        ),
        (
            ("webhook", "create", "-W", a["name"], "--name", "x", "--idempotency-field", "a..b"),
            2,
            "bad --idempotency-field",
        ),
        (
            (
                "webhook",
                "create",
                "-W",
                a["name"],
                "--name",
                "x",
                "--auth",
                "github",
                "--secret",
                "short",
            ),
            2,
            "--secret",
        ),
        (("webhook", "rotate-secret", "same", "-W", a["name"]), 1, "auth mode none"),
        (
            ("webhook", "rotate-secret", "same", "-W", a["name"], "--grace", "soon"),
            2,
            "cannot read the duration",
        ),
    ]
    for args, code, fragment in checks:
        result = await cli_inprocess(settings_env, *args)
        assert result.code == code, (args, result.stderr)
        assert fragment in result.error()["error"], (args, result.stderr)
        assert result.stdout == ""

    bad = tmp_path / "bad.yaml"
    bad.write_text("- source: email\n  target: email\n- source: p\n  target: telephone\n")
    result = await cli_inprocess(
        settings_env, "webhook", "create", "-W", a["name"], "--name", "x", "--mapping", str(bad)
    )
    assert result.code == 1
    assert "entry 2 (line 3): unknown target 'telephone'" in result.error()["error"]
    assert (await arun_cli(settings_env, "webhook", "list", "-W", a["name"]))[0][
        "name"
    ] == "same"  # nothing created


async def test_imported_secret(
    settings: CommonSettings, settings_env: dict[str, str], unique: str
) -> None:
    ws = await _workspace(settings_env, f"imp-{unique}")
    app_secret = "0123456789abcdef0123456789abcdef"
    hook = await arun_cli(
        settings_env,
        "webhook",
        "create",
        "-W",
        ws["name"],
        "--name",
        "meta",
        "--template",
        "facebook",
        "--auth",
        "github",
        "--secret",
        app_secret,
    )
    assert hook["secret"] == app_secret
    assert (await _row(settings, hook["id"]))["secret"] == app_secret


async def test_rotation_hashed_mode_grace_then_expiry(
    settings: CommonSettings, settings_env: dict[str, str], unique: str
) -> None:
    ws = await _workspace(settings_env, f"rot-{unique}")
    hook = await arun_cli(
        settings_env, "webhook", "create", "-W", ws["name"], "--name", "k", "--auth", "api-key"
    )
    old = hook["secret"]
    rotated = await arun_cli(settings_env, "webhook", "rotate-secret", hook["id"], "--grace", "2s")
    new = rotated["secret"]
    assert new != old and new.startswith("lwk_")
    assert rotated["grace_seconds"] == 2 and rotated["previous_secret_valid_until"] is not None

    def verifies(row: dict[str, Any], plain: str) -> bool:
        valid = current_secrets(
            row["secret"], row["secret_previous"], row["secret_previous_expires_at"], row["db_now"]
        )
        return any(verify_hashed(plain, stored) for stored in valid)

    row = await _row(settings, hook["id"])
    assert verifies(row, new) and verifies(row, old)  # during the grace period: both

    async def probe() -> dict[str, Any]:
        return await _row(settings, hook["id"])

    row = await eventually(
        probe,
        until=lambda r: not verifies(r, old),
        deadline_s=15,
        interval_s=0.2,
        what="old secret expired",
    )
    assert verifies(row, new)  # after it: only the new one
    shown = await arun_cli(settings_env, "webhook", "show", hook["id"])
    assert shown["previous_secret_valid_until"] is None


async def test_rotation_hmac_and_basic_modes(
    settings: CommonSettings, settings_env: dict[str, str], unique: str
) -> None:
    ws = await _workspace(settings_env, f"rot2-{unique}")
    std = await arun_cli(
        settings_env, "webhook", "create", "-W", ws["name"], "--name", "s", "--auth", "standard"
    )
    text = await cli_inprocess(
        settings_env, "webhook", "rotate-secret", std["id"], json=False
    )  # default 24h
    assert (
        text.code == 0 and "the old one is valid until" in text.stdout and "whsec_" in text.stdout
    )
    row = await _row(settings, std["id"])
    assert row["secret_previous"] == std["secret"] and row["secret"] != std["secret"]
    assert (
        23.9 * 3600
        < (row["secret_previous_expires_at"] - row["db_now"]).total_seconds()
        <= 24 * 3600
    )
    both = current_secrets(
        row["secret"], row["secret_previous"], row["secret_previous_expires_at"], row["db_now"]
    )
    assert both == [row["secret"], std["secret"]]

    now_only = await arun_cli(settings_env, "webhook", "rotate-secret", std["id"], "--grace", "0")
    row = await _row(settings, std["id"])
    assert row["secret"] == now_only["secret"] and row["secret_previous"] is None
    assert current_secrets(
        row["secret"], row["secret_previous"], row["secret_previous_expires_at"], row["db_now"]
    ) == [now_only["secret"]]

    basic = await arun_cli(
        settings_env, "webhook", "create", "-W", ws["name"], "--name", "b", "--auth", "basic"
    )
    rotated = await arun_cli(
        settings_env, "webhook", "rotate-secret", "b", "-W", ws["name"], "--grace", "1h"
    )
    assert rotated["basic_username"] == basic["basic_username"]  # the username stays
    row = await _row(settings, basic["id"])
    assert verify_hashed(rotated["secret"], row["secret"])
    assert verify_hashed(basic["secret"], row["secret_previous"])
    assert time.time() < row["secret_previous_expires_at"].timestamp()
