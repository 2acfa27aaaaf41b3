"""Replay: archive requests a wrong mapping rejected, fix the mapping, replay them through
the raw topic as new requests linked to the originals; --dry-run changes nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from shared import topics
from shared.db import connect
from shared.events import LeadReceived, decode_raw
from shared.kafka import ensure_topics
from shared.settings import CommonSettings
from tests.support.archiver import (
    FIXED_MAPPING,
    WRONG_MAPPING,
    archived_records,
    archiver_settings,
    create_webhook,
    index_rows,
    running_archiver,
    wait_archived,
)
from tests.support.cli import CliResult, acli
from tests.support.events import processed, publish_events, rejected
from tests.support.topics import read_topic

pytestmark = pytest.mark.integration


async def replay_rejected(settings_env: dict[str, str], wh: uuid.UUID, *flags: str) -> CliResult:
    """``leadwire replay`` of the last hour's rejected requests of webhook ``wh``."""
    args = ("replay", "--webhook", str(wh), "--since", "1h", "--status", "rejected", *flags)
    return await acli(settings_env, *args, json=False)


async def read_raw(settings: CommonSettings, min_count: int = 0) -> list[LeadReceived]:
    return [decode_raw(v) for v in await read_topic(settings, topics.RAW, min_count=min_count)]


def payload(i: int) -> dict[str, str]:
    return {
        "phone_number": f"(415) 555-01{i:02d}",
        "mail": f"Lead{i}@Example.COM",
        "fname": f"Lead{i}",
    }


async def test_replay_after_a_mapping_fix(
    settings: CommonSettings, settings_env: dict[str, str]
) -> None:
    await ensure_topics(settings)
    conn = await connect(settings.database_url)
    try:
        ws, wh = await create_webhook(conn, mapping=WRONG_MAPPING)
        received = datetime.now(UTC) - timedelta(minutes=30)
        # Rejected by the wrong mapping (as the gateway would have), plus one processed
        # request and one that no mapping can save.
        originals = [
            rejected(ws, wh, received_at=received + timedelta(seconds=i), payload=payload(i))
            for i in range(4)
        ]
        hopeless = rejected(
            ws, wh, received_at=received + timedelta(seconds=10), payload={"fname": "Nobody"}
        )
        fine = processed(ws, wh, received_at=received + timedelta(seconds=11), payload=payload(9))
        await publish_events(settings, [*originals, hopeless, fine])
        async with running_archiver(archiver_settings(settings)):
            await wait_archived(settings, 6)
            before = await archived_records(settings)

            await conn.execute(
                "UPDATE webhooks SET mapping = $1::jsonb WHERE id = $2", FIXED_MAPPING, wh
            )

            # Dry run: per request, the archive next to the current mapping; nothing published.
            rc, out, err = await replay_rejected(settings_env, wh, "--dry-run", "--json")
            assert rc == 0, err
            dry = orjson.loads(out)
            assert dry["dry_run"] is True
            assert dry["summary"] == {"found": 5, "replayed": 4, "rejected": 1, "skipped": 0}
            first = next(
                r for r in dry["requests"] if r["request_id"] == str(originals[0].request_id)
            )
            assert first["archived"]["status"] == "rejected"
            assert first["current"]["lead"]["phone"] == "+14155550100"
            assert first["current"]["lead"]["email"] == "lead0@example.com"
            rc, text, err = await replay_rejected(settings_env, wh, "--dry-run")
            assert rc == 0, err
            assert "dry run, nothing published: found 5, replayed 4, rejected 1, skipped 0" in text
            assert "current lead:  " in text and "+14155550100" in text
            assert await read_raw(settings) == []
            assert await archived_records(settings) == before

            # The replay: new requests on the raw topic, linked to the originals.
            rc, out, err = await replay_rejected(settings_env, wh, "--json")
            assert rc == 0, err
            done = orjson.loads(out)
            assert done["summary"] == {"found": 5, "replayed": 4, "rejected": 1, "skipped": 0}
            raw = await read_raw(settings, min_count=4)
            assert len(raw) == 4
            by_original = {e.replay_of: e for e in raw}
            assert set(by_original) == {o.request_id for o in originals}
            for i, o in enumerate(originals):
                event = by_original[o.request_id]
                assert event.request_id != o.request_id
                assert event.webhook_id == wh and event.workspace_id == ws
                assert event.source == "replay"
                assert event.lead.phone == f"+141555501{i:02d}"
                assert event.lead.email == f"lead{i}@example.com"
                assert event.lead.first_name == f"Lead{i}"
                assert event.request.payload == payload(i)
            # The hopeless one is rejected again, as a new request linked to its original,
            # and archived like any rejection.
            await wait_archived(settings, 7)
            new = [r for r in await archived_records(settings) if r not in before]
            assert len(new) == 1 and new[0]["replay_of"] == str(hopeless.request_id)
            assert new[0]["status"] == "rejected"
            (row,) = [r for r in await index_rows(settings) if r["replay_of"]]
            assert row["replay_of"] == hopeless.request_id and row["error_type"] == "rejected"

            # Replaying again with the same mapping creates no new request ids.
            rc, out, err = await replay_rejected(settings_env, wh, "--json")
            assert rc == 0, err
            again = await read_raw(settings, min_count=8)
            assert len(again) == 8
            assert {e.request_id for e in again} == {e.request_id for e in raw}
    finally:
        await conn.close()


async def test_replay_errors_are_clear(
    settings: CommonSettings, settings_env: dict[str, str]
) -> None:
    rc, _, err = await acli(
        settings_env,
        "replay",
        "--webhook",
        str(uuid.uuid4()),
        "--since",
        "1h",
        "--json",
        json=False,
    )
    assert rc != 0 and "no webhook" in orjson.loads(err)["error"]
    conn = await connect(settings.database_url)
    try:
        _, wh = await create_webhook(conn, mapping=FIXED_MAPPING)
        await conn.execute("UPDATE webhooks SET status = 'disabled' WHERE id = $1", wh)
    finally:
        await conn.close()
    rc, _, err = await acli(
        settings_env, "replay", "--webhook", str(wh), "--since", "1h", "--json", json=False
    )
    assert rc != 0 and "webhook is disabled" in orjson.loads(err)["error"]
    rc, _, err = await acli(
        settings_env, "replay", "--webhook", "x", "--since", "soon", "--json", json=False
    )
    assert rc != 0 and "--since" in orjson.loads(err)["error"]
