"""HTTP handlers: plain async functions; their dependencies come in keyword-only (``deps``).

``POST /webhooks/{id}``, in order (each step answers at once when it refuses):

1. per-client-address rate limit (429) and the webhook's config from the cache
   (404 unknown, 410 disabled webhook or workspace, 503 config database away);
2. content type (415), body within its size (413) and time (408) bounds;
3. authentication (401), then the webhook's rate limit (429): checked after
   authenticating, so strangers cannot spend a vendor's budget;
4. parse (JSON with depth/field bounds, or form), find the idempotency key, answer a
   retry from what we know (duplicate) or refuse the same key with another body (409);
5. map and validate (400 with field errors);
6. publish ``LeadReceived`` to the raw topic (acks=all) -> 202, or 503 when Kafka does not
   acknowledge within the bound; with ``Prefer: wait=N``, wait for the outcome -> 200.

Rejections that are about the lead (400, 409) are published as ``LeadRejected`` outcomes
and stored in ``webhook_requests`` (analytics and the archive see them). Refusals that are
not about a lead (401, 404, 408, 410, 413, 415, 429, 431, 503) are only counted in metrics.

Nothing here logs a payload, a header, a secret or any personal data: log lines carry
ids, codes and timings only.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import structlog
from aiohttp import web

from services.ingest import auth
from services.ingest.config import ConfigCache, ConfigUnavailable, WebhookConfig
from services.ingest.enqueue import KafkaDown, KafkaLink
from services.ingest.indeterminate import Indeterminate
from services.ingest.limits import (
    BodyTimeout,
    BodyTooLarge,
    ClientAddress,
    JsonShapeError,
    TokenBuckets,
    check_json_shape,
    read_body,
    retry_after,
)
from services.ingest.listener import Waiters
from services.ingest.lookup import BatchedLookup
from services.ingest.metrics import (
    LATENCY,
    REJECTION_PUBLISH_FAILED,
    REJECTIONS,
    WebhookLabels,
    latency_child,
    requests_child,
)
from services.ingest.recent import Accepted, RecentRequests
from services.ingest.repository import Repository
from services.ingest.settings import IngestSettings
from shared import topics
from shared.events import (
    FieldError,
    LeadReceived,
    LeadRejected,
    Processing,
    RawRequest,
    encode,
    outcome_event_id,
    request_id_for,
    utcnow,
)
from shared.kafka import KafkaUnavailable
from shared.logs import get_logger
from shared.mapping import map_and_validate, parse_form, resolve_path
from shared.redact import strip_secret_headers

log = get_logger(__name__)

JSON_TYPES = frozenset({"application/json", "text/json"})
FORM_TYPE = "application/x-www-form-urlencoded"
MAX_IDEMPOTENCY_KEY = 256
FINAL_STATUSES = frozenset({"processed", "failed", "rejected", "duplicate"})
# How often a waiting request re-reads the table even without a notification.
WAIT_RECHECK_S = 2.0


class Background:
    """Fire-and-forget work (recording rejections), bounded and drained on shutdown."""

    def __init__(self, limit: int = 1000) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._limit = limit

    def spawn(self, coro: Coroutine[Any, Any, None]) -> bool:
        if len(self._tasks) >= self._limit:
            coro.close()
            return False
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def drain(self, bound_s: float) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=bound_s)

    def __len__(self) -> int:
        return len(self._tasks)


@dataclass
class Deps:
    settings: IngestSettings
    cache: ConfigCache
    kafka: KafkaLink
    waiters: Waiters
    # Wall clock in epoch seconds (signature tolerance, secret expiry); tests pin it.
    clock: Callable[[], float] = time.time
    repo: Repository | None = None
    recent: RecentRequests = field(default_factory=RecentRequests)
    ip_buckets: TokenBuckets = field(default_factory=TokenBuckets)
    webhook_buckets: TokenBuckets = field(default_factory=TokenBuckets)
    client_address: ClientAddress = field(default_factory=lambda: ClientAddress(""))
    labels: WebhookLabels = field(default_factory=WebhookLabels)
    background: Background = field(default_factory=Background)
    # Rate limits are per process: a limit is shared out among this many workers.
    workers: int = 1
    indeterminate: Indeterminate = field(default_factory=Indeterminate)
    lookup: BatchedLookup = field(init=False)

    def __post_init__(self) -> None:
        self.lookup = BatchedLookup(self._fetch_requests)

    async def _fetch_requests(
        self, request_ids: list[uuid.UUID]
    ) -> dict[uuid.UUID, dict[str, Any]]:
        if self.repo is None:
            return {}
        return await self.repo.requests(request_ids)


# --- responses ----------------------------------------------------------------------


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, content_type="application/json", headers=headers
    )


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    field_name: str = "request",
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> web.Response:
    body: dict[str, Any] = {
        "success": False,
        "errors": [{"field": field_name, "code": code, "message": message}],
    }
    if extra:
        body.update(extra)
    return json_response(body, status, headers)


def _refuse(reason: str, status: int, code: str, message: str, **kw: Any) -> web.Response:
    REJECTIONS.labels(reason).inc()
    return error_response(status, code, message, **kw)


def status_url(settings: IngestSettings, webhook_id: uuid.UUID, request_id: uuid.UUID) -> str:
    return f"{settings.public_url.rstrip('/')}/webhooks/{webhook_id}/requests/{request_id}"


def wait_preference(value: str | None, max_wait: float) -> float:
    """Seconds asked for by ``Prefer: wait=N`` (RFC 7240), clamped to ``max_wait``; 0: none."""
    if not value:
        return 0.0
    for part in value.split(","):
        token = part.split(";", 1)[0].strip()
        name, _, raw = token.partition("=")
        if name.strip().lower() != "wait":
            continue
        try:
            seconds = float(raw.strip().strip('"'))
        except ValueError:
            return 0.0
        if not math.isfinite(seconds) or seconds <= 0:
            return 0.0
        return min(seconds, max_wait)
    return 0.0


def outcome_body(
    row: dict[str, Any], *, webhook_id: uuid.UUID, request_id: uuid.UUID, duplicate: bool
) -> tuple[int, dict[str, Any]]:
    """The synchronous answer for a stored outcome (the seed's 200 body, or 422)."""
    result = row.get("result") or {}
    status = row["status"]
    if status == "processed" or result.get("status") == "processed":
        contact = result.get("contact") or {}
        is_new = bool(result.get("is_new_contact"))
        match_type = result.get("match_type")
        duration = (result.get("processing") or {}).get("duration_ms")
        return 200, {
            "success": True,
            "message": "Contact created" if is_new else f"Contact updated via {match_type} match",
            "contact_id": contact.get("id"),
            "webhook_id": str(webhook_id),
            "rule_applied": bool(result.get("rule_applied")),
            "match_type": match_type,
            "is_new_contact": is_new,
            "processing_time": f"{round(duration)}ms"
            if isinstance(duration, (int, float))
            else None,
            "request_id": str(request_id),
            "status": "duplicate" if duplicate else "processed",
        }
    error = result.get("error") or row.get("error") or {}
    body: dict[str, Any] = {
        "success": False,
        "request_id": str(request_id),
        "webhook_id": str(webhook_id),
        "status": "duplicate" if duplicate else status,
        "original_status": status,
        "error": {"type": error.get("type", status), "message": error.get("message", "")},
    }
    if result.get("errors"):
        body["errors"] = result["errors"]
    return 422, body


def status_summary(row: dict[str, Any]) -> dict[str, Any]:
    """What the status endpoint shows of a stored result: ids, codes and timings, no
    personal data (the request id of a keyed request can be derived by whoever knows
    the key, so the status answer must not be a way to read a lead back)."""
    result = row.get("result") or {}
    status = row["status"]
    summary: dict[str, Any] = {}
    if result.get("status") == "processed" or status == "processed":
        contact = result.get("contact") or {}
        duration = (result.get("processing") or {}).get("duration_ms")
        is_new = bool(result.get("is_new_contact"))
        summary = {
            "contact_id": contact.get("id"),
            "lead_id": result.get("lead_id"),
            "action": result.get("action"),
            "match_type": result.get("match_type"),
            "is_new_contact": is_new,
            "rule_applied": bool(result.get("rule_applied")),
            "board_id": contact.get("board_id"),
            "processing_time": f"{round(duration)}ms"
            if isinstance(duration, (int, float))
            else None,
            "message": "Contact created"
            if is_new
            else f"Contact updated via {result.get('match_type')} match",
        }
    elif status == "rejected" or result.get("status") == "rejected":
        summary = {
            "status_code": result.get("status_code"),
            "reason": result.get("reason"),
            "errors": result.get("errors") or [],
        }
    else:
        error = result.get("error") or row.get("error") or {}
        if error:
            summary = {"error": {"type": error.get("type"), "message": error.get("message")}}
    return summary


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


# --- POST /webhooks/{webhook_id} ------------------------------------------------------


async def receive(request: web.Request, *, deps: Deps) -> web.StreamResponse:
    started = time.perf_counter()
    label: list[str | None] = [None]
    status = 500
    try:
        response = await _receive(request, deps, started, label)
        status = response.status
        return response
    finally:
        requests_child(deps.labels(label[0]), str(status)).inc()
        latency_child("receive", str(status)).observe(time.perf_counter() - started)


def _client_limited(request: web.Request, deps: Deps) -> web.Response | None:
    rate = deps.settings.ip_rate_per_minute
    if not rate:
        return None
    per_process = rate / deps.workers
    burst = max(1.0, deps.settings.ip_burst / deps.workers)
    wait = deps.ip_buckets.take(deps.client_address.of(request), per_process, burst)
    if wait:
        return _refuse(
            "rate_limited_client",
            429,
            "rate_limited",
            "too many requests from this address",
            headers={"Retry-After": retry_after(wait)},
        )
    return None


async def _load_config(
    webhook_id_raw: str, deps: Deps
) -> tuple[WebhookConfig | None, web.Response | None]:
    try:
        webhook_id = uuid.UUID(webhook_id_raw)
    except ValueError:
        return None, _refuse(
            "not_found", 404, "not_found", "no such webhook", field_name="webhook_id"
        )
    try:
        config = await deps.cache.get(webhook_id)
    except ConfigUnavailable:
        return None, _refuse(
            "config_unavailable",
            503,
            "unavailable",
            "configuration store unreachable; retry",
            headers={"Retry-After": str(deps.settings.retry_after_s)},
        )
    if config is None:
        return None, _refuse(
            "not_found", 404, "not_found", "no such webhook", field_name="webhook_id"
        )
    if not config.active:
        what = "webhook" if not config.webhook_active else "workspace"
        return config, _refuse(
            "disabled", 410, "disabled", f"this {what} is disabled", field_name="webhook_id"
        )
    return config, None


async def _receive(
    request: web.Request, deps: Deps, started: float, label: list[str | None]
) -> web.Response:
    settings = deps.settings
    received_at = utcnow()
    limited = _client_limited(request, deps)
    if limited is not None:
        return limited
    config, refusal = await _load_config(request.match_info["webhook_id"], deps)
    if config is not None:
        label[0] = str(config.id)
        structlog.contextvars.bind_contextvars(webhook_id=str(config.id))
    if refusal is not None:
        return refusal
    assert config is not None
    if config.problem or config.mapping is None:
        return _refuse(
            "misconfigured",
            503,
            "webhook_misconfigured",
            "this webhook's configuration cannot be used; the operator has been told",
            headers={"Retry-After": str(settings.retry_after_s)},
        )

    content_type = request.content_type
    if content_type in JSON_TYPES or content_type.endswith("+json"):
        is_json = True
    elif content_type == FORM_TYPE:
        is_json = False
    else:
        return _refuse(
            "unsupported_media_type",
            415,
            "unsupported_media_type",
            "send application/json or application/x-www-form-urlencoded",
            field_name="content-type",
        )

    limit = config.max_body_bytes or settings.max_body_bytes
    try:
        body = await read_body(request, limit=limit, timeout_s=settings.body_timeout_s)
    except BodyTooLarge:
        resp = _refuse(
            "too_large",
            413,
            "too_large",
            f"the body is larger than {limit} bytes",
            field_name="body",
        )
        resp.force_close()
        return resp
    except BodyTimeout:
        resp = _refuse(
            "body_timeout", 408, "timeout", "the body did not arrive in time", field_name="body"
        )
        resp.force_close()
        return resp
    t_read = time.perf_counter()

    failure = auth.verify(
        config.auth_mode,
        secrets=config.secrets,
        headers=request.headers,
        body=body,
        now=deps.clock(),
        basic_username=config.basic_username,
        api_key_header=config.api_key_header,
    )
    if failure is not None:
        log.info("auth_failed", code=failure.code)
        headers = (
            {"WWW-Authenticate": 'Basic realm="leadwire"'} if config.auth_mode == "basic" else None
        )
        return _refuse(
            "auth", 401, failure.code, failure.message, field_name="authentication", headers=headers
        )
    t_auth = time.perf_counter()

    rate = config.rate_limit_per_minute or settings.webhook_rate_per_minute
    if rate:
        per_process = rate / deps.workers
        wait = deps.webhook_buckets.take(config.id, per_process, max(1.0, per_process))
        if wait:
            return _refuse(
                "rate_limited_webhook",
                429,
                "rate_limited",
                f"this webhook takes at most {rate} requests per minute",
                headers={"Retry-After": retry_after(wait)},
            )

    body_sha = hashlib.sha256(body).hexdigest()
    steps: dict[str, float] = {
        "receive": _ms(t_read - started),
        "authentication": _ms(t_auth - t_read),
    }
    sanitized = strip_secret_headers(request.headers, extra=(config.api_key_header,))
    ctx = _Rejection(
        deps=deps,
        config=config,
        received_at=received_at,
        started=started,
        path=request.path,
        headers=sanitized,
        content_type=request.headers.get("Content-Type", ""),
        body_sha=body_sha,
        steps=steps,
    )

    # Parse.
    payload: Any
    if is_json:
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            return ctx.reject(
                400,
                "invalid_body",
                [
                    FieldError(
                        field="body", code="invalid_json", message="the body is not valid JSON"
                    )
                ],
                body.decode("utf-8", "replace"),
            )
        if not isinstance(payload, dict):
            return ctx.reject(
                400,
                "invalid_body",
                [
                    FieldError(
                        field="body", code="invalid_type", message="the body must be a JSON object"
                    )
                ],
                payload,
            )
        try:
            check_json_shape(
                payload, max_depth=settings.json_max_depth, max_keys=settings.json_max_keys
            )
        except JsonShapeError as exc:
            return ctx.reject(
                400,
                "invalid_body",
                [FieldError(field="body", code=exc.code, message=exc.message)],
                body.decode("utf-8", "replace"),
            )
    else:
        try:
            payload = parse_form(body)
        except ValueError as exc:
            return ctx.reject(
                400,
                "invalid_body",
                [FieldError(field="body", code="too_many_fields", message=str(exc))],
                body.decode("utf-8", "replace"),
            )
    t_parse = time.perf_counter()

    # Idempotency: a retry gets the first request's id; another body under the key is refused.
    key = request.headers.get("webhook-id") or _body_key(payload, config.idempotency_field)
    if key is not None and len(key) > MAX_IDEMPOTENCY_KEY:
        return ctx.reject(
            400,
            "invalid_idempotency_key",
            [
                FieldError(
                    field="idempotency_key",
                    code="too_long",
                    message=f"the idempotency key is longer than {MAX_IDEMPOTENCY_KEY} characters",
                )
            ],
            payload,
        )
    ctx.key = key
    request_id = request_id_for(config.id, key)
    if key is None:
        # A byte-identical retry of an indeterminate 503 is the same request.
        pool = deps.repo.pool if deps.repo is not None else None
        request_id = await deps.indeterminate.lookup(pool, config.id, body_sha) or request_id
    wait_s = wait_preference(request.headers.get("Prefer"), settings.max_wait_s)
    if key is not None:
        answer = await _answer_retry(deps, config, request_id, body_sha, wait_s, ctx, payload)
        if answer is not None:
            return answer
    t_checks = time.perf_counter()

    lead, errors = map_and_validate(payload, config.mapping, default_region=config.default_region)
    t_map = time.perf_counter()
    steps["field_mapping"] = _ms((t_parse - t_auth) + (t_map - t_checks))
    steps["validation"] = _ms(t_checks - t_parse)
    if errors:
        return ctx.reject(400, "validation", errors, payload)

    event = LeadReceived(
        request_id=request_id,
        workspace_id=config.workspace_id,
        webhook_id=config.id,
        received_at=received_at,
        idempotency_key=key,
        body_sha256=body_sha,
        request=RawRequest(
            method=request.method,
            path=request.path,
            headers=sanitized,
            content_type=ctx.content_type,
            payload=payload,
        ),
        lead=lead,
        steps=steps,
    )
    waiter = deps.waiters.register(request_id) if wait_s else None
    try:
        try:
            # The step time of the enqueue itself cannot be inside the message it sends:
            # it is the Kafka produce latency (metrics) and the archive's own timestamps.
            await deps.kafka.publish(
                topics.RAW,
                encode(event),
                key=str(config.workspace_id),
                bound_s=settings.enqueue_timeout_s,
            )
        except KafkaDown:
            # Known down before sending: nothing was handed to the producer.
            return _refuse(
                "kafka_unavailable",
                503,
                "unavailable",
                "the lead could not be queued; nothing was accepted, retry later",
                headers={"Retry-After": str(settings.retry_after_s)},
            )
        except KafkaUnavailable:
            # Not acknowledged in time, but the producer may still deliver it: a retry
            # carries the same idempotency key, or (unkeyed) the same bytes, and maps to
            # this request id, so it never makes a second lead.
            log.warning("enqueue_failed", request_id=str(request_id))
            if key is None:
                deps.indeterminate.remember(config.id, body_sha, request_id)
                pool = deps.repo.pool if deps.repo is not None else None
                deps.background.spawn(
                    deps.indeterminate.record(pool, config.id, body_sha, request_id)
                )
            return _refuse(
                "kafka_unavailable",
                503,
                "unavailable",
                "the lead was not confirmed queued; retry later with the same body "
                "(or the same idempotency key): a retry never makes a second lead",
                headers={"Retry-After": str(settings.retry_after_s)},
            )
        deps.recent.add(request_id, Accepted(config.id, body_sha, received_at))
        # Per-step times travel in the event (analytics, archive); /metrics has the
        # request latency and the Kafka produce latency, cheaper than a histogram per step.
        accepted = {
            "success": True,
            "request_id": str(request_id),
            "webhook_id": str(config.id),
            "status": "accepted",
            "status_url": status_url(settings, config.id, request_id),
        }
        if waiter is not None:
            return await _wait_for_outcome(
                deps, config.id, request_id, waiter, wait_s, accepted, duplicate=False
            )
        return json_response(accepted, 202)
    finally:
        if waiter is not None:
            deps.waiters.release(request_id, waiter)


def _body_key(payload: Any, field_path: str | None) -> str | None:
    if not field_path:
        return None
    try:
        value = resolve_path(payload, field_path)
    except (ValueError, TypeError):
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    text = str(value).strip()
    return text or None


async def _answer_retry(
    deps: Deps,
    config: WebhookConfig,
    request_id: uuid.UUID,
    body_sha: str,
    wait_s: float,
    ctx: _Rejection,
    payload: Any,
) -> web.Response | None:
    """A response for a keyed request we have seen before, or None to go on."""
    known_sha: str | None = None
    row: dict[str, Any] | None = None
    recent = deps.recent.get(request_id)
    if recent is not None:
        known_sha = recent.body_sha256
    elif deps.repo is not None:
        try:
            row = await deps.lookup.get(request_id)
        except Exception as exc:
            # The processor dedupes on the request id too: go on rather than refuse.
            log.warning("duplicate_check_failed", error=type(exc).__name__)
        if row is not None:
            known_sha = row.get("body_sha256") or body_sha
    if known_sha is None:
        return None
    if not hmac.compare_digest(known_sha, body_sha):
        return ctx.reject(
            409,
            "idempotency_conflict",
            [
                FieldError(
                    field="idempotency_key",
                    code="idempotency_conflict",
                    message="this idempotency key was used with a different body",
                )
            ],
            payload,
        )
    REJECTIONS.labels("duplicate").inc()
    accepted = {
        "success": True,
        "request_id": str(request_id),
        "webhook_id": str(config.id),
        "status": "duplicate",
        "original_status": row["status"] if row is not None else "accepted",
        "status_url": status_url(deps.settings, config.id, request_id),
    }
    if row is not None and row["status"] in FINAL_STATUSES:
        if wait_s:
            status, body = outcome_body(
                row, webhook_id=config.id, request_id=request_id, duplicate=True
            )
            return json_response(body, status)
        return json_response(accepted, 200)
    if wait_s:
        waiter = deps.waiters.register(request_id)
        try:
            return await _wait_for_outcome(
                deps, config.id, request_id, waiter, wait_s, accepted, duplicate=True
            )
        finally:
            deps.waiters.release(request_id, waiter)
    return json_response(accepted, 202)


async def _wait_for_outcome(
    deps: Deps,
    webhook_id: uuid.UUID,
    request_id: uuid.UUID,
    waiter: asyncio.Event,
    wait_s: float,
    accepted: dict[str, Any],
    *,
    duplicate: bool,
) -> web.Response:
    """200 with the outcome once the processor stored it, or 202 when ``wait_s`` runs out."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    applied = {"Preference-Applied": f"wait={wait_s:g}"}
    while True:
        # The waiter was registered before the publish, so a notification cannot be
        # missed; the table is read anyway (a reconnect of the listener, another worker).
        waiter.clear()
        row = None
        if deps.repo is not None:
            try:
                row = await deps.repo.request(request_id)
            except Exception as exc:
                log.warning("outcome_read_failed", error=type(exc).__name__)
        if row is not None and row["status"] in FINAL_STATUSES:
            status, body = outcome_body(
                row, webhook_id=webhook_id, request_id=request_id, duplicate=duplicate
            )
            return json_response(body, status, applied)
        remaining = deadline - loop.time()
        if remaining <= 0:
            return json_response(accepted, 202, applied)
        try:
            await asyncio.wait_for(waiter.wait(), min(remaining, WAIT_RECHECK_S))
        except TimeoutError:
            pass


@dataclass
class _Rejection:
    """Everything needed to record a rejection of this request (400/409)."""

    deps: Deps
    config: WebhookConfig
    received_at: datetime
    started: float
    path: str
    headers: dict[str, str]
    content_type: str
    body_sha: str
    steps: dict[str, float]
    key: str | None = None

    def reject(
        self, status_code: int, reason: str, errors: list[FieldError], payload: Any
    ) -> web.Response:
        REJECTIONS.labels(reason).inc()
        rejection_id = uuid.uuid4()
        ended = utcnow()
        duration = _ms(time.perf_counter() - self.started)
        event = LeadRejected(
            event_id=outcome_event_id(rejection_id),
            request_id=rejection_id,
            workspace_id=self.config.workspace_id,
            webhook_id=self.config.id,
            occurred_at=ended,
            received_at=self.received_at,
            request=RawRequest(
                method="POST",
                path=self.path,
                headers=self.headers,
                content_type=self.content_type,
                payload=payload,
            ),
            processing=Processing(
                start=self.received_at, end=ended, duration_ms=duration, steps=self.steps
            ),
            status_code=status_code,
            reason=reason,
            errors=errors,
        )
        log.info(
            "lead_rejected",
            request_id=str(rejection_id),
            reason=reason,
            status_code=status_code,
            codes=[e.code for e in errors],
        )
        if not self.deps.background.spawn(
            _record_rejection(self.deps, event, self.key, self.body_sha)
        ):
            REJECTION_PUBLISH_FAILED.labels("overloaded").inc()
        body = {
            "success": False,
            "request_id": str(rejection_id),
            "webhook_id": str(self.config.id),
            "status": "rejected",
            "errors": [e.model_dump() for e in errors],
        }
        return json_response(body, status_code)


async def _record_rejection(
    deps: Deps, event: LeadRejected, key: str | None, body_sha: str
) -> None:
    """Publish the rejection outcome and store its status row (both idempotent by id).

    Each step is retried with backoff until it succeeds (within ``rejection_retry_s``), so
    a rejection made while Kafka or Postgres is away is still counted and archived once
    they are back, and is in both places, not one."""
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
        await deps.repo.insert_rejected(
            request_id=event.request_id,
            workspace_id=event.workspace_id,
            webhook_id=event.webhook_id,
            received_at=event.received_at,
            processed_at=event.occurred_at,
            idempotency_key=key,
            body_sha256=body_sha,
            result=orjson.loads(data),
            steps=event.processing.steps,
            error={"type": event.reason, "message": f"rejected with {event.status_code}"},
        )

    for target, step in (("kafka", publish), ("database", store)):
        backoff = 0.2
        while True:
            try:
                await step()
                break
            except Exception as exc:
                if time.monotonic() > deadline:
                    REJECTION_PUBLISH_FAILED.labels(target).inc()
                    log.warning(
                        "rejection_record_gave_up",
                        target=target,
                        request_id=str(event.request_id),
                        error=type(exc).__name__,
                    )
                    break
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)


# --- GET /webhooks/{webhook_id}/requests/{request_id} --------------------------------


async def request_status(request: web.Request, *, deps: Deps) -> web.StreamResponse:
    started = time.perf_counter()
    response = await _request_status(request, deps)
    LATENCY.labels("status", str(response.status)).observe(time.perf_counter() - started)
    return response


async def _request_status(request: web.Request, deps: Deps) -> web.Response:
    limited = _client_limited(request, deps)
    if limited is not None:
        return limited
    try:
        webhook_id = uuid.UUID(request.match_info["webhook_id"])
        request_id = uuid.UUID(request.match_info["request_id"])
    except ValueError:
        return error_response(
            404,
            "not_found",
            "no such request",
            field_name="request_id",
            extra={"status": "unknown"},
        )
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
        return json_response(
            {
                "request_id": str(request_id),
                "webhook_id": str(webhook_id),
                "status": row["status"],
                "received_at": _iso(row["received_at"]),
                "processed_at": _iso(row["processed_at"]),
                "result": status_summary(row),
            }
        )
    accepted = deps.recent.get(request_id)
    if accepted is not None and accepted.webhook_id == webhook_id:
        return json_response(
            {
                "request_id": str(request_id),
                "webhook_id": str(webhook_id),
                "status": "accepted",
                "received_at": _iso(accepted.received_at),
                "processed_at": None,
                "result": None,
            }
        )
    return error_response(
        404,
        "not_found",
        "no such request, or accepted by another gateway process and not processed yet",
        field_name="request_id",
        extra={"status": "unknown"},
    )


# --- GET /webhooks/{webhook_id}: Facebook subscription check ---------------------------


async def verify_subscription(request: web.Request, *, deps: Deps) -> web.StreamResponse:
    started = time.perf_counter()
    response = await _verify_subscription(request, deps)
    LATENCY.labels("verify", str(response.status)).observe(time.perf_counter() - started)
    return response


async def _verify_subscription(request: web.Request, deps: Deps) -> web.Response:
    limited = _client_limited(request, deps)
    if limited is not None:
        return limited
    config, refusal = await _load_config(request.match_info["webhook_id"], deps)
    if refusal is not None:
        return refusal
    assert config is not None
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
