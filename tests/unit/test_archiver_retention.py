"""Pruning by key date, against an in-memory S3."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.archiver import records
from services.archiver.handlers import archive_outcomes
from services.archiver.repository import S3Archive
from services.archiver.retention import prune
from tests.support.archiver import FakeS3
from tests.support.events import as_messages, mixed_outcomes

pytestmark = pytest.mark.unit

NOW = datetime(2025, 6, 30, 12, tzinfo=UTC)


async def _archive(s3: FakeS3, ages_days: list[int]) -> list[uuid.UUID]:
    ws, wh = uuid.uuid4(), uuid.uuid4()
    events = []
    for age in ages_days:
        events += mixed_outcomes(3, ws, wh, received_at=NOW - timedelta(days=age))
    await archive_outcomes(as_messages(events), archive=S3Archive(s3, "b"), stored=set())
    return [e.request_id for e in events]


async def test_prune_deletes_expired_days_with_their_pointers() -> None:
    s3 = FakeS3(page_size=2)  # force paging on every listing
    await _archive(s3, [1, 10, 40, 100])
    await _archive(s3, [95])
    s3.objects["by-request/stray.txt"] = s3.objects[next(iter(s3.objects))]
    store = S3Archive(s3, "b")

    dry = await prune(store, older_than_days=30, now=NOW, dry_run=True)
    assert dry.records == 9 and len(dry.days) == 3
    assert sum(1 for k in s3.objects if records.parse_record_key(k)) == 15

    done = await prune(store, older_than_days=30, now=NOW)
    assert done.records == 9
    kept = [records.parse_record_key(k) for k in s3.objects]
    days = sorted({p.day for p in kept if p})
    assert days == [(NOW - timedelta(days=10)).date(), (NOW - timedelta(days=1)).date()]
    pointers = [
        k for k in s3.objects if k.startswith(records.POINTER_PREFIX) and k.endswith(".json")
    ]
    assert len(pointers) == 6
    assert (await prune(store, older_than_days=30, now=NOW)).records == 0
