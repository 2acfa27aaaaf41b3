"""The gateway's Facebook lead fetcher: a consumer of the fetch topic in every gateway
worker (group ``LEADWIRE_FACEBOOK_FETCH_GROUP``), so leads are fetched off the request's
path (facebook.py says why).

Per fetch-topic event (a leadgen change; up to ``facebook_fetch_concurrency`` at once):

1. the webhook's config (the gateway's cache): its mapping, criteria and page token;
2. ``GET {LEADWIRE_FACEBOOK_GRAPH_URL}/{leadgen_id}`` with retries (graph.py);
3. the lead object (with the notification's ``page_id``) mapped, validated and held to
   the acceptance criteria like any body; then
4. the lead on the raw topic under the event's request id (``leadgen_id`` is the key), or
   a ``LeadRejected`` outcome and ``rejected`` row (reason ``validation`` or
   ``not_accepted``), or, when the fetch failed for good (or the webhook has no page
   token, or is gone), a ``LeadFailed`` outcome (``facebook_fetch_failed`` with the
   reason), a ``failed`` row for the status endpoint, and the event on the dead-letter
   topic: ``leadwire deadletter retry`` sends it back here to be fetched again, and a
   success then processes it under the same request id (the failed row holds no result,
   so the processor takes the lead; the failure's outcome has an id of its own).

Every step may run twice (the runner is at-least-once): the raw event and the rejection
carry the request id the processor and the stores dedupe on. Dependencies away (Kafka,
Postgres) raise, and the runner retries the batch.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import orjson

from services.ingest import acceptance
from services.ingest.config import WebhookConfig
from services.ingest.deps import Deps
from services.ingest.facebook import change_of
from services.ingest.graph import FetchFailed, GraphClient
from services.ingest.intake import ms
from services.ingest.rejections import record_rejection
from shared import mapping, topics
from shared.events import (
    ErrorInfo,
    FieldError,
    LeadFailed,
    LeadReceived,
    LeadRejected,
    Processing,
    encode,
    outcome_event_id,
    utcnow,
)
from shared.kafka import Message, deadletter
from shared.logs import get_logger

log = get_logger(__name__)

FAILED = "facebook_fetch_failed"


async def handle_batch(
    batch: list[Message[LeadReceived]], *, deps: Deps, graph: GraphClient
) -> None:
    """Fetch, map and hand on every event of the batch (concurrently, bounded)."""
    gate = asyncio.Semaphore(deps.settings.facebook_fetch_concurrency)

    async def one(message: Message[LeadReceived]) -> None:
        async with gate:
            await handle_one(message, deps=deps, graph=graph)

    await asyncio.gather(*(one(m) for m in batch))


async def handle_one(message: Message[LeadReceived], *, deps: Deps, graph: GraphClient) -> None:
    event = message.value
    started = time.perf_counter()
    leadgen_id, change = change_of(event)
    config = await deps.cache.get(event.webhook_id)  # ConfigUnavailable: retried
    if config is None or not config.active:
        await _fail(message, deps, "the webhook is gone or disabled")
        return
    if config.problem or config.mapping is None:
        await _fail(message, deps, "the webhook's configuration cannot be used")
        return
    if not (leadgen_id.isascii() and leadgen_id.isdigit()):
        await _fail(message, deps, "the event names no leadgen id")
        return
    if not config.facebook_page_token:
        await _fail(message, deps, "the webhook has no page access token (--page-token)")
        return
    try:
        fetched = await graph.lead(leadgen_id, config.facebook_page_token)
    except FetchFailed as exc:
        await _fail(message, deps, exc.reason)
        return
    fetch_ms = ms(time.perf_counter() - started)
    payload: dict[str, Any] = {**_ids(change), **fetched}
    lead, errors, reason = _map(config, payload)
    steps = {**event.steps, "facebook_fetch": fetch_ms}
    if errors:
        await _reject(event, deps, payload, steps, reason, errors)
        return
    request = event.request.model_copy(update={"payload": payload})
    ready = event.model_copy(update={"request": request, "lead": lead, "steps": steps})
    await deps.kafka.publish(
        topics.RAW, encode(ready), key=str(event.workspace_id), bound_s=_bound(deps)
    )


def _ids(change: dict[str, Any]) -> dict[str, Any]:
    """What the notification knows that the lead object may not (the page's id)."""
    return {k: change[k] for k in ("page_id",) if k in change}


def _bound(deps: Deps) -> float:
    return deps.settings.enqueue_timeout_s


def _map(config: WebhookConfig, payload: dict[str, Any]) -> tuple[Any, list[FieldError], str]:
    assert config.mapping is not None
    lead, errors = mapping.map_and_validate(
        payload, config.mapping, default_region=config.default_region
    )
    if errors:
        return lead, errors, "validation"
    return lead, acceptance.check(config.acceptance, lead), acceptance.REASON


def _processing(event: LeadReceived, steps: dict[str, float]) -> Processing:
    ended = utcnow()
    return Processing(
        start=event.received_at,
        end=ended,
        duration_ms=ms((ended - event.received_at).total_seconds()),
        steps=steps,
    )


async def _reject(
    event: LeadReceived,
    deps: Deps,
    payload: dict[str, Any],
    steps: dict[str, float],
    reason: str,
    errors: list[FieldError],
) -> None:
    rejected = LeadRejected(
        event_id=outcome_event_id(event.request_id),
        request_id=event.request_id,
        workspace_id=event.workspace_id,
        webhook_id=event.webhook_id,
        occurred_at=utcnow(),
        received_at=event.received_at,
        request=event.request.model_copy(update={"payload": payload}),
        processing=_processing(event, steps),
        status_code=400,
        reason=reason,
        errors=errors,
    )
    log.info("facebook_lead_rejected", request_id=str(event.request_id), reason=reason)
    await record_rejection(deps, rejected, event.idempotency_key, event.body_sha256)


async def _fail(message: Message[LeadReceived], deps: Deps, reason: str) -> None:
    """The lead is ``failed`` with the reason; its event goes to the dead-letter topic, from
    where ``leadwire deadletter retry`` sends it back to be fetched again."""
    event = message.value
    log.warning("facebook_fetch_failed", request_id=str(event.request_id), why=reason)
    failed = LeadFailed(
        # An id of its own: a later success of the same request is another outcome.
        event_id=outcome_event_id(uuid.uuid5(event.request_id, FAILED)),
        request_id=event.request_id,
        workspace_id=event.workspace_id,
        webhook_id=event.webhook_id,
        occurred_at=utcnow(),
        received_at=event.received_at,
        request=event.request,
        processing=_processing(event, event.steps),
        error=ErrorInfo(type=FAILED, message=reason),
    )
    bound, key = _bound(deps), str(event.workspace_id)
    await deps.kafka.publish(topics.OUTCOMES, encode(failed), key=key, bound_s=bound)
    if deps.repo is None:
        raise ConnectionError("config store not connected yet")
    await deps.repo.insert_failed(failed, idempotency_key=event.idempotency_key)
    dead = deadletter.entry(
        source_topic=topics.FETCH,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        payload=message.raw,
        reason=f"{FAILED}: {reason}",
        group_id=deps.settings.facebook_fetch_group,
    )
    await deps.kafka.publish(topics.DEADLETTER, orjson.dumps(dead), key=key, bound_s=bound)
