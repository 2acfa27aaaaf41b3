"""A crash (exit 137, as kill -9) of an archiver process between storing a segment and
committing its offsets: after a restart every record is in the archive and in the index
exactly once, and the two agree."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from shared import topics
from shared.kafka import ensure_topics
from shared.settings import CommonSettings
from tests.support.archiver import (
    agreement,
    archived_records,
    archiver_settings,
    index_count,
    running_archiver,
    segment_objects,
    wait_archived,
)
from tests.support.events import mixed_outcomes, publish_events
from tests.support.faulty_archiver import FAULTS_ENV
from tests.support.processes import ServiceProcess, env_for
from tests.support.topics import group_caught_up, wait_caught_up

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PER_WORKSPACE = 40


@pytest.mark.parametrize("fault", ["crash_after_upload=2", "crash_after_index=2"])
async def test_a_crash_between_upload_and_commit_leaves_each_record_once(
    settings: CommonSettings, tmp_path: Path, fault: str
) -> None:
    await ensure_topics(settings)
    events = []
    for _ in range(3):  # three workspaces: several partitions, several segments each
        events += mixed_outcomes(PER_WORKSPACE, uuid.uuid4(), uuid.uuid4())
    await publish_events(settings, events + events[::7])  # with redeliveries
    cfg = archiver_settings(
        settings, archive_segment_records=7, archive_max_batch=10, log_level="WARNING"
    )
    env = env_for(cfg, **{FAULTS_ENV: fault})  # every archiver setting, as LEADWIRE_*
    proc = ServiceProcess("archiver", env, tmp_path, module="tests.support.faulty_archiver")
    proc.start()
    try:
        assert proc.wait(120) == 137, proc.logs()[-3000:]
    finally:
        proc.stop()
    assert "fault_crash_after" in proc.logs()
    stored_lines = len(await archived_records(settings))
    indexed = await index_count(settings)
    if fault.startswith("crash_after_upload"):
        assert stored_lines > indexed  # a segment stored, its rows not
    else:
        assert stored_lines == indexed
    assert not await group_caught_up(settings, cfg.archiver_group, topics.OUTCOMES)
    keys_at_crash = set(await segment_objects(settings))

    async with running_archiver(cfg):
        await wait_archived(settings, len(events), deadline_s=60)
        await wait_caught_up(settings, cfg.archiver_group, topics.OUTCOMES)

    records = await archived_records(settings)
    assert sorted(r["request_id"] for r in records) == sorted(str(e.request_id) for e in events)
    (await agreement(settings)).assert_ok()
    assert keys_at_crash <= set(await segment_objects(settings))  # rewritten, not doubled
