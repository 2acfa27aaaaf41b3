"""HTTP handlers: plain async functions; their dependencies come in keyword-only (``deps``).

- ``POST /webhooks/{webhook_id}`` (:func:`receive`): a vendor delivers a lead, through the
  steps of :mod:`services.ingest.steps` in order; the first that answers ends it.
- ``GET /webhooks/{webhook_id}/requests/{request_id}`` (:func:`request_status`).
- ``GET /webhooks/{webhook_id}`` (:func:`verify_subscription`): Facebook's check.

Nothing here logs a payload, a header, a secret or any personal data: log lines carry
ids, codes and timings only.
"""

from __future__ import annotations

import hmac
import time
import uuid
from datetime import datetime

import structlog
from aiohttp import web

from services.ingest import buyer, facebook, policy, steps
from services.ingest.bodies import RequestStatus
from services.ingest.config import WebhookConfig
from services.ingest.deps import Deps
from services.ingest.intake import Answered, Timings
from services.ingest.metrics import REJECTIONS, latency_child, requests_child
from services.ingest.responses import error_response, json_response, status_summary
from shared.events import utcnow
from shared.logs import get_logger

log = get_logger(__name__)


# --- POST /webhooks/{webhook_id} ------------------------------------------------------


async def receive(request: web.Request, *, deps: Deps) -> web.StreamResponse:
    """Deliver a lead. Counted by webhook (once known) and status, and timed."""
    timings = Timings(started=time.perf_counter())
    received_at = utcnow()
    config: WebhookConfig | None = None
    status = 500
    try:
        try:
            # Header bytes that are not UTF-8 read as Latin-1 (the input policy).
            request = policy.latin1_headers(request)
            steps.limit_client(request, deps)
            config = await steps.find_webhook(request, deps)
            response = await _deliver(request, config, received_at, timings, deps)
        except Answered as answered:
            response = answered.response
        status = response.status
        return response
    finally:
        webhook = deps.labels(str(config.id) if config is not None else None)
        requests_child(webhook, str(status)).inc()
        latency_child("receive", str(status)).observe(time.perf_counter() - timings.started)


async def _deliver(
    request: web.Request,
    config: WebhookConfig,
    received_at: datetime,
    timings: Timings,
    deps: Deps,
) -> web.Response:
    """The steps after finding the webhook, in order (see steps.py)."""
    structlog.contextvars.bind_contextvars(webhook_id=str(config.id))
    steps.check_enabled(config)
    steps.check_usable(config, deps.settings)
    is_json = steps.media_type(request)
    body = await steps.read_body(request, config, deps.settings)
    timings.read = time.perf_counter()
    steps.authenticate(request, body, config, now=deps.clock())
    timings.authenticated = time.perf_counter()
    steps.limit_webhook(config, deps)
    intake = steps.take_in(
        request,
        config,
        body,
        is_json=is_json,
        received_at=received_at,
        timings=timings,
        settings=deps.settings,
    )
    payload = steps.parse(intake, deps)
    timings.parsed = time.perf_counter()
    if facebook.is_notification(config.template, payload):
        return await facebook.accept(intake, payload, deps)  # its leads are fetched later
    request_id = await steps.idempotency(intake, payload, deps)
    timings.checked = time.perf_counter()
    lead = steps.map_and_validate(intake, payload, deps)
    buyer.accept(intake, payload, lead, deps)
    # Waiting for the outcome starts before the publish, so its notification is not missed.
    waiter = deps.waiters.register(request_id) if intake.wait_s else None
    try:
        await steps.enqueue(intake, request_id, payload, lead, deps)
        return await steps.answer(intake, request_id, waiter, deps)
    finally:
        if waiter is not None:
            deps.waiters.release(request_id, waiter)


# --- GET /webhooks/{webhook_id}/requests/{request_id} --------------------------------


def _unknown_request(message: str) -> web.Response:
    return error_response(404, "not_found", message, field_name="request_id", unknown=True)


async def request_status(request: web.Request, *, deps: Deps) -> web.StreamResponse:
    """A request's status and a summary of its result (ids, codes, timings)."""
    started = time.perf_counter()
    try:
        steps.limit_client(request, deps)
        response = await _request_status(request, deps)
    except Answered as answered:
        response = answered.response
    latency_child("status", str(response.status)).observe(time.perf_counter() - started)
    return response


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


async def _request_status(request: web.Request, deps: Deps) -> web.Response:
    try:
        webhook_id = uuid.UUID(request.match_info["webhook_id"])
        request_id = uuid.UUID(request.match_info["request_id"])
    except ValueError:
        return _unknown_request("no such request")
    row = None
    if deps.repo is not None:
        try:
            row = await deps.repo.request(request_id)
        except Exception as exc:
            log.warning("status_read_failed", error=type(exc).__name__)
            return error_response(
                503,
                "unavailable",
                "status store unreachable; retry",
                headers={"Retry-After": str(deps.settings.retry_after_s)},
            )
    if row is not None and row["webhook_id"] == webhook_id:
        stored = RequestStatus(
            request_id=request_id,
            webhook_id=webhook_id,
            status=row["status"],
            received_at=_iso(row["received_at"]),
            processed_at=_iso(row["processed_at"]),
            result=status_summary(row),
        )
        return json_response(stored)
    accepted = deps.recent.get(request_id)
    if accepted is not None and accepted.webhook_id == webhook_id:
        known = RequestStatus(
            request_id=request_id,
            webhook_id=webhook_id,
            status="accepted",
            received_at=_iso(accepted.received_at),
            processed_at=None,
            result=None,
        )
        return json_response(known)
    return _unknown_request(
        "no such request, or accepted by another gateway process and not processed yet"
    )


# --- GET /webhooks/{webhook_id}: Facebook subscription check ---------------------------


async def verify_subscription(request: web.Request, *, deps: Deps) -> web.StreamResponse:
    """Echo ``hub.challenge`` when ``hub.verify_token`` is the webhook's (facebook only)."""
    started = time.perf_counter()
    try:
        steps.limit_client(request, deps)
        config = await steps.find_webhook(request, deps)
        steps.check_enabled(config)
        response = _verify_subscription(request, config)
    except Answered as answered:
        response = answered.response
    latency_child("verify", str(response.status)).observe(time.perf_counter() - started)
    return response


def _verify_subscription(request: web.Request, config: WebhookConfig) -> web.Response:
    if config.template != "facebook":
        return error_response(
            404,
            "not_found",
            "subscription checks are answered for facebook webhooks only",
            field_name="webhook_id",
        )
    mode = request.query.get("hub.mode")
    token = request.query.get("hub.verify_token")
    challenge = request.query.get("hub.challenge")
    if mode is None or token is None or challenge is None:
        return error_response(
            400,
            "missing_parameter",
            "hub.mode, hub.verify_token and hub.challenge are required",
            field_name="query",
        )
    expected = config.verify_token or ""
    token_ok = bool(expected) and hmac.compare_digest(token.encode(), expected.encode())
    if mode != "subscribe" or not token_ok:
        REJECTIONS.labels("verify_token").inc()
        return error_response(
            403, "forbidden", "hub.verify_token does not match", field_name="hub.verify_token"
        )
    if len(challenge) > 512:
        return error_response(
            400, "invalid_parameter", "hub.challenge is too long", field_name="hub.challenge"
        )
    return web.Response(text=challenge, content_type="text/plain")
