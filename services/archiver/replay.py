"""Replaying archived requests through the current pipeline.

Each archived request becomes a **new** request (a new ``LeadReceived`` on the raw
topic) whose ``replay_of`` is the original request id, with its payload mapped and
validated again by the webhook's *current* mapping. A payload the current mapping rejects
is not published to the raw topic; it becomes a ``LeadRejected`` outcome (so it is archived
and counted like any rejection) and is counted as rejected in the summary.

Identity, so that replaying twice never creates twice:

- the new request's idempotency key is ``replay:<original>:<mapping fingerprint>`` and
  its request id is the gateway's own derivation from it
  (:func:`shared.events.request_id_for`). Replaying the same request again with the same
  mapping yields the same request id, which the processor (leads.request_id, and the
  (webhook, idempotency key) index) and the archive (deterministic keys) absorb. After
  the mapping changes again, a replay is a new request, as it should be: it is a repair.
- the original is the root of a replay chain: replaying a replay links to (and keys on)
  the first request, so a window holding both a request and its replay replays it once.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import orjson

from services.archiver.records import clean_headers
from services.archiver.search import ArchivedEntry
from shared import topics
from shared.events import (
    FieldError,
    LeadReceived,
    LeadRejected,
    MappedLead,
    Processing,
    RawRequest,
    outcome_event_id,
    request_id_for,
)
from shared.kafka import Publisher

# payload -> (mapped lead, validation errors); the webhook's current mapping, compiled.
Mapper = Callable[[Any], tuple[MappedLead, list[FieldError]]]

REPLAY_SOURCE = "replay"
REJECT_STATUS_CODE = 422
REJECT_REASON = "validation_failed"


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """What a replay needs of a webhook: its identity, state and *current* mapping."""

    id: uuid.UUID
    workspace_id: uuid.UUID
    name: str
    workspace_name: str
    status: str
    workspace_status: str
    mapping: Any
    default_region: str


def mapping_fingerprint(mapping: Any, default_region: str) -> str:
    """A short stable digest of the mapping (and region) a replay was made with."""
    blob = orjson.dumps({"mapping": mapping, "region": default_region}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(blob).hexdigest()[:16]


def compile_mapper(webhook: WebhookConfig) -> Mapper:
    """The webhook's current mapping as a :data:`Mapper` (shared.mapping does the work)."""
    from shared import mapping as engine

    stored = webhook.mapping
    if isinstance(stored, (str, bytes)):  # a connection without the jsonb codec
        stored = orjson.loads(stored)
    compiled = engine.compile_mapping(engine.parse_mapping(stored))
    region = webhook.default_region

    def apply(payload: Any) -> tuple[MappedLead, list[FieldError]]:
        lead, errors = engine.map_and_validate(payload, compiled, default_region=region)
        return lead, list(errors)

    return apply


@dataclass(frozen=True, slots=True)
class Planned:
    """What replaying one archived request means now."""

    original: ArchivedEntry
    kind: Literal["replay", "rejected", "skipped"]
    reason: str | None = None
    lead: MappedLead | None = None
    errors: list[FieldError] = field(default_factory=list)
    event: LeadReceived | LeadRejected | None = None

    @property
    def request_id(self) -> uuid.UUID | None:
        return self.event.request_id if self.event is not None else None

    def describe(self) -> dict[str, Any]:
        """Per request: what the archive recorded next to what the current mapping makes."""
        record = self.original.record or {}
        result = record.get("result") or {}
        archived_lead = result.get("lead")
        archived_errors = result.get("errors") or []
        now_lead = self.lead.model_dump(mode="json") if self.lead is not None else None
        return {
            "request_id": str(self.original.request_id),
            "received_at": self.original.received_at.isoformat(),
            "archived": {
                "status": self.original.status,
                "lead": archived_lead,
                "errors": archived_errors,
            },
            "current": {
                "outcome": self.kind,
                "reason": self.reason,
                "lead": now_lead,
                "errors": [e.model_dump(mode="json") for e in self.errors],
            },
            "changed_fields": changed_fields(archived_lead, now_lead),
            "new_request_id": str(self.request_id) if self.request_id else None,
        }


def changed_fields(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[str]:
    """Lead fields (custom fields as ``custom.<name>``) whose value differs."""
    if before is None or after is None:
        return []
    names: set[str] = (set(before) | set(after)) - {"custom"}
    changed = {n for n in names if before.get(n) != after.get(n)}
    b_custom = before.get("custom") or {}
    a_custom = after.get("custom") or {}
    changed |= {
        f"custom.{n}" for n in set(b_custom) | set(a_custom) if b_custom.get(n) != a_custom.get(n)
    }
    return sorted(changed)


def plan(
    entries: list[ArchivedEntry],
    *,
    webhook: WebhookConfig,
    mapper: Mapper,
    fingerprint: str,
    now: datetime | None = None,
) -> list[Planned]:
    """Decide, per archived request (with its record loaded), what to publish."""
    now = now or datetime.now(UTC)
    seen: set[uuid.UUID] = set()
    out: list[Planned] = []
    for entry in entries:
        item = plan_one(entry, webhook=webhook, mapper=mapper, fingerprint=fingerprint, now=now)
        new_id = item.request_id
        if new_id is not None:
            if new_id in seen:
                item = Planned(
                    original=entry,
                    kind="skipped",
                    reason="already replayed in this run (a replay of the same original)",
                )
            else:
                seen.add(new_id)
        out.append(item)
    return out


def plan_one(
    entry: ArchivedEntry,
    *,
    webhook: WebhookConfig,
    mapper: Mapper,
    fingerprint: str,
    now: datetime,
) -> Planned:
    record = entry.record
    if record is None:
        return Planned(original=entry, kind="skipped", reason="record could not be read")
    request = record.get("request")
    if not isinstance(request, dict):
        return Planned(original=entry, kind="skipped", reason="record has no request")
    payload = request.get("payload")
    if not isinstance(payload, dict):
        return Planned(original=entry, kind="skipped", reason="payload is not a JSON object")

    root = entry.replay_of or entry.request_id
    key = f"replay:{root}:{fingerprint}"
    new_id = request_id_for(webhook.id, key)
    started = time.perf_counter()
    try:
        lead, errors = mapper(payload)
    except Exception as exc:  # a payload the mapping engine cannot handle at all
        return Planned(
            original=entry, kind="skipped", reason=f"mapping failed: {type(exc).__name__}"
        )
    elapsed_ms = round((time.perf_counter() - started) * 1000, 3)
    raw = RawRequest(
        method=str(request.get("method") or "POST"),
        path=str(request.get("path") or f"/webhooks/{webhook.id}"),
        headers=clean_headers({str(k): str(v) for k, v in (request.get("headers") or {}).items()}),
        content_type=str(request.get("content_type") or "application/json"),
        payload=payload,
    )
    if errors:
        rejected = LeadRejected(
            event_id=outcome_event_id(new_id),
            request_id=new_id,
            workspace_id=webhook.workspace_id,
            webhook_id=webhook.id,
            occurred_at=now,
            received_at=now,
            request=raw,
            processing=Processing(
                start=now,
                end=now + timedelta(milliseconds=elapsed_ms),
                duration_ms=elapsed_ms,
                steps={"field_mapping": elapsed_ms},
            ),
            replay_of=root,
            status_code=REJECT_STATUS_CODE,
            reason=REJECT_REASON,
            errors=errors,
        )
        return Planned(original=entry, kind="rejected", lead=lead, errors=errors, event=rejected)
    received = LeadReceived(
        request_id=new_id,
        workspace_id=webhook.workspace_id,
        webhook_id=webhook.id,
        received_at=now,
        idempotency_key=key,
        body_sha256=hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest(),
        request=raw,
        lead=lead,
        steps={"field_mapping": elapsed_ms},
        replay_of=root,
        source=REPLAY_SOURCE,
    )
    return Planned(original=entry, kind="replay", lead=lead, event=received)


@dataclass
class Summary:
    found: int = 0
    replayed: int = 0
    rejected: int = 0
    skipped: int = 0

    def count(self, items: list[Planned]) -> None:
        self.found = len(items)
        self.replayed = sum(1 for i in items if i.kind == "replay")
        self.rejected = sum(1 for i in items if i.kind == "rejected")
        self.skipped = sum(1 for i in items if i.kind == "skipped")

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


async def publish(
    items: Sequence[Planned],
    *,
    publisher: Publisher,
    chunk: int = 100,
    on_published: Callable[[int], None] | None = None,
) -> None:
    """Publish the planned events (raw topic for replays, outcome topic for rejections),
    keyed by workspace like the gateway does, each chunk acknowledged (acks=all)."""
    for start in range(0, len(items), chunk):
        part = items[start : start + chunk]
        raw = [(str(i.event.workspace_id), i.event) for i in part if i.kind == "replay" and i.event]
        rejected = [
            (str(i.event.workspace_id), i.event) for i in part if i.kind == "rejected" and i.event
        ]
        if raw:
            await publisher.publish_many(topics.RAW, raw)
        if rejected:
            await publisher.publish_many(topics.OUTCOMES, rejected)
        if on_published:
            on_published(len(part))
