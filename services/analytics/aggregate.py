"""Pure: a batch of outcome events -> the increments it adds, per webhook and minute.

No I/O here; :mod:`repository` applies the increments in one transaction, for the events
whose ids were not counted before (the dedupe gate).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from services.analytics.sketch import Bins, LatencySketch
from services.analytics.vendors import Accepted, VendorCounts
from shared.events import LeadFailed, LeadProcessed, LeadRejected, Outcome
from shared.logs import scrub

MAX_NAME = 100
MAX_MESSAGE = 300


def minute_of(ts: datetime) -> datetime:
    """The UTC minute a timestamp falls in (naive timestamps are taken as UTC)."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).replace(second=0, microsecond=0)


@dataclass
class Counts:
    accuracy: float
    total: int = 0
    processed: int = 0
    failed: int = 0
    rejected: int = 0
    duration_sum: float = 0.0
    sketch: LatencySketch = field(init=False)

    def __post_init__(self) -> None:
        self.sketch = LatencySketch(self.accuracy)

    def add(self, event: Outcome) -> None:
        self.total += 1
        if isinstance(event, LeadProcessed):
            self.processed += 1
        elif isinstance(event, LeadFailed):
            self.failed += 1
        else:
            self.rejected += 1
        duration = max(float(event.processing.duration_ms), 0.0)
        self.duration_sum += duration
        self.sketch.add(duration)

    def row(self) -> tuple[int, int, int, int, float, Bins]:
        """(total, processed, failed, rejected, duration_sum, sketch bins): the increments
        as the aggregate tables store them."""
        return (
            self.total,
            self.processed,
            self.failed,
            self.rejected,
            self.duration_sum,
            self.sketch.to_bins(),
        )


@dataclass(frozen=True)
class RecentError:
    event_id: uuid.UUID
    request_id: uuid.UUID
    occurred_at: datetime
    status: str
    error_type: str
    message: str


@dataclass
class WebhookDelta:
    webhook_id: uuid.UUID
    workspace_id: uuid.UUID
    accuracy: float
    counts: Counts = field(init=False)
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    minutes: dict[datetime, Counts] = field(default_factory=dict)
    # (dimension, name) -> [count, sum_ms]
    breakdowns: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    errors: list[RecentError] = field(default_factory=list)
    # The vendor scorecard's increments per minute, and the accepted leads.
    vendor: dict[datetime, VendorCounts] = field(default_factory=dict)
    accepted: list[Accepted] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.counts = Counts(self.accuracy)

    def _bump(self, dimension: str, name: str, ms: float = 0.0) -> None:
        entry = self.breakdowns.setdefault((dimension, name[:MAX_NAME]), [0, 0.0])
        entry[0] += 1
        entry[1] += ms

    def add(self, event: Outcome) -> None:
        self.counts.add(event)
        received = event.received_at
        if received.tzinfo is None:
            received = received.replace(tzinfo=UTC)
        if self.first_seen is None or received < self.first_seen:
            self.first_seen = received
        if self.last_seen is None or received > self.last_seen:
            self.last_seen = received
        minute = minute_of(received)
        bucket = self.minutes.get(minute)
        if bucket is None:
            bucket = self.minutes[minute] = Counts(self.accuracy)
        bucket.add(event)
        self.vendor.setdefault(minute, VendorCounts()).add(event)
        for step, ms in event.processing.steps.items():
            self._bump("step", step, max(float(ms), 0.0))
        if isinstance(event, LeadProcessed):
            self._bump("match_type", event.match_type)
            self.accepted.append(Accepted(event.event_id, received))
        else:
            error = recent_error(event)
            self._bump("error_type", error.error_type)
            self.errors.append(error)


def recent_error(event: LeadFailed | LeadRejected) -> RecentError:
    """A failed or rejected lead as the recent-errors list shows it (bounded, scrubbed)."""
    if isinstance(event, LeadFailed):
        status, error_type, message = "failed", event.error.type, event.error.message
    else:
        detail = "; ".join(f"{e.field}: {e.code}" for e in event.errors)
        status, error_type = "rejected", event.reason
        message = f"HTTP {event.status_code}" + (f": {detail}" if detail else "")
    return RecentError(
        event_id=event.event_id,
        request_id=event.request_id,
        occurred_at=event.occurred_at,
        status=status,
        error_type=error_type[:MAX_NAME],
        message=scrub(message)[:MAX_MESSAGE],
    )


def aggregate(events: Iterable[Outcome], *, accuracy: float) -> dict[uuid.UUID, WebhookDelta]:
    """Increments per webhook (events must already be deduplicated by event id)."""
    out: dict[uuid.UUID, WebhookDelta] = {}
    for event in events:
        delta = out.get(event.webhook_id)
        if delta is None:
            delta = out[event.webhook_id] = WebhookDelta(
                event.webhook_id, event.workspace_id, accuracy
            )
        delta.add(event)
    return out
