"""``leadwire webhook create|update`` with what a lead buyer sets: acceptance criteria,
the duplicate-lead window and key, and Facebook's app secret and page token."""

from __future__ import annotations

from typing import Any

import pytest

from shared.db import connect
from shared.settings import CommonSettings
from tests.support.cli import arun_cli, cli_inprocess

pytestmark = pytest.mark.integration


async def _row(settings: CommonSettings, webhook_id: str) -> dict[str, Any]:
    conn = await connect(settings.database_url)
    try:
        record = await conn.fetchrow("SELECT * FROM webhooks WHERE id = $1::uuid", webhook_id)
        assert record is not None
        return dict(record)
    finally:
        await conn.close()


async def test_criteria_window_and_key_are_written_and_shown(
    settings: CommonSettings, settings_env: dict[str, str], unique: str
) -> None:
    ws = (await arun_cli(settings_env, "workspace", "create", f"buy-{unique}"))["name"]
    hook = await arun_cli(settings_env, "webhook", "create", "-W", ws, "--name", "vendor")
    assert hook["acceptance"] == {"require": [], "allow": {}, "require_consent": False}
    assert hook["duplicate_window_s"] is None and hook["duplicate_key"] == ["phone", "email"]

    updated = await arun_cli(
        settings_env,
        "webhook", "update", "vendor", "-W", ws,
        "--require", "product", "--require", "custom.zip,first_name",
        "--allow", "state=CA,NV", "--allow", "product=Bath Remodel",
        "--require-consent",
        "--duplicate-window", "30d", "--duplicate-key", "phone,email,crm_id",
    )  # fmt: skip
    assert updated["acceptance"] == {
        "require": ["product", "custom.zip", "first_name"],
        "allow": {"state": ["CA", "NV"], "product": ["Bath Remodel"]},
        "require_consent": True,
    }
    assert updated["duplicate_window_s"] == 30 * 86400
    assert updated["duplicate_key"] == ["phone", "email", "crm_id"]
    row = await _row(settings, hook["id"])
    assert row["acceptance"] == updated["acceptance"] and row["duplicate_window_s"] == 2592000
    assert row["duplicate_key"] == ["phone", "email", "crm_id"]

    # Each flag replaces its own part; the rest stays.
    again = await arun_cli(
        settings_env, "webhook", "update", "vendor", "-W", ws, "--no-require-consent"
    )
    assert again["acceptance"]["require"] == ["product", "custom.zip", "first_name"]
    assert again["acceptance"]["require_consent"] is False

    text = await cli_inprocess(settings_env, "webhook", "show", "vendor", "-W", ws, json=False)
    assert text.code == 0, text.stderr
    assert "requires:     product, custom.zip, first_name" in text.stdout
    assert "accepts:      state in CA, NV" in text.stdout
    assert "duplicates:   30d window on phone,email,crm_id" in text.stdout

    off = await arun_cli(
        settings_env, "webhook", "update", "vendor", "-W", ws,
        "--clear-criteria", "--duplicate-window", "0",
    )  # fmt: skip
    assert off["acceptance"] == {"require": [], "allow": {}, "require_consent": False}
    assert off["duplicate_window_s"] is None


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("--allow", "state"), "write FIELD=value1,value2"),
        (("--require", "bad name"), "is not a field name"),
        (("--duplicate-window", "forever"), "cannot read the duration"),
        (("--duplicate-window", "400d"), "at most 366 days"),
        (("--duplicate-key", "phone,zip"), "(not zip)"),
        (("--page-token", "has space"), "page access token"),
    ],
)
async def test_bad_values_are_usage_errors(
    settings_env: dict[str, str], unique: str, args: tuple[str, ...], said: str
) -> None:
    ws = (await arun_cli(settings_env, "workspace", "create", f"bad-{unique}"))["name"]
    await arun_cli(settings_env, "webhook", "create", "-W", ws, "--name", "v")
    result = await cli_inprocess(settings_env, "webhook", "update", "v", "-W", ws, *args)
    assert result.code == 2, (result.stdout, result.stderr)
    assert said in result.stderr


async def test_facebook_with_app_secret_and_page_token(
    settings: CommonSettings, settings_env: dict[str, str], unique: str
) -> None:
    ws = (await arun_cli(settings_env, "workspace", "create", f"fb-{unique}"))["name"]
    hook = await arun_cli(
        settings_env,
        "webhook", "create", "-W", ws, "--name", "fb", "--template", "facebook",
        "--app-secret", "0123456789abcdef0123456789abcdef", "--page-token", "EAAGm0PX4ZCps",
    )  # fmt: skip
    assert hook["auth_mode"] == "github" and hook["has_page_token"] is True
    assert hook["verify_token"]
    assert "EAAGm0PX4ZCps" not in str(hook)
    row = await _row(settings, hook["id"])
    assert row["secret"] == "0123456789abcdef0123456789abcdef"
    assert row["facebook_page_token"] == "EAAGm0PX4ZCps"
    shown = await arun_cli(settings_env, "webhook", "show", "fb", "-W", ws)
    assert shown["has_page_token"] is True and "EAAGm0PX4ZCps" not in str(shown)
    await arun_cli(settings_env, "webhook", "update", "fb", "-W", ws, "--page-token", "EAAnew")
    assert (await _row(settings, hook["id"]))["facebook_page_token"] == "EAAnew"
