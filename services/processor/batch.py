"""The working state of one batch transaction: the rows it stages and what later
messages of the batch must see of earlier ones."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from services.processor import outcomes
from services.processor.decode import Incoming
from services.processor.dedupe import IdentityIndex
from services.processor.outcomes import Finished
from services.processor.repository import (
    BatchView,
    DuplicatePair,
    LeadKeyRow,
    LeadRow,
    RequestRow,
    StoredRequest,
)
from shared import done
from shared.events import LeadFailed, LeadProcessed, LeadReceived, LeadRejected
from shared.kafka import Message


@dataclass
class Batch:
    """The working state of one transaction."""

    view: BatchView
    index: IdentityIndex
    rows: list[RequestRow] = field(default_factory=list)
    leads: list[LeadRow] = field(default_factory=list)
    pairs: list[DuplicatePair] = field(default_factory=list)
    # The accepted leads' keys to store, one per (webhook, key type, digest).
    lead_keys: dict[tuple[uuid.UUID, str, bytes], LeadKeyRow] = field(default_factory=dict)
    rules_s: float = 0.0

    @property
    def stored(self) -> dict[uuid.UUID, StoredRequest]:
        return self.view.stored

    def store(
        self,
        message: Message[Incoming],
        event: LeadProcessed | LeadFailed | LeadRejected,
        *,
        status: str,
        idempotency_key: str | None,
        body_sha256: str | None,
        poison: str | None = None,
        match_type: str | None = None,
        possible_duplicates: int = 0,
    ) -> Finished:
        """Stage the request's row with its outcome; later copies in the batch see it."""
        text = outcomes.outcome_json(event)
        error = event.error.model_dump() if isinstance(event, LeadFailed) else None
        if isinstance(event, LeadRejected):
            why = event.errors[0].message if event.errors else f"status {event.status_code}"
            error = {"type": event.reason, "message": why}
        self.rows.append(
            RequestRow(
                request_id=event.request_id,
                workspace_id=event.workspace_id,
                webhook_id=event.webhook_id,
                status=status,
                received_at=event.received_at,
                processed_at=event.processing.end,
                idempotency_key=idempotency_key,
                body_sha256=body_sha256,
                replay_of=event.replay_of,
                result=text,
                steps=event.processing.steps,
                error=error,
                done_notice=(
                    done.encode(event.request_id, status, text, error)
                    if isinstance(message.value, LeadReceived) and message.value.awaited
                    else None
                ),
            )
        )
        payload = text.encode()
        self.stored[event.request_id] = StoredRequest(
            event.request_id, status, body_sha256, payload, error
        )
        return Finished(
            message=message,
            event_id=event.event_id,
            workspace_id=event.workspace_id,
            status=status,
            payload=payload,
            fresh=True,
            poison=poison,
            match_type=match_type,
            possible_duplicates=possible_duplicates,
            received_at=event.received_at,
        )
