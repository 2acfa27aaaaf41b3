"""``leadwire db`` and ``leadwire workspace`` against a real Postgres."""

from __future__ import annotations

import asyncio

import pytest

from shared.db import connect
from shared.settings import CommonSettings
from tests.support.cli import cli, cli_inprocess

pytestmark = pytest.mark.integration


async def test_db_migrate_is_idempotent(settings_env: dict[str, str]) -> None:
    result = await cli_inprocess(settings_env, "db", "migrate")
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["applied"] == []  # the test database is already migrated
    assert doc["current"].startswith("0")
    text = await cli_inprocess(settings_env, "db", "migrate", json=False)
    assert text.code == 0
    assert "up to date" in text.stdout


async def test_db_migrate_a_fresh_database(
    infra_env: dict[str, str], settings_env: dict[str, str], unique: str
) -> None:
    """Logs go to stderr: stdout stays one JSON document even when migrations run."""
    admin = infra_env["LEADWIRE_DATABASE_URL"]
    name = f"fresh_{unique}"
    conn = await connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
        env = {**settings_env, "LEADWIRE_DATABASE_URL": admin.rsplit("/", 1)[0] + "/" + name}
        result = await asyncio.to_thread(cli, env, "db", "migrate")
        assert result.code == 0, result.stderr
        doc = result.json()
        assert doc["applied"][0] == "001_initial"
        assert doc["current"] == doc["applied"][-1]
        again = await asyncio.to_thread(cli, env, "db", "migrate")
        assert again.json()["applied"] == []
    finally:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await conn.close()


async def test_workspace_lifecycle(settings_env: dict[str, str], unique: str) -> None:
    name = f"acme-{unique}"
    created = await cli_inprocess(
        settings_env, "workspace", "create", name, "--default-region", "gb"
    )
    assert created.code == 0, created.stderr
    ws = created.json()
    assert ws["name"] == name
    assert ws["default_region"] == "GB"
    assert ws["status"] == "active"

    text = await cli_inprocess(settings_env, "workspace", "create", f"other-{unique}", json=False)
    assert text.code == 0
    assert text.stdout.startswith(f"created workspace other-{unique}")

    listed = (await cli_inprocess(settings_env, "workspace", "list")).json()
    assert [w["name"] for w in listed] == sorted([name, f"other-{unique}"])
    assert listed[0]["webhooks"] == 0
    table = (await cli_inprocess(settings_env, "workspace", "list", json=False)).stdout
    assert "NAME" in table and name in table and ws["id"] in table

    by_id = (await cli_inprocess(settings_env, "workspace", "show", ws["id"])).json()
    by_name = (await cli_inprocess(settings_env, "workspace", "show", name)).json()
    assert by_id == by_name
    assert by_id["rules"] == 0

    disabled = (await cli_inprocess(settings_env, "workspace", "disable", name)).json()
    assert disabled["status"] == "disabled"
    enabled = await cli_inprocess(settings_env, "workspace", "enable", ws["id"], json=False)
    assert enabled.stdout.strip() == f"workspace {name} is active"


async def test_workspace_errors(settings_env: dict[str, str], unique: str) -> None:
    name = f"dup-{unique}"
    assert (await cli_inprocess(settings_env, "workspace", "create", name)).code == 0

    dup = await cli_inprocess(settings_env, "workspace", "create", name)
    assert dup.code == 1
    assert dup.stdout == ""
    assert dup.error()["error"] == f"a workspace named {name!r} already exists"

    missing = await cli_inprocess(settings_env, "workspace", "show", "nope")
    assert missing.code == 1
    assert missing.error() == {
        "error": "no workspace named 'nope'",
        "hint": "see `leadwire workspace list`, or create it with `leadwire workspace create`",
    }
    text = await cli_inprocess(settings_env, "workspace", "disable", "nope", json=False)
    assert text.code == 1
    assert "error: no workspace named 'nope'" in text.stderr
    assert "leadwire workspace list" in text.stderr

    region = await cli_inprocess(
        settings_env, "workspace", "create", f"r-{unique}", "--default-region", "XX"
    )
    assert region.code == 2
    assert "unknown region 'XX'" in region.error()["error"]
    empty = await cli_inprocess(settings_env, "workspace", "create", "  ")
    assert empty.code == 2


def test_subprocess_entry_point_and_exit_codes(settings_env: dict[str, str], unique: str) -> None:
    """The real command as a process: one JSON document on stdout, errors on stderr."""
    ok = cli(settings_env, "workspace", "create", f"proc-{unique}")
    assert ok.code == 0, ok.stderr
    assert ok.json()["name"] == f"proc-{unique}"
    assert ok.stderr == ""
    bad = cli(settings_env, "workspace", "show", f"missing-{unique}")
    assert bad.code == 1
    assert bad.stdout == ""
    assert bad.error()["error"] == f"no workspace named 'missing-{unique}'"
    usage = cli(settings_env, "workspace", "create", json=False)  # NAME missing
    assert usage.code == 2
    assert "Missing argument" in usage.stderr


async def test_changes_fire_the_config_signal(
    settings: CommonSettings, settings_env: dict[str, str], unique: str
) -> None:
    """Gateways LISTEN on leadwire_config: a CLI change is announced at once."""
    conn = await connect(settings.database_url)
    received: asyncio.Queue[str] = asyncio.Queue()
    try:
        await conn.add_listener("leadwire_config", lambda *args: received.put_nowait(args[3]))
        ws = (await cli_inprocess(settings_env, "workspace", "create", f"sig-{unique}")).json()
        assert await asyncio.wait_for(received.get(), 10) == f"workspaces:{ws['id']}"
        hook = (
            await cli_inprocess(settings_env, "webhook", "create", "-W", ws["id"], "--name", "h")
        ).json()
        assert await asyncio.wait_for(received.get(), 10) == f"webhooks:{hook['id']}"
        await cli_inprocess(settings_env, "webhook", "disable", hook["id"])
        assert await asyncio.wait_for(received.get(), 10) == f"webhooks:{hook['id']}"
    finally:
        await conn.close()
