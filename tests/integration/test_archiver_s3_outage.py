"""N3: S3 down for 10 s under load. The archiver pauses (nothing committed, readyz says
so) and resumes when S3 is back; every request is archived exactly once, in segments that
agree with the index.

S3 here is a private versitygw started for this test only (the shared test stack's S3
is used by every other test and must not be stopped)."""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid

import aiohttp
import pytest

from infra.config import StackConfig
from infra.s3 import S3
from shared import topics
from shared.kafka import Publisher, ensure_topics
from shared.settings import CommonSettings
from tests.support.archiver import (
    agreement,
    archived_records,
    archiver_settings,
    index_count,
    running_archiver,
    wait_archived,
)
from tests.support.events import mixed_outcomes
from tests.support.net import free_port
from tests.support.polling import eventually
from tests.support.processes import ROOT
from tests.support.s3 import create_bucket
from tests.support.topics import group_caught_up, wait_caught_up

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOTAL = 200
CHUNK = 20
OUTAGE_S = 10.0


async def _readyz(port: int) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as http:
        try:
            async with http.get(
                f"http://127.0.0.1:{port}/readyz", timeout=aiohttp.ClientTimeout(total=5)
            ) as r:
                return r.status, await r.json()
        except (aiohttp.ClientError, TimeoutError):
            return 0, {}


async def test_archiver_pauses_while_s3_is_down_and_archives_everything_once(
    settings: CommonSettings, unique: str
) -> None:
    private = S3(
        StackConfig.for_name(f"arch-n3-{unique}", ROOT, s3_port=free_port(below_ephemeral=True))
    )
    await private.start()
    try:
        await ensure_topics(settings)
        cfg = archiver_settings(
            settings,
            s3_endpoint=private.endpoint,
            s3_bucket=f"n3-{unique}",
            archive_max_batch=CHUNK,
            # Segments of 25 records: several flushes before, during and after the outage.
            archive_segment_records=25,
        )
        await create_bucket(cfg)
        ws, wh = uuid.uuid4(), uuid.uuid4()
        events = mixed_outcomes(TOTAL, ws, wh)

        async def load() -> None:
            # Paced so that the outage lands in the middle of the stream; every fifth chunk
            # is published twice (a redelivery).
            async with Publisher(settings, client_id="test-load") as pub:
                for i, start in enumerate(range(0, TOTAL, CHUNK)):
                    chunk = events[start : start + CHUNK]
                    chunk += chunk if i % 5 == 0 else []
                    await pub.publish_many(topics.OUTCOMES, [(str(ws), e) for e in chunk])
                    await asyncio.sleep(0.25)

        async with running_archiver(cfg):
            producing = asyncio.create_task(load())
            await eventually(
                lambda: index_count(cfg),
                until=lambda n: n >= 40,
                deadline_s=30,
                what="40 records",
            )
            await private.stop()
            down_at = time.monotonic()
            _, body = await eventually(
                lambda: _readyz(cfg.archiver_ops_port),
                until=lambda r: r[0] == 503,
                deadline_s=15,
                what="not ready",
            )
            assert "s3" in body["failed"]  # type: ignore[operator]
            # The fault lasts OUTAGE_S while the load keeps coming.
            await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
            assert not await group_caught_up(settings, cfg.archiver_group, topics.OUTCOMES)
            await private.start()
            await producing
            await wait_archived(cfg, TOTAL, deadline_s=60)
            await wait_caught_up(settings, cfg.archiver_group, topics.OUTCOMES)
            await eventually(
                lambda: _readyz(cfg.archiver_ops_port),
                until=lambda r: r[0] == 200,
                deadline_s=30,
                what="ready",
            )

        recs = await archived_records(cfg)
        assert sorted(r["log_id"] for r in recs) == sorted(str(e.request_id) for e in events)
        (await agreement(cfg)).assert_ok()
    finally:
        await private.stop()
        shutil.rmtree(private.config.state_dir, ignore_errors=True)
