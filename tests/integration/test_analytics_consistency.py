"""Analytics answers agree with themselves (issue 18, point 8): every read-out is read in
one snapshot, so its figures come from one committed state, and in every window
successful + failed + rejected = total (vendors: accepted + failed + rejected = received).

Seen before: ``total_requests`` 2 while ``last_24h.requests`` was 3, for a moment after a
burst: the all-time row was read, a batch committed, then the minutes were summed."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from services.analytics import handlers, queries
from services.analytics.alerts import Thresholds
from services.analytics.postgres_repository import PostgresAnalytics
from services.analytics.queries import ReadConfig
from shared.db import create_pool
from shared.settings import CommonSettings
from tests.support.analytics import analytics_settings, running_analytics, seed_webhooks
from tests.support.events import Outcome, failed, processed, publish_events, rejected
from tests.support.polling import eventually

pytestmark = pytest.mark.integration

CONFIG = handlers.Config(accuracy=0.01, dedupe_days=30, thresholds=Thresholds(10.0, 1000.0, 20, 5))
READ = ReadConfig(accuracy=0.01)


class CountsMidRead:
    """A repository whose read-outs are interrupted: before the first per-minute read of
    a read-out, one more batch is counted and committed (on another connection)."""

    def __init__(self, inner: Any, write: Callable[[], Awaitable[None]], *, snapshots: bool):
        self.inner, self.write, self.snapshots = inner, write, snapshots

    @contextlib.asynccontextmanager
    async def snapshot(self) -> AsyncIterator[Any]:
        if not self.snapshots:  # as the reads were: each statement on its own
            yield _Interrupting(self.inner, self.write)
            return
        async with self.inner.snapshot() as snap:
            yield _Interrupting(snap, self.write)


class _Interrupting:
    def __init__(self, inner: Any, write: Callable[[], Awaitable[None]]) -> None:
        self.inner, self.write = inner, write

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def window_totals(self, *args: Any) -> Any:
        await self.write()
        return await self.inner.window_totals(*args)


async def test_a_read_out_does_not_see_a_batch_counted_while_it_reads(
    settings: CommonSettings,
) -> None:
    ws, hook = uuid.uuid4(), uuid.uuid4()
    pool = await create_pool(settings.database_url)
    try:
        repo = PostgresAnalytics(pool)
        now = datetime.now(UTC)
        await handlers.count_outcomes(
            [processed(ws, hook), rejected(ws, hook)], repo=repo, config=CONFIG, now=now
        )

        async def one_more() -> None:
            await handlers.count_outcomes([failed(ws, hook)], repo=repo, config=CONFIG, now=now)

        # Without a snapshot, the seen fault: 2 in all, 3 in the last 24 hours.
        torn = CountsMidRead(repo, one_more, snapshots=False)
        got = await queries.webhook_analytics(torn, hook, cfg=READ, now=now)  # type: ignore[arg-type]
        assert got is not None
        assert (got.metrics.total_requests, got.metrics.last_24h.requests) == (2, 3)

        # In one snapshot: the batch committed meanwhile is in none of the figures...
        whole = CountsMidRead(repo, one_more, snapshots=True)
        got = await queries.webhook_analytics(whole, hook, cfg=READ, now=now)  # type: ignore[arg-type]
        assert got is not None
        assert (got.metrics.total_requests, got.metrics.last_24h.requests) == (3, 3)
        # ... and the next read-out has it in all of them.
        got = await queries.webhook_analytics(repo, hook, cfg=READ, now=now)
        assert got is not None
        assert (got.metrics.total_requests, got.metrics.last_24h.requests) == (4, 4)
        assert got.metrics.failed_requests == 2
    finally:
        await pool.close()


def _adds_up(m: dict[str, Any], where: str) -> None:
    """successful + failed + rejected = total, all time and in the last 24 hours (every
    outcome here arrived just now, so both windows hold the same requests)."""
    day = m["last_24h"]
    parts = m["successful_requests"] + m["failed_requests"] + m["rejected_requests"]
    day_parts = day["successful_requests"] + day["failed_requests"] + day["rejected_requests"]
    assert parts == m["total_requests"], (where, m)
    assert day_parts == day["requests"], (where, day)
    assert day["requests"] == m["total_requests"], (where, m)


def _workspace_adds_up(body: dict[str, Any]) -> int:
    _adds_up(body["metrics"], "workspace")
    for w in body["webhooks"]:
        _adds_up(w["metrics"], str(w["webhook_id"]))
    for key in ("total_requests", "successful_requests", "failed_requests", "rejected_requests"):
        assert body["metrics"][key] == sum(w["metrics"][key] for w in body["webhooks"]), key
    return int(body["metrics"]["total_requests"])


def _vendors_add_up(body: dict[str, Any]) -> int:
    received = 0
    for v in body["vendors"]:
        windows = v["windows"]
        for name, w in windows.items():
            by_reason = sum(w["rejected_by_reason"].values())
            assert w["rejected"] == by_reason, (name, w)
            assert w["received"] == w["accepted"] + w["failed"] + w["rejected"], (name, w)
        assert windows["last_24h"] == windows["last_7d"] == windows["last_30d"], windows
        received += windows["last_24h"]["received"]
    return received


def burst(ws: uuid.UUID, hooks: list[uuid.UUID], n: int) -> list[Outcome]:
    reasons = ["validation", "not_accepted", "duplicate_lead", "suppressed", "other_reason"]
    out: list[Outcome] = []
    for i in range(n):
        hook = hooks[i % len(hooks)]
        kind = i % 4
        if kind < 2:
            out.append(processed(ws, hook, match_type="new" if i % 3 else "phone"))
        elif kind == 2:
            out.append(failed(ws, hook))
        else:
            out.append(rejected(ws, hook, reason=reasons[i % len(reasons)]))
    return out


async def test_every_answer_adds_up_while_batches_are_counted(settings: CommonSettings) -> None:
    ws, hooks = uuid.uuid4(), [uuid.uuid4() for _ in range(3)]
    await seed_webhooks(settings.database_url, ws, "Acme Solar", {h: f"vendor {h}" for h in hooks})
    batches, per_batch = 40, 25
    expected = batches * per_batch
    async with running_analytics(analytics_settings(settings, analytics_max_batch=20)) as svc:
        done = asyncio.Event()

        async def write() -> None:
            try:
                for _ in range(batches):
                    await publish_events(settings, burst(ws, hooks, per_batch))
            finally:
                done.set()

        writer = asyncio.create_task(write())
        seen: set[tuple[str, int]] = set()
        checked = 0
        try:
            while True:
                status, body = await svc.get(f"/analytics/workspaces/{ws}")
                if status == 200:
                    seen.add(("workspace", _workspace_adds_up(body)))
                    checked += 1
                status, body = await svc.get(f"/analytics/webhooks/{hooks[0]}")
                if status == 200:
                    _adds_up(body["metrics"], "webhook")
                    checked += 1
                status, body = await svc.get(f"/analytics/workspaces/{ws}/vendors")
                if status == 200:
                    seen.add(("vendors", _vendors_add_up(body)))
                    checked += 1
                if done.is_set() and {("workspace", expected), ("vendors", expected)} <= seen:
                    break
                if done.is_set():
                    await eventually(
                        lambda: svc.get(f"/analytics/workspaces/{ws}"),
                        until=lambda r: (
                            r[0] == 200 and r[1]["metrics"]["total_requests"] >= expected
                        ),
                        deadline_s=60,
                        what=f"all {expected} counted",
                    )
        finally:
            await writer
    # The reads ran while the counts moved: many answers, at many different totals.
    moving = {total for kind, total in seen if kind == "workspace" and 0 < total < expected}
    print(f"answers checked: {checked}; distinct workspace totals seen mid-burst: {len(moving)}")
    assert checked >= 30 and len(moving) >= 3
