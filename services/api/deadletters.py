"""Dead letters: what the consumers and the notifier gave up on, listed, shown, and sent
back once after a fix. Two front-ends call these: ``leadwire deadletter`` (every dead
letter, for operators) and the management API (``/v1/workspaces/{id}/deadletters``: those
naming the workspace). The topics and the once-only record are
:mod:`services.api.deadletter_store`'s.

- A listing shows ids, reason codes, sources and the event's ids, never the reason's text
  or the message (they may quote a lead's values); ``show`` gives one whole.
- ``workspace_id`` scopes every operation to the dead letters whose entry names that
  workspace: one naming another workspace, or none (garbage bytes), is not found, as one
  that does not exist. Unscoped (the CLI) sees all.
- A retry sends each dead letter back at most once (``deadletter_retries``); a dry run
  says what would go where and changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from services.api import deadletter_store as store
from services.api.errors import AdminError, Invalid, NotFound
from shared.kafka import KafkaUnavailable, Publisher
from shared.settings import CommonSettings

TOPICS = store.TOPICS
DeadLetter = store.DeadLetter
# One Postgres connection for the length of a block (the CLI's, or one from the API's pool).
Database = Callable[[], AbstractAsyncContextManager[asyncpg.Connection]]


@dataclass(frozen=True)
class Step:
    """Progress of one part of the work: its size once known, then what is done."""

    total: Callable[[int], None]
    advance: Callable[[int], None]


# label -> the step's callbacks (the CLI draws bars; the API reports nothing).
Progress = Callable[[str], Step]


def _ignore(_n: int) -> None:
    return None


def no_progress(_label: str) -> Step:
    return Step(_ignore, _ignore)


def topics_named(topic: str | None) -> tuple[str, ...]:
    """The dead-letter topics to read: ``topic``, or both when None."""
    if topic is None:
        return TOPICS
    if topic not in TOPICS:
        raise Invalid(f"topic {topic!r} is not one of {', '.join(TOPICS)}", field="topic")
    return (topic,)


def _names(letter: DeadLetter, workspace_id: uuid.UUID | None) -> bool:
    return workspace_id is None or letter.ids.get("workspace_id") == str(workspace_id)


async def gather(
    settings: CommonSettings,
    db: Database,
    names: Sequence[str],
    *,
    since: datetime,
    reason: str | None = None,
    workspace_id: uuid.UUID | None = None,
    progress: Progress = no_progress,
) -> list[DeadLetter]:
    """The dead letters of the topics ``names`` since ``since`` (of ``reason``, naming
    ``workspace_id``), oldest first per topic, with ``retried_at`` filled in."""
    found: list[DeadLetter] = []
    for name in names:
        step = progress(f"reading {name}")
        found += await store.read(
            settings, name, since=since, total=step.total, advance=step.advance
        )
    found = [
        d for d in found if _names(d, workspace_id) and (reason is None or d.reason_code == reason)
    ]
    async with db() as conn:
        await store.mark_retried(conn, settings, found)
    return found


def listing(
    found: Sequence[DeadLetter], *, names: Sequence[str], since: datetime
) -> dict[str, Any]:
    """What ``list`` answers: the dead letters' summaries, counted per reason."""
    by_reason: dict[str, int] = {}
    for d in found:
        by_reason[d.reason_code] = by_reason.get(d.reason_code, 0) + 1
    return {
        "topics": list(names),
        "since": since.isoformat(),
        "count": len(found),
        "by_reason": dict(sorted(by_reason.items())),
        "retried": sum(1 for d in found if d.retried_at),
        "deadletters": [d.summary() for d in found],
    }


async def get(
    settings: CommonSettings,
    db: Database,
    deadletter_id: str,
    *,
    workspace_id: uuid.UUID | None = None,
) -> DeadLetter:
    """One dead letter by its id (``<topic>:<partition>:<offset>``)."""
    topic, partition, offset = store.parse_id(deadletter_id)
    found = [
        d
        for d in await store.read(settings, topic, at=(partition, offset))
        if _names(d, workspace_id)
    ]
    if not found:
        raise NotFound(
            f"no dead letter {deadletter_id}",
            field="deadletter_id",
            hint="see `leadwire deadletter list` (old ones leave with the topic's retention)",
        )
    async with db() as conn:
        await store.mark_retried(conn, settings, found)
    return found[0]


def show(letter: DeadLetter) -> dict[str, Any]:
    """One dead letter whole: its reason's text, where it would go back to, its entry and
    the message it holds (decoded when JSON)."""
    return {
        **letter.summary(),
        "reason": letter.reason,
        "target": store.target_of(letter),
        "entry": {k: v for k, v in letter.entry.items() if k != "payload_b64"},
        "payload": store.payload_view(letter),
    }


async def retry(
    settings: CommonSettings,
    db: Database,
    letters: Sequence[DeadLetter],
    *,
    dry_run: bool,
    progress: Progress = no_progress,
) -> dict[str, Any]:
    """Send ``letters`` back, each at most once (a consumer's to its source topic, byte for
    byte; a notification's sends to the queue). Already sent back, or naming no source:
    skipped. ``dry_run``: only say what would be sent where."""
    retried: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    todo: list[DeadLetter] = []
    for d in letters:
        if d.retried_at is not None:
            skipped.append({"id": d.id, "why": f"sent back already at {d.retried_at.isoformat()}"})
        elif store.target_of(d) is None:
            skipped.append({"id": d.id, "why": "it names no source to go back to"})
        else:
            todo.append(d)
    if dry_run:
        retried = [{"id": d.id, "target": store.target_of(d)} for d in todo]
    elif todo:
        await _send_back(settings, db, todo, retried, skipped, progress("sending back"))
    return {
        "dry_run": dry_run,
        "considered": len(letters),
        "retried": retried,
        "skipped": skipped,
        "summary": {"retried": len(retried), "skipped": len(skipped)},
    }


async def _send_back(
    settings: CommonSettings,
    db: Database,
    todo: Sequence[DeadLetter],
    retried: list[dict[str, Any]],
    skipped: list[dict[str, Any]],
    step: Step,
) -> None:
    step.total(len(todo))
    publisher = Publisher(settings, client_id="leadwire-deadletter")
    try:
        await publisher.start()
        async with db() as conn:
            for d in todo:
                done = await store.send_back(conn, settings, publisher, d)
                if done is None:  # another retry got there first
                    skipped.append({"id": d.id, "why": "sent back already"})
                else:
                    retried.append(done)
                step.advance(1)
    except KafkaUnavailable as exc:
        raise AdminError(
            f"Kafka did not acknowledge a dead letter sent back: {exc}",
            code="kafka_unavailable",
            hint=f"{len(retried)} were sent back and recorded; ask again once Kafka is up "
            "(those are skipped)",
        ).with_status(503) from exc
    finally:
        await publisher.stop()
