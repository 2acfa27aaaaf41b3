"""One POST on its way through the steps (:mod:`services.ingest.steps`).

- :class:`Answered`: a step answered the request (a refusal, or a retry's answer); the
  steps after it do not run.
- :class:`Timings`: when each step ended; the per-step times travel in the event.
- :class:`Intake`: an authenticated request to a known webhook, as the steps after
  authentication and the record of a rejection need it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web

from services.ingest.config import WebhookConfig


class Answered(Exception):
    """A step answered the request with ``response``."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


@dataclass(slots=True)
class Timings:
    """``time.perf_counter()`` when the request started and when each step ended."""

    started: float
    read: float = 0.0
    authenticated: float = 0.0
    parsed: float = 0.0
    checked: float = 0.0  # the duplicate check (idempotency)
    mapped: float = 0.0
    validated: float = 0.0

    def steps(self) -> dict[str, float]:
        """Milliseconds per step done, as the events carry them, each the time of what it
        names: ``receive`` reading the body, ``authentication``, ``parse`` the body (with
        the input policy and the webhook's rate limit), ``duplicate_check`` the idempotency
        key's lookup, ``field_mapping`` the entries applied, ``validation`` the checks of
        the mapped lead (phones, emails, lengths). A step that did not end is left out."""
        steps = {
            "receive": ms(self.read - self.started),
            "authentication": ms(self.authenticated - self.read),
        }
        marks = (
            ("parse", self.authenticated, self.parsed),
            ("duplicate_check", self.parsed, self.checked),
            ("field_mapping", self.checked, self.mapped),
            ("validation", self.mapped, self.validated),
        )
        for name, begun, ended in marks:
            if not ended:
                break
            steps[name] = ms(ended - begun)
        return steps


@dataclass(slots=True)
class Intake:
    """An authenticated POST to a known webhook."""

    request: web.Request
    config: WebhookConfig
    body: bytes
    is_json: bool
    received_at: datetime
    timings: Timings
    body_sha: str
    # The request's headers without secrets (what events and records may carry).
    headers: dict[str, str]
    # Seconds the client asked to wait for the outcome (``Prefer: wait=N``); 0: none.
    wait_s: float
    # The idempotency key, once found (a header or a field of the body).
    key: str | None = None
    # The parsed body as sent, when a value held control characters (the payload the
    # steps carry is without them; the mapping reads this one to refuse them in identity
    # fields). None when the body held none: the mapping need not look for them.
    raw_payload: dict[str, Any] | None = None

    @property
    def content_type(self) -> str:
        return self.request.headers.get("Content-Type", "")

    @property
    def webhook_id(self) -> uuid.UUID:
        return self.config.id
