"""Analytics test helpers: realistic outcome events, and the service run in-process."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from services.analytics.service import run_analytics
from services.analytics.settings import AnalyticsSettings
from shared import topics
from shared.events import (
    ContactSummary,
    ErrorInfo,
    FieldError,
    LeadFailed,
    LeadProcessed,
    LeadRejected,
    MappedLead,
    Processing,
    RawRequest,
    outcome_event_id,
)
from shared.kafka import Publisher
from shared.settings import CommonSettings

Outcome = LeadProcessed | LeadFailed | LeadRejected


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _request(webhook_id: uuid.UUID) -> RawRequest:
    return RawRequest(
        path=f"/webhooks/{webhook_id}",
        headers={"content-type": "application/json", "user-agent": "LeadConduit/2.0"},
        content_type="application/json",
        payload={"first_name": "Ada", "phone": "+15555550100", "product": "solar"},
    )


def _processing(
    received: datetime, duration_ms: float, steps: dict[str, float] | None
) -> Processing:
    return Processing(
        start=received,
        end=received + timedelta(milliseconds=duration_ms),
        duration_ms=duration_ms,
        steps=steps
        if steps is not None
        else {"authentication": 1.0, "field_mapping": 2.0, "duplicate_check": 4.0},
    )


def processed(
    workspace_id: uuid.UUID,
    webhook_id: uuid.UUID,
    *,
    duration_ms: float = 45.0,
    match_type: str = "new",
    received_at: datetime | None = None,
    steps: dict[str, float] | None = None,
) -> LeadProcessed:
    received = received_at or datetime.now(UTC)
    request_id = uuid.uuid4()
    return LeadProcessed(
        event_id=outcome_event_id(request_id),
        request_id=request_id,
        workspace_id=workspace_id,
        webhook_id=webhook_id,
        occurred_at=received + timedelta(milliseconds=duration_ms),
        received_at=received,
        request=_request(webhook_id),
        processing=_processing(received, duration_ms, steps),
        lead=MappedLead(phone="+15555550100", first_name="Ada", product="solar"),
        lead_id=uuid.uuid4(),
        contact=ContactSummary(id=uuid.uuid4(), phone="+15555550100"),
        action="created" if match_type == "new" else "updated",
        match_type=match_type,  # type: ignore[arg-type]
        is_new_contact=match_type == "new",
        rule_applied=True,
    )


def failed(
    workspace_id: uuid.UUID,
    webhook_id: uuid.UUID,
    *,
    duration_ms: float = 120.0,
    error_type: str = "database_error",
    message: str = "could not write contact for +15555550100",
    received_at: datetime | None = None,
) -> LeadFailed:
    received = received_at or datetime.now(UTC)
    request_id = uuid.uuid4()
    return LeadFailed(
        event_id=outcome_event_id(request_id),
        request_id=request_id,
        workspace_id=workspace_id,
        webhook_id=webhook_id,
        occurred_at=received + timedelta(milliseconds=duration_ms),
        received_at=received,
        request=_request(webhook_id),
        processing=_processing(received, duration_ms, None),
        error=ErrorInfo(type=error_type, message=message),
    )


def rejected(
    workspace_id: uuid.UUID,
    webhook_id: uuid.UUID,
    *,
    duration_ms: float = 3.0,
    reason: str = "validation_failed",
    received_at: datetime | None = None,
) -> LeadRejected:
    received = received_at or datetime.now(UTC)
    request_id = uuid.uuid4()
    return LeadRejected(
        event_id=outcome_event_id(request_id),
        request_id=request_id,
        workspace_id=workspace_id,
        webhook_id=webhook_id,
        occurred_at=received + timedelta(milliseconds=duration_ms),
        received_at=received,
        request=_request(webhook_id),
        processing=_processing(received, duration_ms, {"authentication": 1.0, "validation": 2.0}),
        status_code=400,
        reason=reason,
        errors=[FieldError(field="phone", code="invalid_phone", message="not a phone number")],
    )


async def publish_outcomes(settings: CommonSettings, events: Sequence[Outcome]) -> None:
    """Publish to the test's outcome topic, keyed by workspace (as the processor does)."""
    async with Publisher(settings, client_id="analytics-test") as pub:
        for i in range(0, len(events), 200):
            chunk = events[i : i + 200]
            await pub.publish_many(topics.OUTCOMES, [(str(e.workspace_id), e) for e in chunk])


def analytics_settings(settings: CommonSettings, **overrides: Any) -> AnalyticsSettings:
    values = settings.model_dump()
    values.update(
        analytics_port=free_port(),
        analytics_metrics_refresh_s=0.5,
        analytics_stream_min_interval_s=0.1,
        analytics_prune_interval_s=0,
        log_format="json",
    )
    values.update(overrides)
    return AnalyticsSettings(**values)


@dataclass
class RunningAnalytics:
    settings: AnalyticsSettings
    stop: asyncio.Event
    task: asyncio.Task[None]

    @property
    def url(self) -> str:
        return f"http://{self.settings.http_host}:{self.settings.analytics_port}"

    async def get(self, path: str, **params: str) -> tuple[int, Any]:
        async with (
            aiohttp.ClientSession() as http,
            http.get(self.url + path, params=params) as resp,
        ):
            body = await resp.read()
            if resp.content_type == "application/json":
                import orjson

                return resp.status, orjson.loads(body)
            return resp.status, body.decode()

    async def shutdown(self, deadline_s: float = 30) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, deadline_s)


@contextlib.asynccontextmanager
async def running_analytics(
    settings: AnalyticsSettings, *, clock: Any = None
) -> AsyncIterator[RunningAnalytics]:
    """run_analytics in this event loop; yields once /readyz answers 200."""
    stop = asyncio.Event()
    started = asyncio.Event()
    kwargs: dict[str, Any] = {"started": started}
    if clock is not None:
        kwargs["clock"] = clock
    task = asyncio.create_task(run_analytics(settings, stop, **kwargs))
    running = RunningAnalytics(settings, stop, task)
    try:
        waiter = asyncio.create_task(started.wait())
        await asyncio.wait({task, waiter}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if task.done():
            task.result()  # raises the start-up error
        loop = asyncio.get_running_loop()
        end = loop.time() + 60
        while True:
            status, _ = await running.get("/readyz")
            if status == 200:
                break
            assert loop.time() < end, "analytics not ready in 60 s"
            await asyncio.sleep(0.1)
        yield running
    finally:
        if not task.done():
            stop.set()
            await asyncio.wait_for(task, 30)


async def wait_total(
    running: RunningAnalytics, webhook_id: uuid.UUID, total: int, deadline_s: float = 30
) -> dict[str, Any]:
    """Poll the webhook's figures until its total reaches ``total``."""
    from tests.support.polling import eventually

    async def probe() -> dict[str, Any]:
        status, body = await running.get(f"/analytics/webhooks/{webhook_id}")
        return body if status == 200 else {}

    return await eventually(
        probe,
        until=lambda b: bool(b) and b["metrics"]["total_requests"] >= total,
        deadline_s=deadline_s,
        what=f"webhook {webhook_id} total >= {total}",
    )
