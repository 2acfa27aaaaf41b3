"""The archive's log record, what the index knows of it, and the keys of the first
layout: pure functions, no I/O.

Records are stored in segments (:mod:`services.archiver.segments`). Archives written
before segments hold one object per request, at a key derived only from the request::

    <workspace_id>/<webhook_id>/<yyyy>/<mm>/<dd>/<request_id>.json   (date: received_at, UTC)

with a pointer object ``by-request/<request_id>.json`` naming it. They stay readable
(``archive show``, ``replay``) until ``leadwire archive compact`` rewrites them into
segments; :func:`record_key`, :func:`pointer_key` and :func:`parse_record_key` describe
that layout.
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson

from shared.events import LeadFailed, LeadProcessed, LeadRejected, Outcome
from shared.redact import is_secret_header

RECORD_VERSION = 1
_ZERO = timedelta(0)
POINTER_PREFIX = "by-request/"

_KEY = re.compile(
    r"^(?P<workspace>[0-9a-f-]{36})/(?P<webhook>[0-9a-f-]{36})/"
    r"(?P<y>\d{4})/(?P<m>\d{2})/(?P<d>\d{2})/(?P<request>[0-9a-f-]{36})\.json$"
)


@functools.lru_cache(maxsize=4096)
def _kept_name(name: str) -> str | None:
    """The name a header is archived under (lower-cased), or None for a header that
    carries a credential, a signature or a session (:func:`shared.redact.is_secret_header`:
    the gateway already dropped them, but the archive never holds one whoever produced
    the event). Cached: the same few names come with every request (and the cache is
    bounded whatever names a sender makes up)."""
    return None if is_secret_header(name) else name.lower()


def clean_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Lower-cased headers minus every credential, signature or session header (the
    shared list and name pattern of :mod:`shared.redact`)."""
    out: dict[str, str] = {}
    for name, value in headers.items():
        kept = _kept_name(name)
        if kept is not None:
            out[kept] = value
    return out


# --- keys ---------------------------------------------------------------------------


def day_prefix(workspace_id: uuid.UUID, webhook_id: uuid.UUID, day: date) -> str:
    return f"{workspace_id}/{webhook_id}/{day:%Y/%m/%d}/"


def record_key(
    workspace_id: uuid.UUID, webhook_id: uuid.UUID, received_at: datetime, request_id: uuid.UUID
) -> str:
    day = received_at.astimezone(UTC).date()
    return f"{day_prefix(workspace_id, webhook_id, day)}{request_id}.json"


def pointer_key(request_id: uuid.UUID) -> str:
    return f"{POINTER_PREFIX}{request_id}.json"


@dataclass(frozen=True, slots=True)
class RecordKey:
    workspace_id: uuid.UUID
    webhook_id: uuid.UUID
    day: date
    request_id: uuid.UUID


def parse_record_key(key: str) -> RecordKey | None:
    """The parts of a record key, or None for anything else (pointers, strangers)."""
    m = _KEY.match(key)
    if not m:
        return None
    try:
        return RecordKey(
            workspace_id=uuid.UUID(m["workspace"]),
            webhook_id=uuid.UUID(m["webhook"]),
            day=date(int(m["y"]), int(m["m"]), int(m["d"])),
            request_id=uuid.UUID(m["request"]),
        )
    except ValueError:
        return None


def days_between(since: datetime, until: datetime) -> Iterator[date]:
    """Every UTC day touched by [since, until], oldest first."""
    day = since.astimezone(UTC).date()
    last = until.astimezone(UTC).date()
    while day <= last:
        yield day
        day += timedelta(days=1)


def expired_day(day: date, *, now: datetime, older_than_days: int) -> bool:
    """True when the whole UTC day ended at least ``older_than_days`` days before now."""
    day_end = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
    return day_end <= now - timedelta(days=older_than_days)


# --- the record ---------------------------------------------------------------------


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _utc(moment: datetime) -> datetime:
    return moment if moment.utcoffset() == _ZERO else moment.astimezone(UTC)


# How a record is written: ids as UUID strings and times as ISO 8601 in UTC ("Z") are
# orjson's own encodings of uuid.UUID and datetime (in C, several times faster than
# str() and isoformat(), which made a tenth of the archiver's CPU per record).
_LINE = orjson.OPT_UTC_Z | orjson.OPT_APPEND_NEWLINE


def record_line(outcome: Outcome) -> bytes:
    """The archived log record of one finished request as one NDJSON line."""
    return orjson.dumps(_record(outcome), option=_LINE)


def build_record(outcome: Outcome) -> dict[str, Any]:
    """The archived log record of one finished request, as stored (JSON values)."""
    record: dict[str, Any] = orjson.loads(record_line(outcome))
    return record


def _record(outcome: Outcome) -> dict[str, Any]:
    """The record with ids and times as UUIDs and datetimes (see :data:`_LINE`)."""
    req = outcome.request
    proc = outcome.processing
    return {
        "log_id": outcome.request_id,
        "request_id": outcome.request_id,
        "webhook_id": outcome.webhook_id,
        "workspace_id": outcome.workspace_id,
        "timestamp": _utc(outcome.received_at),
        "status": outcome.status,
        "replay_of": outcome.replay_of,
        "request": {
            "method": req.method,
            "path": req.path,
            "content_type": req.content_type,
            "headers": clean_headers(req.headers),
            "payload": req.payload,
        },
        "processing": {
            "start_time": _ms(proc.start),
            "end_time": _ms(proc.end),
            "duration_ms": proc.duration_ms,
            "steps": dict(proc.steps),
        },
        "result": _result(outcome),
        "error": _error(outcome),
        "event_id": outcome.event_id,
        "occurred_at": _utc(outcome.occurred_at),
        "record_version": RECORD_VERSION,
    }


def _result(outcome: Outcome) -> dict[str, Any]:
    if isinstance(outcome, LeadProcessed):
        contact = outcome.contact
        return {
            "success": True,
            "status": "processed",
            "contact_id": contact.id,
            "action": outcome.action,
            "match_type": outcome.match_type,
            "is_new_contact": outcome.is_new_contact,
            "lead_id": outcome.lead_id,
            "board": (
                {"id": contact.board_id, "name": contact.board_name} if contact.board_id else None
            ),
            "rule_applied": outcome.rule_applied,
            "possible_duplicates": list(outcome.possible_duplicates),
            "lead": outcome.lead.model_dump(mode="json"),
        }
    if isinstance(outcome, LeadFailed):
        return {
            "success": False,
            "status": "failed",
            "lead": outcome.lead.model_dump(mode="json") if outcome.lead else None,
        }
    return {
        "success": False,
        "status": "rejected",
        "status_code": outcome.status_code,
        "reason": outcome.reason,
        "errors": [e.model_dump(mode="json") for e in outcome.errors],
    }


def _error(outcome: Outcome) -> dict[str, Any] | None:
    if isinstance(outcome, LeadFailed):
        return {"type": outcome.error.type, "message": outcome.error.message}
    if isinstance(outcome, LeadRejected):
        return {
            "type": "rejected",
            "message": outcome.reason,
            "status_code": outcome.status_code,
            "errors": [e.model_dump(mode="json") for e in outcome.errors],
        }
    return None


@dataclass(frozen=True, slots=True)
class RecordFacts:
    """What the index keeps of a record: enough to find and filter it without reading it."""

    request_id: uuid.UUID
    workspace_id: uuid.UUID
    webhook_id: uuid.UUID
    received_at: datetime
    status: str
    match_type: str | None
    error_type: str | None
    replay_of: uuid.UUID | None


def facts_of(outcome: Outcome) -> RecordFacts:
    """:func:`facts` of :func:`build_record` (outcome), read from the event itself (no
    round trip through strings: the archiver's hot path)."""
    error_type: str | None = None
    if isinstance(outcome, LeadFailed):
        error_type = _text(outcome.error.type) if outcome.error.type else None
    elif isinstance(outcome, LeadRejected):
        error_type = "rejected"
    return RecordFacts(
        request_id=outcome.request_id,
        workspace_id=outcome.workspace_id,
        webhook_id=outcome.webhook_id,
        received_at=outcome.received_at,
        status=outcome.status,
        match_type=outcome.match_type if isinstance(outcome, LeadProcessed) else None,
        error_type=error_type,
        replay_of=outcome.replay_of,
    )


def facts(record: Mapping[str, Any]) -> RecordFacts:
    """The index fields of a log record (as :func:`build_record` makes it, or as read back
    from an object of either layout). ``KeyError``/``ValueError`` for something else."""
    result = record.get("result") or {}
    error = record.get("error") or {}
    replay_of = record.get("replay_of")
    match_type = result.get("match_type") if isinstance(result, dict) else None
    error_type = error.get("type") if isinstance(error, dict) else None
    status = record.get("status") or (result.get("status") if isinstance(result, dict) else None)
    return RecordFacts(
        request_id=uuid.UUID(str(record["request_id"])),
        workspace_id=uuid.UUID(str(record["workspace_id"])),
        webhook_id=uuid.UUID(str(record["webhook_id"])),
        received_at=parse_time(str(record["timestamp"])),
        status=_text(status),
        match_type=_text(match_type) if match_type else None,
        error_type=_text(error_type) if error_type else None,
        replay_of=uuid.UUID(str(replay_of)) if replay_of else None,
    )


def _text(value: object) -> str:
    # Postgres text holds no NUL; the index must take whatever an event carried.
    return str(value).replace("\x00", "")


def parse_time(value: str, *, now: datetime | None = None) -> datetime:
    """An ISO date/time (naive = UTC), ``now``, or an age like ``90m``, ``24h``, ``7d``."""
    now = now or datetime.now(UTC)
    text = value.strip()
    if text.lower() == "now":
        return now
    m = re.fullmatch(r"(\d+)\s*([smhdw])", text.lower())
    if m:
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m[2]]
        return now - timedelta(seconds=int(m[1]) * unit)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(
            f"{value!r} is not a time: use an ISO date/time (2025-10-25, "
            "2025-10-25T23:00:00Z), 'now', or an age like 30m, 24h, 7d"
        ) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
