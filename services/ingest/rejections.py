"""Rejections about a lead (400 invalid body or lead, 409 idempotency conflict): answered
at once, and recorded in the background as a ``LeadRejected`` outcome on the outcome
topic and a ``rejected`` row in ``webhook_requests``, so analytics, the archive and the
status endpoint see them.

Recording retries each target with backoff for up to ``rejection_retry_s``: a rejection
made while Kafka or Postgres is away is still counted and archived once they are back,
and is in both places, not one. Both writes are idempotent by the rejection's id.

A rejection is recordable whatever its body held: NUL, which Postgres text and jsonb
refuse, is recorded as U+FFFD (policy.storable). A write refused for what it holds (a
data or encoding error, a message too large: ``shared.kafka.failures.classify`` calls it
permanent) is never retried: the rejection is written once more without its payload
(``leadwire_ingest_rejection_payload_dropped_total{target}``), and if that is refused too,
given up with a log line and ``leadwire_ingest_rejection_record_failures_total{target}``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from aiohttp import web
from aiokafka.errors import MessageSizeTooLargeError

from services.ingest import policy
from services.ingest.bodies import Rejected
from services.ingest.deps import Deps
from services.ingest.intake import Intake, ms
from services.ingest.metrics import PAYLOAD_DROPPED, REJECTION_PUBLISH_FAILED, REJECTIONS
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
from shared.kafka.failures import Kind, classify
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
    succeeds or ``rejection_retry_s`` has passed, and written without the payload when
    the target refuses it for what it holds."""
    event = _storable(event)
    deadline = time.monotonic() + deps.settings.rejection_retry_s

    async def publish(what: LeadRejected) -> None:
        await deps.kafka.publish(
            topics.OUTCOMES,
            encode(what),
            key=str(what.workspace_id),
            bound_s=deps.settings.enqueue_timeout_s,
        )

    async def store(what: LeadRejected) -> None:
        if deps.repo is None:
            raise ConnectionError("config store not connected yet")
        await deps.repo.insert_rejected(what, idempotency_key=key, body_sha256=body_sha)

    for target, write in (("kafka", publish), ("database", store)):
        if await _until_done(target, write, event, deadline) == "refused":
            # Both places hold the same record: the next target gets it without payload too.
            event = _without_payload(event)
            await _until_done(target, write, event, deadline)


def _storable(event: LeadRejected) -> LeadRejected:
    """The event with NUL in its payload recorded as U+FFFD (checked on the encoded event:
    the walk runs only when the encoding shows one)."""
    try:
        data = encode(event)
    except ValueError:  # a bug upstream: recorded without its payload rather than not at all
        log.warning("rejection_payload_unencodable", request_id=str(event.request_id))
        return _without_payload(event)
    if b"\\u0000" not in data:
        return event
    request = event.request.model_copy(update={"payload": policy.storable(event.request.payload)})
    return event.model_copy(update={"request": request})


def _without_payload(event: LeadRejected) -> LeadRejected:
    return event.model_copy(update={"request": event.request.model_copy(update={"payload": None})})


def _permanent(exc: BaseException) -> Kind | None:
    # A message Kafka refuses for its size is refused every time.
    return "permanent" if isinstance(exc, MessageSizeTooLargeError) else None


async def _until_done(
    target: str,
    write: Callable[[LeadRejected], Awaitable[None]],
    event: LeadRejected,
    deadline: float,
) -> Literal["done", "refused", "gave_up"]:
    """Write until it succeeds ("done"), the target refuses it for what it holds
    ("refused", once; "gave_up" when it was already written without its payload), or
    the deadline passes ("gave_up")."""
    backoff = 0.2
    stripped = event.request.payload is None
    while True:
        try:
            await write(event)
            return "done"
        except Exception as exc:
            refused = classify(exc, _permanent) != "transient"
            if refused and not stripped:
                verdict: Literal["refused", "gave_up"] = "refused"
                PAYLOAD_DROPPED.labels(target).inc()
            elif refused or time.monotonic() > deadline:
                verdict = "gave_up"
                REJECTION_PUBLISH_FAILED.labels(target).inc()
            else:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            log.warning(
                f"rejection_record_{verdict}",
                target=target,
                request_id=str(event.request_id),
                error=type(exc).__name__,
            )
            return verdict
