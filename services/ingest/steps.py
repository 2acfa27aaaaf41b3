"""The steps of ``POST /webhooks/{webhook_id}``, in the order the handler calls them.

Each step returns what the next ones need, or raises :class:`Answered` with the answer:

| step | answers |
|---|---|
| ``limit_client`` | 429 + Retry-After, per client address |
| ``find_webhook`` | 404 unknown id; 503 config store away and the id not cached |
| ``check_enabled`` | 410 webhook or workspace disabled |
| ``check_usable`` | 503 the webhook's stored config cannot be used |
| ``media_type`` | 415 neither JSON nor a form |
| ``read_body`` | 413 too large (also a chunked body, as soon as it passes); 408 too slow |
| ``authenticate`` | 401 (the webhook's mode; see auth.py) |
| ``limit_webhook`` | 429, after authenticating: strangers cannot spend a vendor's budget |
| ``take_in`` | (what the later steps and a rejection record need) |
| ``parse`` | 400 not a JSON object, too deep, too many fields; form; the input policy (policy.py) |
| ``idempotency`` | 400 key too long; 409 same key, another body; a retry's answer |
| ``map_and_validate`` | 400 with field errors |
| ``enqueue`` | 503 Kafka did not acknowledge (acks=all) |
| ``answer`` | 202, or with ``Prefer: wait`` the outcome (200, 422) |

Refusals before ``take_in`` are not about a lead: only counted. The 400s and the 409 after
it are about the lead: recorded (rejections.py). Nothing here logs a payload, a header, a
secret or personal data: ids, codes and timings only.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from datetime import datetime
from typing import Any

import orjson
from aiohttp import web

from services.ingest import auth, limits, policy
from services.ingest.bodies import Accepted
from services.ingest.config import ConfigUnavailable, WebhookConfig
from services.ingest.deps import Deps
from services.ingest.enqueue import KafkaDown
from services.ingest.intake import Answered, Intake, Timings
from services.ingest.listener import Waiter
from services.ingest.metrics import REJECTIONS
from services.ingest.recent import AcceptedRequest
from services.ingest.rejections import reject
from services.ingest.responses import accepted_response, refusal, status_url
from services.ingest.settings import IngestSettings
from services.ingest.waiting import answer_duplicate, wait_for_outcome, wait_preference
from shared import mapping, topics
from shared.events import FieldError, MappedLead, lead_received_json, request_id_for
from shared.kafka import KafkaUnavailable
from shared.logs import get_logger
from shared.mapping.apply import map_fields, validate_mapped
from shared.redact import strip_secret_headers

log = get_logger(__name__)

JSON_TYPES = frozenset({"application/json", "text/json"})
FORM_TYPE = "application/x-www-form-urlencoded"
MAX_IDEMPOTENCY_KEY = 256


def _retry_after(settings: IngestSettings) -> dict[str, str]:
    return {"Retry-After": str(settings.retry_after_s)}


def _refused(reason: str, status: int, code: str, message: str, **kw: Any) -> Answered:
    """A refusal that is not about a lead (counted, not recorded), to raise."""
    return Answered(refusal(reason, status, code, message, **kw))


def _no_such_webhook() -> Answered:
    return _refused("not_found", 404, "not_found", "no such webhook", field_name="webhook_id")


# --- before the body: who is asking, and for which webhook ---------------------------


def limit_client(request: web.Request, deps: Deps) -> None:
    rate = deps.settings.ip_rate_per_minute
    if not rate:
        return
    per_process = rate / deps.workers
    burst = max(1.0, deps.settings.ip_burst / deps.workers)
    wait = deps.ip_buckets.take(deps.client_address.of(request), per_process, burst)
    if wait:
        raise _refused(
            "rate_limited_client",
            429,
            "rate_limited",
            "too many requests from this address",
            headers={"Retry-After": limits.retry_after(wait)},
        )


async def find_webhook(request: web.Request, deps: Deps) -> WebhookConfig:
    try:
        webhook_id = uuid.UUID(request.match_info["webhook_id"])
    except ValueError:
        raise _no_such_webhook() from None
    try:
        config = await deps.cache.get(webhook_id)
    except ConfigUnavailable:
        raise _refused(
            "config_unavailable",
            503,
            "unavailable",
            "configuration store unreachable; retry",
            headers=_retry_after(deps.settings),
        ) from None
    if config is None:
        raise _no_such_webhook()
    return config


def check_enabled(config: WebhookConfig) -> None:
    if not config.active:
        what = "webhook" if not config.webhook_active else "workspace"
        raise _refused(
            "disabled", 410, "disabled", f"this {what} is disabled", field_name="webhook_id"
        )


def check_usable(config: WebhookConfig, settings: IngestSettings) -> None:
    if config.problem or config.mapping is None:
        raise _refused(
            "misconfigured",
            503,
            "webhook_misconfigured",
            "this webhook's configuration cannot be used; the operator has been told",
            headers=_retry_after(settings),
        )


def media_type(request: web.Request) -> bool:
    """True for a JSON body, False for a form."""
    content_type = request.content_type
    if content_type in JSON_TYPES or content_type.endswith("+json"):
        return True
    if content_type == FORM_TYPE:
        return False
    raise _refused(
        "unsupported_media_type",
        415,
        "unsupported_media_type",
        "send application/json or application/x-www-form-urlencoded",
        field_name="content-type",
    )


async def read_body(request: web.Request, config: WebhookConfig, settings: IngestSettings) -> bytes:
    limit = config.max_body_bytes or settings.max_body_bytes
    try:
        return await limits.read_body(request, limit=limit, timeout_s=settings.body_timeout_s)
    except limits.BodyTooLarge:
        response = refusal(
            "too_large",
            413,
            "too_large",
            f"the body is larger than {limit} bytes",
            field_name="body",
        )
    except limits.BodyTimeout:
        response = refusal(
            "body_timeout", 408, "timeout", "the body did not arrive in time", field_name="body"
        )
    # The rest of the body may still be on its way: do not read it, close.
    response.force_close()
    raise Answered(response)


def authenticate(request: web.Request, body: bytes, config: WebhookConfig, *, now: float) -> None:
    failure = auth.verify(
        config.auth_mode,
        secrets=config.secrets,
        headers=request.headers,
        body=body,
        now=now,
        basic_username=config.basic_username,
        api_key_header=config.api_key_header,
    )
    if failure is None:
        return
    log.info("auth_failed", code=failure.code)
    basic = config.auth_mode == "basic"
    raise _refused(
        "auth",
        401,
        failure.code,
        failure.message,
        field_name="authentication",
        headers={"WWW-Authenticate": 'Basic realm="leadwire"'} if basic else None,
    )


def limit_webhook(config: WebhookConfig, deps: Deps) -> None:
    rate = config.rate_limit_per_minute or deps.settings.webhook_rate_per_minute
    if not rate:
        return
    per_process = rate / deps.workers
    wait = deps.webhook_buckets.take(config.id, per_process, max(1.0, per_process))
    if wait:
        raise _refused(
            "rate_limited_webhook",
            429,
            "rate_limited",
            f"this webhook takes at most {rate} requests per minute",
            headers={"Retry-After": limits.retry_after(wait)},
        )


def take_in(
    request: web.Request,
    config: WebhookConfig,
    body: bytes,
    *,
    is_json: bool,
    received_at: datetime,
    timings: Timings,
    settings: IngestSettings,
) -> Intake:
    return Intake(
        request=request,
        config=config,
        body=body,
        is_json=is_json,
        received_at=received_at,
        timings=timings,
        body_sha=hashlib.sha256(body).hexdigest(),
        headers=strip_secret_headers(request.headers, extra=(config.api_key_header,)),
        wait_s=wait_preference(request.headers.get("Prefer"), settings.max_wait_s),
    )


# --- the lead: parse, idempotency, map and validate -----------------------------------


def _invalid_body(intake: Intake, deps: Deps, payload: Any, *errors: FieldError) -> Answered:
    return Answered(reject(intake, deps, 400, "invalid_body", list(errors), payload))


def _body_error(code: str, message: str) -> FieldError:
    return FieldError(field="body", code=code, message=message)


def parse(intake: Intake, deps: Deps) -> dict[str, Any]:
    """The body as an object, held to the input policy (policy.py): 400 for a body that is
    not UTF-8, holds a lone surrogate or a control character in a field name; control
    characters in values are taken out (``intake.raw_payload`` keeps the body as sent)."""
    body = intake.body
    if intake.is_json:
        payload = _parse_json(intake, deps)
    else:
        try:
            payload = mapping.parse_form(body)
        except mapping.FormError as exc:
            text = body.decode("utf-8", "replace")
            raise _invalid_body(intake, deps, text, _body_error(exc.code, exc.message)) from None
    if not policy.suspect(body, is_json=intake.is_json):
        return payload
    found = policy.inspect(payload)
    if found.errors:
        raise _invalid_body(intake, deps, payload, *found.errors)
    if found.cleaned:
        intake.raw_payload, payload = payload, found.payload
    return payload


def _parse_json(intake: Intake, deps: Deps) -> dict[str, Any]:
    body = intake.body
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        text = body.decode("utf-8", "replace")
        raise _invalid_body(intake, deps, text, policy.unreadable_json(body, exc)) from None
    if not isinstance(payload, dict):
        error = _body_error("invalid_type", "the body must be a JSON object")
        raise _invalid_body(intake, deps, payload, error)
    settings = deps.settings
    try:
        limits.check_json_shape(
            payload, max_depth=settings.json_max_depth, max_keys=settings.json_max_keys
        )
    except limits.JsonShapeError as exc:
        text = body.decode("utf-8", "replace")
        raise _invalid_body(intake, deps, text, _body_error(exc.code, exc.message)) from None
    return payload


def _body_key(payload: Any, field_path: str | None) -> str | None:
    if not field_path:
        return None
    try:
        value = mapping.resolve_path(payload, field_path)
    except (ValueError, TypeError):
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    text = str(value).strip()
    return text or None


async def idempotency(intake: Intake, payload: dict[str, Any], deps: Deps) -> uuid.UUID:
    """The request's id. A keyed request's id is derived from webhook and key, so a retry
    gets the first request's id (and is answered here as a duplicate, or refused when the
    body differs); an unkeyed byte-identical retry of an indeterminate 503 gets that
    request's id (indeterminate.py)."""
    config = intake.config
    key = auth.message_id(intake.request.headers) or _body_key(payload, config.idempotency_field)
    if key is not None and len(key) > MAX_IDEMPOTENCY_KEY:
        error = FieldError(
            field="idempotency_key",
            code="too_long",
            message=f"the idempotency key is longer than {MAX_IDEMPOTENCY_KEY} characters",
        )
        raise Answered(reject(intake, deps, 400, "invalid_idempotency_key", [error], payload))
    intake.key = key
    request_id = request_id_for(config.id, key)
    if key is None:
        found = await deps.indeterminate.lookup(deps.repo, config.id, intake.body_sha)
        return found or request_id
    await _answer_retry(intake, request_id, payload, deps)
    return request_id


async def _known(
    request_id: uuid.UUID, body_sha: str, deps: Deps
) -> tuple[str | None, dict[str, Any] | None]:
    """The body hash a request was accepted with (and its stored row), if it is known:
    from this process's memory, else from ``webhook_requests`` (lookups batched)."""
    recent = deps.recent.get(request_id)
    if recent is not None:
        return recent.body_sha256, None
    if deps.repo is None:
        return None, None
    try:
        row = await deps.lookup.get(request_id)
    except Exception as exc:
        # The processor dedupes on the request id too: go on rather than refuse.
        log.warning("duplicate_check_failed", error=type(exc).__name__)
        return None, None
    if row is None:
        return None, None
    return row.get("body_sha256") or body_sha, row


async def _answer_retry(
    intake: Intake, request_id: uuid.UUID, payload: dict[str, Any], deps: Deps
) -> None:
    """Answer a keyed request seen before: 409 for another body, else a duplicate."""
    known_sha, row = await _known(request_id, intake.body_sha, deps)
    if known_sha is None:
        return
    if not hmac.compare_digest(known_sha, intake.body_sha):
        error = FieldError(
            field="idempotency_key",
            code="idempotency_conflict",
            message="this idempotency key was used with a different body",
        )
        raise Answered(reject(intake, deps, 409, "idempotency_conflict", [error], payload))
    REJECTIONS.labels("duplicate").inc()
    raise Answered(await answer_duplicate(intake, request_id, row, deps))


def map_and_validate(intake: Intake, payload: dict[str, Any], deps: Deps) -> MappedLead:
    config = intake.config
    assert config.mapping is not None  # check_usable
    # Values with control characters: mapped as sent, refused in identity fields (policy.py).
    raw = intake.raw_payload
    source, controls = (payload, False) if raw is None else (raw, True)
    mapped = map_fields(
        source, config.mapping, default_region=config.default_region, controls=controls
    )
    # Each half timed before a rejection, which carries the step timings.
    intake.timings.mapped = time.perf_counter()
    lead, errors = validate_mapped(mapped)
    intake.timings.validated = time.perf_counter()
    if errors:
        raise Answered(reject(intake, deps, 400, "validation", errors, payload))
    return lead


# --- enqueue and answer ---------------------------------------------------------------


async def enqueue(
    intake: Intake, request_id: uuid.UUID, payload: dict[str, Any], lead: MappedLead, deps: Deps
) -> None:
    """Publish ``LeadReceived`` to the raw topic, keyed by workspace, and wait for acks=all
    (``enqueue_timeout_s``). The enqueue's own time cannot be in the message it sends: it
    is the Kafka produce latency (metrics) and the archive's timestamps."""
    config, request, settings = intake.config, intake.request, deps.settings
    value = lead_received_json(
        request_id=request_id,
        workspace_id=config.workspace_id,
        webhook_id=config.id,
        received_at=intake.received_at,
        idempotency_key=intake.key,
        body_sha256=intake.body_sha,
        request={
            "method": request.method,
            "path": request.path,
            "headers": intake.headers,
            "content_type": intake.content_type,
            "payload": payload,
        },
        lead=lead,
        steps=intake.timings.steps(),
        awaited=bool(intake.wait_s),
    )
    try:
        await deps.kafka.publish(
            topics.RAW,
            value,
            key=str(config.workspace_id),
            bound_s=settings.enqueue_timeout_s,
        )
    except KafkaDown:
        # Known down before sending: nothing was handed to the producer.
        raise _refused(
            "kafka_unavailable",
            503,
            "unavailable",
            "the lead could not be queued; nothing was accepted, retry later",
            headers=_retry_after(settings),
        ) from None
    except KafkaUnavailable:
        raise Answered(_indeterminate(intake, request_id, deps)) from None
    deps.recent.add(request_id, AcceptedRequest(config.id, intake.body_sha, intake.received_at))


def _indeterminate(intake: Intake, request_id: uuid.UUID, deps: Deps) -> web.Response:
    """Not acknowledged in time, but the producer may still deliver it: a retry carries the
    same idempotency key, or (unkeyed) the same bytes, and maps to this request id, so it
    never makes a second lead."""
    log.warning("enqueue_failed", request_id=str(request_id))
    if intake.key is None:
        webhook_id, body_sha = intake.config.id, intake.body_sha
        deps.indeterminate.remember(webhook_id, body_sha, request_id)
        deps.background.spawn(
            deps.indeterminate.record(deps.repo, webhook_id, body_sha, request_id)
        )
    return refusal(
        "kafka_unavailable",
        503,
        "unavailable",
        "the lead was not confirmed queued; retry later with the same body "
        "(or the same idempotency key): a retry never makes a second lead",
        headers=_retry_after(deps.settings),
    )


async def answer(
    intake: Intake, request_id: uuid.UUID, waiter: Waiter | None, deps: Deps
) -> web.Response:
    """202 accepted; with ``Prefer: wait`` (``waiter``), the outcome if it comes in time."""
    webhook_id = intake.config.id
    if waiter is None:
        return accepted_response(deps.settings, webhook_id, request_id)
    accepted = Accepted(
        success=True,
        request_id=request_id,
        webhook_id=webhook_id,
        status="accepted",
        status_url=status_url(deps.settings, webhook_id, request_id),
    )
    return await wait_for_outcome(
        deps, webhook_id, request_id, waiter, intake.wait_s, accepted, duplicate=False
    )
