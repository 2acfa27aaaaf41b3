"""The archiver against real Kafka and the real S3 server: every request once, no secret,
and a replay of the outcome topic from offset 0 changes nothing (D7)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from services.archiver import records
from shared import topics
from shared.kafka import ensure_topics
from shared.settings import CommonSettings
from tests.support.archiver import (
    RECORD_FIELDS,
    archiver_settings,
    bucket_objects,
    record_keys,
    running_archiver,
    wait_records,
)
from tests.support.cli import acli
from tests.support.events import CANARY_HEADERS, CANARY_VALUES, mixed_outcomes, publish_events
from tests.support.net import free_port
from tests.support.processes import ServiceProcess
from tests.support.topics import wait_caught_up

pytestmark = pytest.mark.integration


async def test_every_outcome_is_archived_once_without_secrets_and_d7(
    settings: CommonSettings,
) -> None:
    await ensure_topics(settings)
    ws, wh = uuid.uuid4(), uuid.uuid4()
    yesterday = datetime.now(UTC) - timedelta(days=1)
    events = mixed_outcomes(30, ws, wh, canaries=True)
    events += mixed_outcomes(6, ws, wh, received_at=yesterday, canaries=True)
    # Redelivered and re-published outcomes: the same requests again.
    await publish_events(settings, events + events[:10])
    cfg = archiver_settings(settings)

    async with running_archiver(cfg):
        await wait_records(settings, 36)
        await wait_caught_up(settings, cfg.archiver_group, topics.OUTCOMES)

    objects = await bucket_objects(settings)
    recs = {k: orjson.loads(v) for k, v in objects.items() if records.parse_record_key(k)}
    assert len(recs) == 36
    assert len(objects) == 72  # one pointer per record
    by_id = {r["log_id"]: r for r in recs.values()}
    assert set(by_id) == {str(e.request_id) for e in events}
    for e in events:
        r = by_id[str(e.request_id)]
        assert RECORD_FIELDS <= set(r)
        assert r["status"] == e.status
        assert records.record_key(e.workspace_id, e.webhook_id, e.received_at, e.request_id) in recs
        assert r["request"]["payload"] == e.request.payload
        assert r["result"]["success"] is (e.status == "processed")
    # Canary: no secret header name or value anywhere in the bucket.
    blob = b"\n".join(objects.values()).decode().lower()
    assert not [v for v in CANARY_VALUES if v.lower() in blob]
    assert not [h for h in CANARY_HEADERS if f'"{h.lower()}"' in blob]

    # D7: a new consumer group reads the outcome topic from offset 0: nothing new in S3.
    replay_cfg = archiver_settings(
        settings, archiver_group=f"{settings.topic_prefix}archiver-replay"
    )
    async with running_archiver(replay_cfg):
        await wait_caught_up(settings, replay_cfg.archiver_group, topics.OUTCOMES)
    after = await bucket_objects(settings)
    assert set(after) == set(objects)


async def test_show_and_list_commands(
    settings: CommonSettings, settings_env: dict[str, str]
) -> None:
    await ensure_topics(settings)
    ws, wh = uuid.uuid4(), uuid.uuid4()
    events = mixed_outcomes(6, ws, wh)
    await publish_events(settings, events)
    async with running_archiver(archiver_settings(settings)):
        await wait_records(settings, 6)

    failed = [e for e in events if e.status == "failed"]
    rc, out, err = await acli(
        settings_env, "archive", "show", str(failed[0].request_id), "--json", json=False
    )
    assert rc == 0, err
    shown = orjson.loads(out)
    assert shown["log_id"] == str(failed[0].request_id) and shown["error"] == {
        "type": failed[0].error.type,
        "message": failed[0].error.message,
    }

    listing = ("archive", "list", "--webhook", str(wh), "--workspace", str(ws), "--since", "1h")
    rc, out, err = await acli(settings_env, *listing, "--status", "failed", "--json", json=False)
    assert rc == 0, err
    listed = orjson.loads(out)
    assert listed["count"] == 2
    assert {r["request_id"] for r in listed["requests"]} == {str(e.request_id) for e in failed}
    assert {r["status"] for r in listed["requests"]} == {"failed"}

    rc, text, err = await acli(settings_env, *listing, json=False)
    assert rc == 0, err
    assert "6 request(s)" in text and str(failed[0].request_id) in text

    rc, out, err = await acli(
        settings_env, "archive", "show", str(uuid.uuid4()), "--json", json=False
    )
    assert rc != 0 and "not in the archive" in orjson.loads(err)["error"]


async def test_prune_deletes_by_key_date(
    settings: CommonSettings, settings_env: dict[str, str]
) -> None:
    await ensure_topics(settings)
    ws, wh = uuid.uuid4(), uuid.uuid4()
    old = mixed_outcomes(3, ws, wh, received_at=datetime.now(UTC) - timedelta(days=40))
    new = mixed_outcomes(3, ws, wh)
    await publish_events(settings, old + new)
    async with running_archiver(archiver_settings(settings)):
        await wait_records(settings, 6)

    rc, out, err = await acli(
        settings_env, "archive", "prune", "--older-than", "30", "--dry-run", "--json", json=False
    )
    assert rc == 0, err
    assert orjson.loads(out)["records"] == 3
    assert len(await record_keys(settings)) == 6
    rc, out, err = await acli(
        settings_env, "archive", "prune", "--older-than", "30", "--json", json=False
    )
    assert rc == 0, err
    kept = await bucket_objects(settings)
    assert {orjson.loads(v)["request_id"] for v in kept.values()} == {
        str(e.request_id) for e in new
    }


async def test_service_process_ready_and_sigterm(
    settings: CommonSettings, settings_env: dict[str, str], tmp_path: Path
) -> None:
    await ensure_topics(settings)
    port = free_port()
    env = {
        **settings_env,
        "LEADWIRE_ARCHIVER_PORT": str(port),
        "LEADWIRE_ARCHIVER_GROUP": f"{settings.topic_prefix}archiver",
    }
    proc = ServiceProcess("archiver", env, tmp_path).start()
    try:
        await proc.wait_ready(f"http://127.0.0.1:{port}/readyz", deadline_s=60)
        ws, wh = uuid.uuid4(), uuid.uuid4()
        await publish_events(settings, mixed_outcomes(9, ws, wh))
        await wait_records(settings, 9)
        await wait_caught_up(settings, env["LEADWIRE_ARCHIVER_GROUP"], topics.OUTCOMES)
    finally:
        proc.stop()
    assert proc.wait(5) == 0, proc.logs()[-2000:]
    assert "archiver_stopped" in proc.logs()
