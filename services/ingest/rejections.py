"""Rejections about a lead (400 invalid body or lead, 409 idempotency conflict): answered
at once, and recorded in the background as a ``LeadRejected`` outcome on the outcome
topic and a ``rejected`` row in ``webhook_requests``, so analytics, the archive and the
status endpoint see them.

Recording retries each target with backoff for up to ``rejection_retry_s``: a rejection
made while Kafka or Postgres is away is still counted and archived once they are back,
and is in both places, not one. Both writes are idempotent by the rejection's id.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from services.ingest.bodies import Rejected
from services.ingest.deps import Deps
from services.ingest.intake import Intake, ms
from services.ingest.metrics import REJECTION_PUBLISH_FAILED, REJECTIONS
from services.ingest.responses import json_response
from shared import topics
from shared.events import (
    FieldError,
    LeadRejected,
    Processing,
    RawRequest,
    encode,
    outcome_event_id,
    utcnow,
)
from shared.logs import get_logger

log = get_logger(__name__)


def reject(
    intake: Intake,
    deps: Deps,
    status_code: int,
    reason: str,
    errors: list[FieldError],
    payload: Any,
) -> web.Response:
    """Answer ``status_code`` with the field errors, and record the rejection."""
    REJECTIONS.labels(reason).inc()
    rejection_id = uuid.uuid4()
    event = _rejected_event(intake, rejection_id, status_code, reason, errors, payload)
    log.info(
        "lead_rejected",
        request_id=str(rejection_id),
        reason=reason,
        status_code=status_code,
        codes=[e.code for e in errors],
    )
    if not deps.background.spawn(record_rejection(deps, event, intake.key, intake.body_sha)):
        REJECTION_PUBLISH_FAILED.labels("overloaded").inc()
    body = Rejected(
        success=False,
        request_id=rejection_id,
        webhook_id=intake.config.id,
        status="rejected",
        errors=errors,
    )
    return json_response(body, status_code)


def _rejected_event(
    intake: Intake,
    rejection_id: uuid.UUID,
    status_code: int,
    reason: str,
    errors: list[FieldError],
    payload: Any,
) -> LeadRejected:
    ended = utcnow()
    duration = ms(time.perf_counter() - intake.timings.started)
    return LeadRejected(
        event_id=outcome_event_id(rejection_id),
        request_id=rejection_id,
        workspace_id=intake.config.workspace_id,
        webhook_id=intake.config.id,
        occurred_at=ended,
        received_at=intake.received_at,
        request=RawRequest(
            method="POST",
            path=intake.request.path,
            headers=intake.headers,
            content_type=intake.content_type,
            payload=payload,
        ),
        processing=Processing(
            start=intake.received_at,
            end=ended,
            duration_ms=duration,
            steps=intake.timings.steps(),
        ),
        status_code=status_code,
        reason=reason,
        errors=errors,
    )


async def record_rejection(deps: Deps, event: LeadRejected, key: str | None, body_sha: str) -> None:
    """Publish the rejection outcome, then store its status row; each retried until it
    succeeds or ``rejection_retry_s`` has passed."""
    data = encode(event)
    deadline = time.monotonic() + deps.settings.rejection_retry_s

    async def publish() -> None:
        await deps.kafka.publish(
            topics.OUTCOMES,
            data,
            key=str(event.workspace_id),
            bound_s=deps.settings.enqueue_timeout_s,
        )

    async def store() -> None:
        if deps.repo is None:
            raise ConnectionError("config store not connected yet")
        await deps.repo.insert_rejected(event, idempotency_key=key, body_sha256=body_sha)

    await _until_done("kafka", publish, deadline, event.request_id)
    await _until_done("database", store, deadline, event.request_id)


async def _until_done(
    target: str, write: Callable[[], Awaitable[None]], deadline: float, request_id: uuid.UUID
) -> None:
    backoff = 0.2
    while True:
        try:
            await write()
            return
        except Exception as exc:
            if time.monotonic() > deadline:
                REJECTION_PUBLISH_FAILED.labels(target).inc()
                log.warning(
                    "rejection_record_gave_up",
                    target=target,
                    request_id=str(request_id),
                    error=type(exc).__name__,
                )
                return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
