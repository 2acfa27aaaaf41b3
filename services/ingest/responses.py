"""Building the gateway's answers from the body models (:mod:`services.ingest.bodies`).

``json_response`` writes a model (``exclude_unset``: see bodies.py); ``accepted_response``
the 202 of an accepted lead, the most common answer, as the same bytes its model would
give, put together from parts cached per webhook; ``error_response``
and ``refusal`` the error body of a refusal (the bytes of a refusal are cached: under a
flood of 429s or 401s they are the same few bodies); ``outcome_body`` and
``status_summary`` turn a stored ``webhook_requests`` row into what a waiting client or
the status endpoint sees (ids, codes and timings: never personal data).
"""

from __future__ import annotations

import functools
import uuid
from typing import Any

import orjson
from aiohttp import web

from services.ingest.bodies import (
    Body,
    Error,
    ErrorSummary,
    Failed,
    FailedSummary,
    Processed,
    ProcessedSummary,
    RejectedSummary,
)
from services.ingest.metrics import REJECTIONS
from services.ingest.settings import IngestSettings
from shared.events import ErrorInfo, FieldError

JSON = "application/json"


def json_response(
    body: Body, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=body.model_dump_json(exclude_unset=True).encode(),
        status=status,
        content_type=JSON,
        headers=headers,
    )


@functools.lru_cache(maxsize=512)
def _error_bytes(field_name: str, code: str, message: str, unknown: bool) -> bytes:
    errors = [FieldError(field=field_name, code=code, message=message)]
    if unknown:
        body = Error(success=False, errors=errors, status="unknown")
    else:
        body = Error(success=False, errors=errors)
    return body.model_dump_json(exclude_unset=True).encode()


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    field_name: str = "request",
    headers: dict[str, str] | None = None,
    unknown: bool = False,
) -> web.Response:
    """An :class:`~services.ingest.bodies.Error` body (``unknown``: with ``status: unknown``)."""
    return web.Response(
        body=_error_bytes(field_name, code, message, unknown),
        status=status,
        content_type=JSON,
        headers=headers,
    )


def refusal(reason: str, status: int, code: str, message: str, **kw: Any) -> web.Response:
    """A refusal that is not about a lead: counted by ``reason``, not recorded."""
    REJECTIONS.labels(reason).inc()
    return error_response(status, code, message, **kw)


def status_url(settings: IngestSettings, webhook_id: uuid.UUID, request_id: uuid.UUID) -> str:
    return f"{settings.public_url.rstrip('/')}/webhooks/{webhook_id}/requests/{request_id}"


@functools.lru_cache(maxsize=4096)
def _accepted_parts(public_url: str, webhook_id: uuid.UUID) -> tuple[bytes, bytes]:
    """What an :class:`Accepted` body of this webhook holds around its request id (twice)."""
    url = orjson.dumps(f"{public_url.rstrip('/')}/webhooks/{webhook_id}/requests/")[:-1]
    middle = f'","webhook_id":"{webhook_id}","status":"accepted","status_url":'.encode() + url
    return b'{"success":true,"request_id":"', middle


def accepted_response(
    settings: IngestSettings, webhook_id: uuid.UUID, request_id: uuid.UUID
) -> web.Response:
    """202 with the :class:`Accepted` body (byte for byte what ``json_response`` would
    write: tests/unit/test_ingest_responses.py), without building the model."""
    head, middle = _accepted_parts(settings.public_url, webhook_id)
    rid = str(request_id).encode()
    return web.Response(
        body=b"".join((head, rid, middle, rid, b'"}')), status=202, content_type=JSON
    )


def _processing_time(result: dict[str, Any]) -> str | None:
    duration = (result.get("processing") or {}).get("duration_ms")
    return f"{round(duration)}ms" if isinstance(duration, (int, float)) else None


def _message(is_new: bool, match_type: Any) -> str:
    return "Contact created" if is_new else f"Contact updated via {match_type} match"


def _processed(row: dict[str, Any], result: dict[str, Any]) -> bool:
    return bool(row["status"] == "processed" or result.get("status") == "processed")


def outcome_body(
    row: dict[str, Any], *, webhook_id: uuid.UUID, request_id: uuid.UUID, duplicate: bool
) -> tuple[int, Processed | Failed]:
    """The synchronous answer for a stored outcome (the seed's 200 body, or 422)."""
    result = row.get("result") or {}
    status = row["status"]
    if _processed(row, result):
        is_new = bool(result.get("is_new_contact"))
        match_type = result.get("match_type")
        return 200, Processed(
            success=True,
            message=_message(is_new, match_type),
            contact_id=(result.get("contact") or {}).get("id"),
            webhook_id=webhook_id,
            rule_applied=bool(result.get("rule_applied")),
            match_type=match_type,
            is_new_contact=is_new,
            processing_time=_processing_time(result),
            request_id=request_id,
            status="duplicate" if duplicate else "processed",
        )
    error = result.get("error") or row.get("error") or {}
    # Field errors only when the outcome has some (absent, not empty, otherwise).
    errors = {"errors": result["errors"]} if result.get("errors") else {}
    return 422, Failed(
        success=False,
        request_id=request_id,
        webhook_id=webhook_id,
        status="duplicate" if duplicate else status,
        original_status=status,
        error=ErrorInfo(type=error.get("type", status), message=error.get("message", "")),
        **errors,
    )


def status_summary(row: dict[str, Any]) -> ProcessedSummary | RejectedSummary | FailedSummary:
    """What the status endpoint shows of a stored result: ids, codes and timings, no
    personal data (the request id of a keyed request can be derived by whoever knows
    the key, so the status answer must not be a way to read a lead back)."""
    result = row.get("result") or {}
    status = row["status"]
    if _processed(row, result):
        contact = result.get("contact") or {}
        is_new = bool(result.get("is_new_contact"))
        return ProcessedSummary(
            contact_id=contact.get("id"),
            lead_id=result.get("lead_id"),
            action=result.get("action"),
            match_type=result.get("match_type"),
            is_new_contact=is_new,
            rule_applied=bool(result.get("rule_applied")),
            board_id=contact.get("board_id"),
            processing_time=_processing_time(result),
            message=_message(is_new, result.get("match_type")),
        )
    if status == "rejected" or result.get("status") == "rejected":
        return RejectedSummary(
            status_code=result.get("status_code"),
            reason=result.get("reason"),
            errors=result.get("errors") or [],
        )
    error = result.get("error") or row.get("error") or {}
    if not error:
        return FailedSummary()
    return FailedSummary(error=ErrorSummary(type=error.get("type"), message=error.get("message")))
