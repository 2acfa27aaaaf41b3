"""Objects of the first layout (one per request, with a pointer) stay readable by
``archive show`` and ``replay`` beside segments, and ``archive compact`` rewrites them into
segments with index rows (real S3, Postgres, CLI)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.archiver import segments
from services.archiver.repository import S3Archive
from shared.db import connect
from shared.events import Outcome
from shared.kafka import ensure_topics
from shared.s3 import s3_client
from shared.settings import CommonSettings
from tests.support.archiver import (
    FIXED_MAPPING,
    agreement,
    archiver_settings,
    bucket_objects,
    create_webhook,
    index_rows,
    running_archiver,
    wait_archived,
    write_legacy,
)
from tests.support.cli import acli
from tests.support.events import failed, publish_events, rejected

pytestmark = pytest.mark.integration

PAYLOAD = {"phone_number": "(415) 555-0100", "mail": "Lead@Example.COM", "fname": "Lead"}


async def test_the_first_layout_is_readable_and_compacts_into_segments(
    settings: CommonSettings, settings_env: dict[str, str]
) -> None:
    await ensure_topics(settings)
    conn = await connect(settings.database_url)
    try:
        ws, wh = await create_webhook(conn, mapping=FIXED_MAPPING)
    finally:
        await conn.close()
    now = datetime.now(UTC)
    old: list[Outcome] = [
        rejected(ws, wh, received_at=now - timedelta(hours=5, minutes=i), payload=PAYLOAD)
        for i in range(4)
    ]
    old += [failed(ws, wh, received_at=now - timedelta(days=1, hours=i)) for i in range(3)]
    async with s3_client(settings) as s3:
        archive = S3Archive(s3, settings.s3_bucket)
        for e in old:
            await write_legacy(archive, e)
    new = [rejected(ws, wh, received_at=now - timedelta(minutes=10), payload=PAYLOAD)]
    await publish_events(settings, new)
    async with running_archiver(archiver_settings(settings)):
        await wait_archived(settings, 1)

    # Readable: show falls back to the pointer; replay finds both layouts.
    shown = await acli(settings_env, "archive", "show", str(old[0].request_id), "--json")
    assert shown.code == 0, shown.stderr
    assert shown.json()["request_id"] == str(old[0].request_id)
    replay = ("replay", "--webhook", str(wh), "--since", "2d", "--status", "rejected")
    dry = await acli(settings_env, *replay, "--dry-run", "--json")
    assert dry.code == 0, dry.stderr
    assert dry.json()["summary"]["found"] == 5
    listing = ("archive", "list", "--webhook", str(wh), "--since", "2d", "--json")
    assert (await acli(settings_env, *listing)).json()["count"] == 1  # the index only

    counted = await acli(settings_env, "archive", "compact", "--dry-run", "--json")
    assert counted.code == 0, counted.stderr
    assert (counted.json()["rewritten"], counted.json()["deleted_objects"]) == (7, 0)
    assert len(await bucket_objects(settings)) == 2 * 7 + 1
    done = await acli(settings_env, "archive", "compact", "--json")
    assert done.code == 0, done.stderr
    assert done.json()["rewritten"] == 7 and done.json()["deleted_objects"] == 14
    keys = set(await bucket_objects(settings))
    assert all(segments.parse_segment_key(k) for k in keys)
    hours = {segments.hour_of(e.received_at) for e in old}
    assert len([k for k in keys if "compacted-" in k]) == len(hours)  # one per hour
    assert len(await index_rows(settings)) == 8
    (await agreement(settings)).assert_ok()
    assert (await acli(settings_env, *listing)).json()["count"] == 8
    again = await acli(settings_env, "archive", "show", str(old[-1].request_id), "--json")
    assert again.code == 0 and again.json()["status"] == "failed"
    dry = await acli(settings_env, *replay, "--dry-run", "--json")
    assert dry.json()["summary"]["found"] == 5
    assert (await acli(settings_env, "archive", "compact", "--json")).json()["records"] == 0


async def test_show_of_a_request_id_that_is_nowhere(
    settings: CommonSettings, settings_env: dict[str, str]
) -> None:
    missing = await acli(settings_env, "archive", "show", str(uuid.uuid4()), "--json")
    assert missing.code != 0 and "not in the archive" in missing.error()["error"]
