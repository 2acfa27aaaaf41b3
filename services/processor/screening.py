"""What a lead buyer refuses before a lead is recorded: pure logic, no I/O.

- **Suppression** (do-not-contact, per workspace): a lead whose phone or email is on the
  workspace's list is rejected (``suppressed``), or, with the workspace's
  ``suppressed_mode`` set to ``flag``, processed with the ``suppressed`` flag (the
  notifier then sends no SMS about it). Entries are sha256 digests of normalized values
  (:mod:`shared.suppression`); the lead's phone and email are normalized by the mapping
  already, so their digests compare as they are.
- **Duplicate-lead window** (per webhook): with ``duplicate_window_s`` set, a lead whose
  key (``duplicate_key``: any of phone, email, CRM id; phone and email by default)
  matches a lead accepted *from the same webhook* received less than the window apart is
  rejected (``duplicate_lead``): not recorded, not routed, not notified, so the vendor is
  not paid for it. A rejected lead does not extend the window. The keys are recorded
  while the webhook has a window (a window counts the leads accepted since it was set;
  a webhook without one pays nothing for the feature). Contact dedupe across webhooks is
  unaffected.

The suppression check comes first: a suppressed lead is ``suppressed`` even when it is
also a duplicate.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.processor.dedupe import KeyType, identity_keys
from shared.events import MappedLead
from shared.suppression import digest

REJECT, FLAG = "reject", "flag"
DEFAULT_KEY: tuple[KeyType, ...] = ("phone", "email")
SUPPRESSIBLE: tuple[KeyType, ...] = ("phone", "email")


@dataclass(frozen=True)
class Screening:
    """A webhook's buyer settings, with its workspace's suppressed mode."""

    window_s: int | None = None
    key: tuple[KeyType, ...] = DEFAULT_KEY
    suppressed_mode: str = REJECT


#: (workspace id, kind, digest) of the suppression entries a batch's leads reach.
Suppressed = set[tuple[uuid.UUID, str, bytes]]
#: (webhook id, key type, digest) -> when the latest lead accepted with it was received.
Accepted = dict[tuple[uuid.UUID, str, bytes], datetime]


def window_text(seconds: int) -> str:
    """A window as a person writes it: 30d, 12h, 45m or 90s."""
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def lead_digests(lead: MappedLead) -> dict[KeyType, bytes]:
    """The sha256 of each identity key the lead carries."""
    return {kind: digest(value) for kind, value in identity_keys(lead).items()}


def suppressed_kinds(
    workspace_id: uuid.UUID, digests: dict[KeyType, bytes], suppressed: Suppressed
) -> list[str]:
    """Which of the lead's phone and email are on the workspace's suppression list."""
    return [
        kind
        for kind in SUPPRESSIBLE
        if kind in digests and (workspace_id, kind, digests[kind]) in suppressed
    ]


def duplicate_key(
    webhook_id: uuid.UUID,
    received_at: datetime,
    digests: dict[KeyType, bytes],
    screening: Screening,
    accepted: Accepted,
) -> str | None:
    """The key type by which the lead repeats one the webhook accepted inside its window;
    None when it does not (or the webhook has no window)."""
    if screening.window_s is None:
        return None
    window = timedelta(seconds=screening.window_s)
    for kind in screening.key:
        seen = accepted.get((webhook_id, kind, digests[kind])) if kind in digests else None
        if seen is not None and abs(received_at - seen) < window:
            return kind
    return None


def accept(
    webhook_id: uuid.UUID,
    received_at: datetime,
    digests: dict[KeyType, bytes],
    screening: Screening,
    accepted: Accepted,
) -> list[tuple[str, bytes]]:
    """Record an accepted lead's keys (those of the webhook's duplicate key) so later leads
    see it; returns the (key type, digest) pairs whose time moved (to store). A webhook
    without a window records nothing: the feature costs nothing where it is not used."""
    moved: list[tuple[str, bytes]] = []
    if screening.window_s is None:
        return moved
    for kind in screening.key:
        if kind not in digests:
            continue
        slot = (webhook_id, kind, digests[kind])
        if slot not in accepted or accepted[slot] < received_at:
            accepted[slot] = received_at
            moved.append((kind, digests[kind]))
    return moved
