"""The archiver against real Kafka, Postgres and the real S3 server: every request once in
segments with its index row, no secret, a replay of the outcome topic from offset 0
changes nothing (D7); show, list, search and prune on segments; the service process."""

from __future__ import annotations

import gzip
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from services.archiver import segments
from shared import topics
from shared.kafka import ensure_topics
from shared.settings import CommonSettings
from tests.support.archiver import (
    RECORD_FIELDS,
    agreement,
    archived_records,
    archiver_settings,
    bucket_objects,
    index_rows,
    running_archiver,
    segment_objects,
    wait_archived,
)
from tests.support.cli import acli
from tests.support.events import (
    CANARY_HEADERS,
    CANARY_VALUES,
    failed,
    mixed_outcomes,
    processed,
    publish_events,
)
from tests.support.net import free_port
from tests.support.polling import eventually
from tests.support.processes import ServiceProcess
from tests.support.topics import group_caught_up, wait_caught_up

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
        await wait_archived(settings, 36)
        await wait_caught_up(settings, cfg.archiver_group, topics.OUTCOMES)

    objects = await bucket_objects(settings)
    assert all(segments.parse_segment_key(k) for k in objects)  # segments, nothing else
    assert len(objects) == 2  # one workspace, two hours, one partition
    for data in objects.values():
        gzip.decompress(data)  # plain gzip
    recs = await archived_records(settings)
    assert len(recs) == 36
    by_id = {r["log_id"]: r for r in recs}
    assert set(by_id) == {str(e.request_id) for e in events}
    for e in events:
        r = by_id[str(e.request_id)]
        assert RECORD_FIELDS <= set(r)
        assert r["status"] == e.status
        assert r["request"]["payload"] == e.request.payload
        assert r["result"]["success"] is (e.status == "processed")
    rows = {r["request_id"]: r for r in await index_rows(settings)}
    for e in events:
        row = rows[e.request_id]
        assert (row["workspace_id"], row["webhook_id"], row["status"]) == (ws, wh, e.status)
        assert row["received_at"] == e.received_at
    (await agreement(settings)).assert_ok()
    # Canary: no secret header name or value anywhere in the bucket.
    blob = b"\n".join(gzip.decompress(v) for v in objects.values()).decode().lower()
    assert not [v for v in CANARY_VALUES if v.lower() in blob]
    assert not [h for h in CANARY_HEADERS if f'"{h.lower()}"' in blob]

    # D7: a new consumer group reads the outcome topic from offset 0: nothing changes.
    replay_cfg = archiver_settings(
        settings, archiver_group=f"{settings.topic_prefix}archiver-replay"
    )
    async with running_archiver(replay_cfg):
        await wait_caught_up(settings, replay_cfg.archiver_group, topics.OUTCOMES)
    assert await bucket_objects(settings) == objects
    assert len(await index_rows(settings)) == 36


async def test_show_list_search_on_segments(
    settings: CommonSettings, settings_env: dict[str, str]
) -> None:
    await ensure_topics(settings)
    ws, wh = uuid.uuid4(), uuid.uuid4()
    now = datetime.now(UTC)
    events = [
        *mixed_outcomes(6, ws, wh, received_at=now - timedelta(minutes=10)),
        failed(ws, wh, error_type="poison", received_at=now - timedelta(minutes=5)),
        processed(ws, wh, match_type="email", received_at=now - timedelta(minutes=4)),
        processed(ws, uuid.uuid4(), received_at=now - timedelta(minutes=3)),  # another webhook
    ]
    await publish_events(settings, events)
    async with running_archiver(archiver_settings(settings)):
        await wait_archived(settings, len(events))

    failed_ = [e for e in events[:6] if e.status == "failed"]
    show = await acli(settings_env, "archive", "show", str(failed_[0].request_id), "--json")
    assert show.code == 0, show.stderr
    shown = show.json()
    assert shown["log_id"] == str(failed_[0].request_id)
    assert shown["error"] == {"type": failed_[0].error.type, "message": failed_[0].error.message}
    text = await acli(settings_env, "archive", "show", str(events[7].request_id), json=False)
    assert text.code == 0 and "match email" in text.stdout

    listing = ("archive", "list", "--webhook", str(wh), "--workspace", str(ws), "--since", "1h")
    page = (await acli(settings_env, *listing, "--status", "failed", "--json")).json()
    assert page["count"] == 3 and page["next_cursor"] is None
    assert {r["request_id"] for r in page["requests"]} == {
        str(e.request_id) for e in events if e.status == "failed" and e.webhook_id == wh
    }
    # Paging: 8 of the webhook's requests, 3 at a time, oldest first, each once.
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(3):
        more = ("--cursor", cursor) if cursor else ()
        page = (await acli(settings_env, *listing, "--limit", "3", *more, "--json")).json()
        seen += [r["request_id"] for r in page["requests"]]
        cursor = page["next_cursor"]
    assert cursor is None and len(seen) == 8 == len(set(seen))
    text = await acli(settings_env, *listing, "--limit", "5", json=False)
    assert text.code == 0 and "5 request(s); more with --cursor" in text.stdout

    search = ("archive", "search", "--workspace", str(ws), "--since", "1h", "--json")
    found = (await acli(settings_env, *search)).json()
    assert found["count"] == len(events)
    poison = (await acli(settings_env, *search, "--error-type", "poison")).json()
    assert [r["request_id"] for r in poison["requests"]] == [str(events[6].request_id)]
    by_email = (await acli(settings_env, *search, "--match-type", "email")).json()
    assert [r["request_id"] for r in by_email["requests"]] == [str(events[7].request_id)]
    window = ("--since", (now - timedelta(minutes=6)).isoformat(), "--until", now.isoformat())
    recent = (
        await acli(settings_env, *search[:-3], *window, "--webhook", str(wh), "--json")
    ).json()
    assert recent["count"] == 2

    missing = await acli(settings_env, "archive", "show", str(uuid.uuid4()), "--json")
    assert missing.code != 0 and "not in the archive" in missing.error()["error"]
    bad = await acli(settings_env, *listing, "--cursor", "nonsense", "--json")
    assert bad.code != 0 and "cursor" in bad.error()["error"]


async def test_show_reads_one_member_of_a_large_segment_fast(
    settings: CommonSettings,
) -> None:
    """`archive show` of a recent request: index row, one ranged GET, one gzip member."""
    from services.archiver import admin

    await ensure_topics(settings)
    ws, wh = uuid.uuid4(), uuid.uuid4()
    events = mixed_outcomes(3000, ws, wh)
    await publish_events(settings, events)
    async with running_archiver(archiver_settings(settings, archive_max_batch=1000)):
        await wait_archived(settings, len(events), deadline_s=60)
    sizes = [len(v) for v in (await segment_objects(settings)).values()]
    timings = []
    for e in events[-20:]:
        started = time.perf_counter()
        record = await admin.show_record(settings, e.request_id)
        timings.append(time.perf_counter() - started)
        assert record["request_id"] == str(e.request_id)
    timings.sort()
    print(
        f"\narchive show: segments {sizes} bytes; median {timings[10] * 1000:.1f} ms, "
        f"max {timings[-1] * 1000:.1f} ms (connect + look-up + ranged GET + gunzip)"
    )
    assert timings[10] < 0.1


async def test_prune_deletes_whole_segments_and_their_index_rows(
    settings: CommonSettings, settings_env: dict[str, str]
) -> None:
    await ensure_topics(settings)
    ws, wh = uuid.uuid4(), uuid.uuid4()
    old = mixed_outcomes(3, ws, wh, received_at=datetime.now(UTC) - timedelta(days=40))
    new = mixed_outcomes(3, ws, wh)
    await publish_events(settings, old + new)
    async with running_archiver(archiver_settings(settings)):
        await wait_archived(settings, 6)

    dry = await acli(settings_env, "archive", "prune", "--older-than", "30", "--dry-run", "--json")
    assert dry.code == 0, dry.stderr
    assert (dry.json()["segments"], dry.json()["records"]) == (1, 3)
    assert len(await segment_objects(settings)) == 2 and len(await index_rows(settings)) == 6
    done = await acli(settings_env, "archive", "prune", "--older-than", "30", "--json")
    assert done.code == 0, done.stderr
    assert {r["request_id"] for r in await archived_records(settings)} == {
        str(e.request_id) for e in new
    }
    assert {r["request_id"] for r in await index_rows(settings)} == {e.request_id for e in new}
    (await agreement(settings)).assert_ok()


async def test_service_process_ready_and_sigterm_stores_what_it_holds(
    settings: CommonSettings, settings_env: dict[str, str], tmp_path: Path
) -> None:
    await ensure_topics(settings)
    port = free_port()
    env = {
        **settings_env,
        "LEADWIRE_ARCHIVER_OPS_PORT": str(port),
        "LEADWIRE_ARCHIVER_GROUP": f"{settings.topic_prefix}archiver",
        # Nothing is stored by a bound before the stop: SIGTERM must store it.
        "LEADWIRE_ARCHIVE_SEGMENT_AGE_S": "600",
        "LEADWIRE_ARCHIVE_SEGMENT_IDLE_S": "600",
    }
    proc = ServiceProcess("archiver", env, tmp_path).start()
    try:
        await proc.wait_ready(f"http://127.0.0.1:{port}/readyz", deadline_s=60)
        ws, wh = uuid.uuid4(), uuid.uuid4()
        await publish_events(settings, mixed_outcomes(9, ws, wh))
        await eventually(
            lambda: _held(port), until=lambda n: n == 9, deadline_s=30, what="9 records held"
        )
        assert not await group_caught_up(settings, env["LEADWIRE_ARCHIVER_GROUP"], topics.OUTCOMES)
        assert await index_rows(settings) == []
    finally:
        proc.stop()
    assert proc.wait(5) == 0, proc.logs()[-2000:]
    assert "archiver_stopped" in proc.logs()
    assert len(await index_rows(settings)) == 9
    await wait_caught_up(settings, env["LEADWIRE_ARCHIVER_GROUP"], topics.OUTCOMES)
    (await agreement(settings)).assert_ok()


async def _held(port: int) -> float:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
            text = await resp.text()
    for line in text.splitlines():
        if line.startswith("leadwire_archive_held_records "):
            return float(line.split()[1])
    return -1.0
