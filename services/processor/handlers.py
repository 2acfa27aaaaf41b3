"""The raw-topic handler: a batch of received leads in, contacts, leads and outcomes out.

Order: commit the batch's transactions (:mod:`~services.processor.transaction`), then
publish the outcomes (:mod:`~services.processor.outcomes`), then (the runner) commit the
offsets. Any failure before the offsets are committed redelivers the batch, and the
stored requests make that redelivery create nothing new (see ``transaction.py``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from services.processor import metrics, outcomes
from services.processor.commit import InTransaction, commit_batch
from services.processor.decode import Incoming
from services.processor.outcomes import Finished
from services.processor.repository import Repository
from services.processor.settings import ProcessorSettings
from shared.events import utcnow
from shared.kafka import Message

#: Called with the batch's results after its transactions committed, before publishing.
AfterCommit = Callable[[list[Finished]], Awaitable[None] | None]
#: Publishes a batch's outcomes (``OutcomePublisher.publish``).
PublishOutcomes = Callable[[Sequence[Finished]], Awaitable[None]]


@dataclass(frozen=True)
class Hooks:
    """Fault injection for tests; production passes none."""

    # Runs when a batch stored something new, after its commit and before its outcomes
    # are published (a crash here is "between commit and publish").
    after_commit: AfterCommit | None = None
    # Runs inside every batch transaction after its locks are taken (a slow batch that
    # holds its locks while partitions move).
    in_transaction: InTransaction | None = None


async def handle_batch(
    messages: list[Message[Incoming]],
    *,
    repo: Repository,
    publish: PublishOutcomes,
    settings: ProcessorSettings,
    hooks: Hooks = Hooks(),
) -> None:
    """Process a batch: commit its effects and outcomes, publish the outcomes, and raise
    :class:`~shared.kafka.PoisonMessage` for a message that can never be written (the
    runner dead-letters it; the rest of the batch is done)."""
    started = time.perf_counter()
    metrics.RECEIVED.inc(len(messages))
    finished = await commit_batch(
        messages, repo=repo, settings=settings, in_transaction=hooks.in_transaction
    )
    committed = time.perf_counter()
    committed_at = utcnow()
    if hooks.after_commit is not None and any(f.fresh for f in finished):
        result = hooks.after_commit(finished)
        if result is not None:
            await result
    await publish(finished)
    published = time.perf_counter()
    outcomes.count(
        finished,
        started=started,
        committed=committed,
        published=published,
        committed_at=committed_at,
    )
    outcomes.raise_poison(finished)
