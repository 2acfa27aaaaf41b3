"""System-health alerts: a check that fails for longer than its bound raises ONE
:class:`~shared.events.SystemHealthAlert` (firing) and, when it passes again, one more
(resolved).

Every consumer service runs a :class:`HealthMonitor` on its skeleton
(:meth:`shared.service.Service.watch_health`): every ``health_check_interval_s`` it
evaluates the same readiness checks ``/readyz`` answers with (a partition stuck past
``stuck_after_s``, a poll loop that stopped turning, a database that does not answer),
plus checks of the service's own (the archiver's "archive behind"), and publishes on the
alerts topic when one crosses its bound.

What it promises:

- **One event per crossing.** The state (failing since when, firing or not) is kept per
  check; a check that keeps failing raises nothing more, one that fails shorter than its
  bound raises nothing at all. The event id is derived from the crossing
  (:func:`~shared.events.health_event_id`), so re-publishing it after Kafka was away
  carries the same id and the notifier sends it once.
- **Nothing is dropped while Kafka is away.** Events wait in the monitor (in order) and
  are re-published on the next tick.
- **No PII.** The detail holds what readiness says (topic, partition, offset, error
  class, seconds), never message content.

The state is the process's own: each replica reports for itself (``instance`` names it);
a restarted process starts with a clean slate and alerts again if the check still fails.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import orjson

from shared.events import SystemHealthAlert, health_event_id, utcnow
from shared.http import ReadyCheck, run_check
from shared.kafka.errors import KafkaUnavailable
from shared.logs import get_logger

log = get_logger(__name__)

PublishAlert = Callable[[SystemHealthAlert], Awaitable[object]]

# The detail an event carries is short: an operator reads it in an email subject's body.
MAX_DETAIL = 500


@dataclass
class CheckState:
    """One check's health: failing since when (monotonic and wall clock), firing or not."""

    failing_since: float | None = None
    failing_since_at: datetime | None = None
    firing: bool = False
    fired_at: datetime | None = None


@dataclass(frozen=True)
class Crossing:
    """A check crossed its bound one way or the other."""

    state: Literal["firing", "resolved"]
    since: datetime


def step(
    state: CheckState, ok: bool, *, after_s: float, mono: float, now: datetime
) -> Crossing | None:
    """Advance ``state`` by one evaluation of its check (pure: no I/O, no clock of its
    own); the crossing to report, or None."""
    if ok:
        state.failing_since = state.failing_since_at = None
        if state.firing:
            state.firing = False
            return Crossing("resolved", state.fired_at or now)
        return None
    if state.failing_since is None:
        # The crossing is identified by when this monitor first saw the check fail.
        state.failing_since, state.failing_since_at = mono, now
    if not state.firing and mono - state.failing_since >= after_s:
        state.firing = True
        state.fired_at = state.failing_since_at or now
        return Crossing("firing", state.fired_at)
    return None


def describe(details: dict[str, Any]) -> str:
    """A check's details as one short line (JSON, cut at :data:`MAX_DETAIL`)."""
    if not details:
        return ""
    text = orjson.dumps(details, default=str).decode()
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 1] + "…"


@dataclass
class _Watch:
    check: ReadyCheck
    after_s: float
    state: CheckState = field(default_factory=CheckState)


class HealthMonitor:
    """Evaluates a service's checks on :meth:`tick` and publishes their crossings."""

    def __init__(
        self,
        service: str,
        publish: PublishAlert,
        *,
        mono: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.service = service
        self._publish = publish
        self._mono = mono
        self._now = now
        self._watches: dict[str, _Watch] = {}
        self._unpublished: list[SystemHealthAlert] = []
        self.instance = f"{socket.gethostname()}:{os.getpid()}"

    def watch(self, name: str, check: ReadyCheck, *, after_s: float) -> None:
        """Alert when ``check`` has failed for ``after_s`` seconds (0: at once)."""
        self._watches[name] = _Watch(check, after_s)

    @property
    def firing(self) -> list[str]:
        return [name for name, w in self._watches.items() if w.state.firing]

    async def tick(self) -> list[SystemHealthAlert]:
        """Evaluate every check once; publish the new crossings (and any left unpublished
        by an earlier tick). Returns the crossings of this tick."""
        new: list[SystemHealthAlert] = []
        for name, w in self._watches.items():
            ok, details = await run_check(w.check)
            now = self._now()
            crossing = step(w.state, ok, after_s=w.after_s, mono=self._mono(), now=now)
            if crossing is None:
                continue
            detail = describe(details) if crossing.state == "firing" else _recovered(crossing, now)
            event = SystemHealthAlert(
                event_id=health_event_id(self.service, name, crossing.since, crossing.state),
                service=self.service,
                check=name,
                state=crossing.state,
                detail=detail,
                instance=self.instance,
                since=crossing.since,
                occurred_at=now,
            )
            log.warning(
                "system_health_alert", check=name, state=crossing.state, service=self.service
            )
            new.append(event)
        self._unpublished.extend(new)
        await self._flush()
        return new

    async def _flush(self) -> None:
        while self._unpublished:
            try:
                await self._publish(self._unpublished[0])
            except KafkaUnavailable:
                log.warning("system_health_alert_deferred", count=len(self._unpublished))
                return
            self._unpublished.pop(0)


def age_check(age_s: Callable[[], float], limit_s: float) -> ReadyCheck:
    """A check that fails while ``age_s()`` (how far behind some work is) exceeds
    ``limit_s``, e.g. the archiver's oldest outcome not archived yet."""

    def check() -> tuple[bool, dict[str, Any]]:
        age = age_s()
        return age <= limit_s, {"behind_s": round(age, 1), "limit_s": limit_s}

    return check


def _recovered(crossing: Crossing, now: datetime) -> str:
    lasted = max((now - crossing.since) / timedelta(seconds=1), 0.0)
    return f"passing again after {lasted:.0f} s"
