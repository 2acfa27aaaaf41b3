"""The archive index: Postgres (``PgIndex``) and the in-memory fake beside it give the
same answers, so unit tests on the fake say something about Postgres."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from services.archiver.index import (
    ArchiveIndex,
    FakeIndex,
    IndexRow,
    PgIndex,
    Query,
    decode_cursor,
    encode_cursor,
)
from services.archiver.records import RecordFacts
from services.archiver.segments import Placement

pytestmark = pytest.mark.integration

NOW = datetime(2025, 6, 30, 12, tzinfo=UTC)
WS, WH, OTHER = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()


@pytest.fixture(params=["postgres", "fake"])
async def index(
    request: pytest.FixtureRequest, db: asyncpg.Connection
) -> AsyncIterator[ArchiveIndex]:
    yield PgIndex(db) if request.param == "postgres" else FakeIndex()


def row(
    minutes_ago: int,
    *,
    segment: str = "archive/s1",
    line: int = 1,
    webhook: uuid.UUID = WH,
    status: str = "processed",
    match_type: str | None = "phone",
    error_type: str | None = None,
) -> IndexRow:
    return IndexRow(
        facts=RecordFacts(
            request_id=uuid.uuid4(),
            workspace_id=WS,
            webhook_id=webhook,
            received_at=NOW - timedelta(minutes=minutes_ago),
            status=status,
            match_type=match_type,
            error_type=error_type,
            replay_of=None,
        ),
        segment_key=segment,
        placement=Placement(
            line=line, member_offset=10 * line, member_length=7, member_first_line=1
        ),
    )


async def test_insert_known_get_and_the_first_row_stays(index: ArchiveIndex) -> None:
    rows = [row(5, line=1), row(4, line=2), row(3, line=3)]
    await index.insert(rows)
    await index.insert([])
    again = IndexRow(rows[0].facts, "archive/elsewhere", Placement(9, 9, 9, 9))
    await index.insert([again])
    assert await index.known([r.request_id for r in rows] + [uuid.uuid4()]) == {
        r.request_id for r in rows
    }
    assert await index.known([]) == set()
    got = await index.get(rows[0].request_id)
    assert got is not None and got.archived_at is not None
    assert (got.facts, got.segment_key, got.placement) == (
        rows[0].facts,
        rows[0].segment_key,
        rows[0].placement,
    )
    assert await index.get(uuid.uuid4()) is None
    assert await index.ping()


async def test_search_filters_and_pages_oldest_first(index: ArchiveIndex) -> None:
    rows = [
        row(50, status="failed", match_type=None, error_type="database_error"),
        row(40),
        row(30, match_type="email"),
        row(20, status="rejected", match_type=None, error_type="rejected"),
        row(10, webhook=OTHER),
        row(60 * 30),  # 30 hours ago
    ]
    await index.insert(rows)
    day = Query(workspace_id=WS, since=NOW - timedelta(days=1), until=NOW)
    assert [r.request_id for r in await index.search(day, limit=10)] == [
        r.request_id for r in rows[:5]
    ]
    hook = Query(webhook_id=WH, since=NOW - timedelta(days=2), until=NOW)
    assert len(await index.search(hook, limit=10)) == 5
    for query, expected in (
        (Query(status="failed"), [0]),
        (Query(error_type="rejected"), [3]),
        (Query(match_type="email"), [2]),
        (Query(webhook_id=WH, match_type="phone", since=NOW - timedelta(hours=1)), [1]),
        (Query(until=NOW - timedelta(minutes=40)), [5, 0]),
    ):
        found = await index.search(query, limit=10)
        assert [r.request_id for r in found] == [rows[i].request_id for i in expected], query
    pages: list[IndexRow] = []
    after = None
    while True:
        page = await index.search(Query(workspace_id=WS), limit=2, after=after)
        pages += page
        if len(page) < 2:
            break
        after = decode_cursor(encode_cursor(page[-1]))
    assert [r.request_id for r in pages] == [rows[i].request_id for i in (5, 0, 1, 2, 3, 4)]


async def test_expired_and_deleted_by_segment(index: ArchiveIndex) -> None:
    old = [row(60 * 50, segment="archive/old-a"), row(60 * 49, segment="archive/old-b")]
    new = [row(5, segment="archive/new", line=n) for n in (1, 2)]
    await index.insert(old + new)
    cutoff = NOW - timedelta(days=1)
    expired = await index.expired(cutoff)
    assert (expired.segments, expired.records) == (["archive/old-a", "archive/old-b"], 2)
    assert await index.segments_between(cutoff, NOW) == ["archive/new"]
    assert await index.segments_between(NOW - timedelta(days=3), NOW, OTHER) == []
    assert await index.delete_segments(expired.segments) == 2
    assert await index.delete_segments([]) == 0
    assert (await index.expired(cutoff)).records == 0
    assert await index.known([r.request_id for r in old + new]) == {r.request_id for r in new}


def test_a_cursor_this_command_did_not_make_is_refused() -> None:
    with pytest.raises(ValueError, match="not a cursor"):
        decode_cursor("nonsense")
