"""``leadwire mapping set|show|test`` and ``leadwire template list|show``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shared.db import connect
from shared.settings import CommonSettings
from shared.templates import TEMPLATES
from tests.support.cli import arun_cli, cli_inprocess

pytestmark = pytest.mark.integration

MAPPING_YAML = """\
keep_unmapped: true
entries:
  - source: contact.phone
    target: phone
    transform: e164
  - source: contact.email
    target: email
  - source: full_name
    target: name
    transform: split_name
  - source: optin
    target: custom.opted_in
    transform: boolean
"""


async def _stored_mapping(settings: CommonSettings, webhook_id: str) -> Any:
    conn = await connect(settings.database_url)
    try:
        return await conn.fetchval("SELECT mapping FROM webhooks WHERE id = $1::uuid", webhook_id)
    finally:
        await conn.close()


async def _hook(settings_env: dict[str, str], unique: str) -> dict[str, Any]:
    ws = await arun_cli(settings_env, "workspace", "create", f"map-{unique}")
    doc: dict[str, Any] = await arun_cli(
        settings_env, "webhook", "create", "-W", ws["id"], "--name", "site", "--auth", "none"
    )
    return doc


async def test_set_show_and_round_trip(
    settings: CommonSettings, settings_env: dict[str, str], unique: str, tmp_path: Path
) -> None:
    hook = await _hook(settings_env, unique)
    path = tmp_path / "mapping.yaml"
    path.write_text(MAPPING_YAML)
    result = await arun_cli(settings_env, "mapping", "set", hook["id"], str(path))
    assert result["webhook_id"] == hook["id"]
    assert len(result["mapping"]["entries"]) == 4
    stored = await _stored_mapping(settings, hook["id"])
    assert stored[0] == {"source": "contact.phone", "target": "phone", "transform": "e164"}

    shown = await arun_cli(settings_env, "mapping", "show", "site", "-W", f"map-{unique}")
    assert shown["mapping"] == result["mapping"]
    assert shown["template"] == "generic"

    # The text form is a mapping file `mapping set` accepts as is.
    text = await cli_inprocess(settings_env, "mapping", "show", hook["id"], json=False)
    assert text.code == 0 and "source: contact.phone" in text.stdout
    again = tmp_path / "again.yml"
    again.write_text(text.stdout)
    await arun_cli(settings_env, "mapping", "set", hook["id"], str(again))
    assert await _stored_mapping(settings, hook["id"]) == stored

    set_text = await cli_inprocess(
        settings_env, "mapping", "set", hook["id"], str(path), json=False
    )
    assert set_text.stdout.strip() == "mapping of webhook site set: 4 entries"


async def test_mapping_test_command(
    settings_env: dict[str, str], unique: str, tmp_path: Path
) -> None:
    hook = await _hook(settings_env, unique)
    path = tmp_path / "m.yaml"
    path.write_text(MAPPING_YAML)
    await arun_cli(settings_env, "mapping", "set", hook["id"], str(path))

    body = b'{"contact": {"phone": "(626) 663-3444", "email": "Ben@Example.com"}, "full_name": "Ben Mal", "optin": "yes", "zip": "91101"}'
    result = await arun_cli(settings_env, "mapping", "test", hook["id"], "-", stdin=body)
    assert result["valid"] is True
    assert result["lead"]["phone"] == "+16266633444"
    assert result["lead"]["email"] == "ben@example.com"
    assert (result["lead"]["first_name"], result["lead"]["last_name"]) == ("Ben", "Mal")
    assert result["lead"]["custom"] == {"opted_in": True, "zip": "91101"}

    form = tmp_path / "body.txt"
    form.write_text("full_name=Ben&optin=maybe")
    bad = await arun_cli(settings_env, "mapping", "test", hook["id"], str(form))
    assert bad["valid"] is False
    assert {(e["field"], e["code"]) for e in bad["errors"]} == {
        ("phone", "required"),
        ("custom.opted_in", "invalid_boolean"),
    }
    text = await cli_inprocess(settings_env, "mapping", "test", hook["id"], str(form), json=False)
    assert text.stdout.startswith("INVALID lead") and "error phone (required)" in text.stdout


async def test_bad_mapping_files_are_rejected_and_nothing_changes(
    settings: CommonSettings, settings_env: dict[str, str], unique: str, tmp_path: Path
) -> None:
    hook = await _hook(settings_env, unique)
    before = await _stored_mapping(settings, hook["id"])
    cases = {
        "t.yaml": (
            "- source: a\n  target: email\n- source: b\n  target: email\n  transform: sparkle\n",
            "entry 2 (line 3): unknown transform 'sparkle'",
        ),
        "p.json": (
            '[\n  {"source": "a", "target": "email"},\n  {"source": "x..y", "target": "phone"}\n]',
            "entry 2 (line 3): bad source path 'x..y'",
        ),
        "s.yml": ("- source: a\n  target: [email\n", "not valid YAML"),
        "m.txt": ("[]", ".json, .yaml or .yml"),
    }
    for name, (content, fragment) in cases.items():
        path = tmp_path / name
        path.write_text(content)
        result = await cli_inprocess(settings_env, "mapping", "set", hook["id"], str(path))
        assert result.code == 1, result.stderr
        assert fragment in result.error()["error"], result.stderr
        text = await cli_inprocess(
            settings_env, "mapping", "set", hook["id"], str(path), json=False
        )
        assert text.code == 1 and fragment in text.stderr
    assert await _stored_mapping(settings, hook["id"]) == before

    missing = await cli_inprocess(
        settings_env, "mapping", "set", hook["id"], str(tmp_path / "nope.yaml")
    )
    assert missing.code == 2 and "no such file" in missing.error()["error"]
    neither = await cli_inprocess(settings_env, "mapping", "set", hook["id"])
    assert neither.code == 2
    ghost = await cli_inprocess(settings_env, "mapping", "show", "ghost")
    assert ghost.code == 1 and "no webhook named 'ghost'" in ghost.error()["error"]


async def test_set_from_template_and_stdin(
    settings: CommonSettings, settings_env: dict[str, str], unique: str
) -> None:
    hook = await _hook(settings_env, unique)
    result = await arun_cli(settings_env, "mapping", "set", hook["id"], "--template", "leadconduit")
    assert len(result["mapping"]["entries"]) == len(TEMPLATES["leadconduit"].mapping.entries)
    result = await arun_cli(
        settings_env,
        "mapping",
        "set",
        hook["id"],
        "-",
        stdin=b'{"entries": [{"source": "e", "target": "email"}], "keep_unmapped": false}',
    )
    assert result["mapping"] == {
        "entries": [{"source": "e", "target": "email", "transform": "direct"}],
        "keep_unmapped": False,
    }
    assert await _stored_mapping(settings, hook["id"]) == {
        "entries": [{"source": "e", "target": "email", "transform": "direct"}],
        "keep_unmapped": False,
    }


async def test_templates(settings_env: dict[str, str]) -> None:
    listed = await arun_cli(settings_env, "template", "list")
    assert [t["name"] for t in listed] == list(TEMPLATES)
    shown = await arun_cli(settings_env, "template", "show", "facebook")
    assert shown["auth_mode"] == "api-key" and shown["idempotency_field"] == "id"
    assert shown["example_payload"] == TEMPLATES["facebook"].example_payload
    assert shown["notes"]
    text = await cli_inprocess(settings_env, "template", "show", "quinstreet", json=False)
    assert text.stdout.startswith("# quinstreet:") and "not public" in text.stdout
    unknown = await cli_inprocess(settings_env, "template", "show", "hubspot")
    assert unknown.code == 1 and "generic" in unknown.error()["hint"]
