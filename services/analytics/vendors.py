"""Pure: vendor scorecards. Which outcome a lead is for its vendor (the webhook it came
through), the increments a batch adds per webhook and minute, and the figures of a
window (received, accepted, rejected by reason, failed, acceptance and new-contact rates,
speed-to-lead).

No I/O here: :mod:`~services.analytics.vendor_repository` stores the increments in the
counting transaction and reads the windows back.

Rejection reasons (``LeadRejected.reason``) are folded into a fixed set, so the API's
fields and the Prometheus labels stay bounded whatever a producer writes:

- ``validation``: the gateway could not use the request as sent: ``validation`` (a
  mapped field failed its checks), ``invalid_body`` (not a readable JSON or form body),
  ``invalid_idempotency_key``;
- ``not_accepted``: the webhook's acceptance criteria refused it (gateway);
- ``duplicate_lead``: the same lead from the same webhook inside its duplicate window
  (processor);
- ``suppressed``: its phone or email is on the workspace's do-not-contact list
  (processor);
- ``other``: anything else (e.g. ``idempotency_conflict``: a key re-used for another body).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.analytics.report import percent
from services.analytics.schemas import (
    RejectedByReason,
    SpeedToLead,
    VendorWindow,
    VendorWindows,
)
from shared.events import LeadFailed, LeadProcessed, Outcome

REASONS = ("validation", "not_accepted", "duplicate_lead", "suppressed", "other")
_REASON_OF = {
    "validation": "validation",
    "invalid_body": "validation",
    "invalid_idempotency_key": "validation",
    "not_accepted": "not_accepted",
    "duplicate_lead": "duplicate_lead",
    "suppressed": "suppressed",
}
# The scorecard's windows: (field of VendorWindows, minutes). Each is a sum of whole
# minutes ending with the current one, as the workspace figures' last 24 h.
WINDOWS = (("last_24h", 24 * 60), ("last_7d", 7 * 24 * 60), ("last_30d", 30 * 24 * 60))
# The vendor tables keep a day more than the longest window.
RETENTION_DAYS = 31
# Columns of analytics_vendor_minutes, in the order VendorCounts.row() gives them.
COLUMNS = (
    "received",
    "accepted",
    "new_contacts",
    "failed",
    *(f"rejected_{r}" for r in REASONS),
)


def vendor_reason(reason: str) -> str:
    """A rejection's reason as the scorecard counts it (one of :data:`REASONS`)."""
    return _REASON_OF.get(reason, "other")


@dataclass
class VendorCounts:
    """One webhook's increments in one minute."""

    received: int = 0
    accepted: int = 0
    new_contacts: int = 0
    failed: int = 0
    rejected: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))

    def add(self, event: Outcome) -> None:
        self.received += 1
        if isinstance(event, LeadProcessed):
            self.accepted += 1
            self.new_contacts += int(event.is_new_contact)
        elif isinstance(event, LeadFailed):
            self.failed += 1
        else:
            self.rejected[vendor_reason(event.reason)] += 1

    def row(self) -> tuple[int, ...]:
        """The increments in :data:`COLUMNS` order."""
        return (
            self.received,
            self.accepted,
            self.new_contacts,
            self.failed,
            *(self.rejected[r] for r in REASONS),
        )


@dataclass(frozen=True)
class Accepted:
    """An accepted lead, for speed-to-lead (its event id is the notifier's send key)."""

    event_id: uuid.UUID
    received_at: datetime


@dataclass(frozen=True)
class VendorRows:
    """What a workspace's scorecards are made of, read in one snapshot."""

    # The workspace's configured webhooks and their names.
    names: dict[uuid.UUID, str | None]
    # webhook -> window name -> summed COLUMNS (webhooks with counts in the window only)
    sums: dict[uuid.UUID, dict[str, dict[str, Any]]]
    # webhook -> window name -> {notified, p50, p95} (seconds)
    speeds: dict[uuid.UUID, dict[str, dict[str, Any]]]


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(max(float(value), 0.0), 3)


def vendor_window(sums: Mapping[str, Any] | None, speed: Mapping[str, Any] | None) -> VendorWindow:
    """A window's figures from its summed columns and its speed-to-lead row (either may
    be missing: nothing in the window)."""
    n = {c: int((sums or {}).get(c) or 0) for c in COLUMNS}
    rejected = {r: n[f"rejected_{r}"] for r in REASONS}
    return VendorWindow(
        received=n["received"],
        accepted=n["accepted"],
        failed=n["failed"],
        rejected=sum(rejected.values()),
        rejected_by_reason=RejectedByReason(**rejected),
        new_contacts=n["new_contacts"],
        acceptance_rate=percent(n["accepted"], n["received"]),
        new_contact_rate=percent(n["new_contacts"], n["accepted"]),
        speed_to_lead=SpeedToLead(
            notified=int((speed or {}).get("notified") or 0),
            p50_seconds=_seconds((speed or {}).get("p50")),
            p95_seconds=_seconds((speed or {}).get("p95")),
        ),
    )


def vendor_windows(
    sums: Mapping[str, Mapping[str, Any]], speeds: Mapping[str, Mapping[str, Any]]
) -> VendorWindows:
    """Every window of one webhook (rows keyed by window name)."""
    return VendorWindows(
        **{name: vendor_window(sums.get(name), speeds.get(name)) for name, _ in WINDOWS}
    )
