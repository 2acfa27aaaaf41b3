"""The raw-topic handler: a batch of received leads in, contacts, leads and outcomes out, in a
pipeline: batch N's outcomes are published while batch N+1's transactions run.

Without it the processor waits for Kafka's acknowledgement of a batch's outcomes (acks=all,
a few ms) before it reads the next batch, so under load every lead waits for the batches
before it twice: their transactions and their publishes. Here :class:`Pipeline` is the
runner's handler and a holding one (:class:`~shared.kafka.Holding`):

1. the batch's transactions commit (:func:`~services.processor.commit.commit_batch`);
2. the previous batch's outcomes must be acknowledged by now (it waits for them, bounded:
   past ``kafka_timeout_s`` it raises :class:`~shared.kafka.KafkaUnavailable` and the runner
   retries the batch after a backoff: its stored requests make that retry create nothing
   new). Outcomes stay in order: a batch's publish starts only once the one before is in;
3. the batch's outcomes are handed to a task that publishes them (retrying with backoff
   until Kafka acknowledges), and the handler returns;
4. until that task is done, :meth:`Pipeline.held` holds the batch's offsets back: the
   runner commits offsets only up to the batch's first ones. So an offset is still
   committed only once its outcome is acknowledged, and a crash anywhere redelivers what
   was not: the stored requests re-publish their outcomes byte for byte.

On a rebalance the batch's partitions are released (their new owner re-publishes from
the commit; consumers dedupe on the event id); on a stop :meth:`Pipeline.flush` waits for
the last publish, so its offsets are committed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from services.processor import metrics, outcomes
from services.processor.commit import InTransaction, commit_batch
from services.processor.decode import Incoming
from services.processor.outcomes import Finished
from services.processor.repository import Repository
from services.processor.settings import ProcessorSettings
from shared.events import utcnow
from shared.kafka import KafkaUnavailable, Message, first_offsets
from shared.logs import get_logger

log = get_logger(__name__)

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


#: Backoff between attempts to publish a batch's outcomes (seconds, doubling).
RETRY_FIRST_S = 0.1
RETRY_MAX_S = 5.0


@dataclass
class _Publishing:
    """One batch's outcomes on their way to Kafka, and the offsets they hold back."""

    task: asyncio.Task[None]
    # Per (logical topic, partition): the batch's lowest offset, committed up to, not past.
    low: dict[tuple[str, int], int]

    @property
    def acknowledged(self) -> bool:
        task = self.task
        return task.done() and not task.cancelled() and not task.exception()


class Pipeline:
    """The raw topic's handler: commit a batch, publish its outcomes in the background (see
    the module docstring)."""

    def __init__(
        self,
        *,
        repo: Repository,
        publish: PublishOutcomes,
        settings: ProcessorSettings,
        hooks: Hooks = Hooks(),
    ) -> None:
        self._repo = repo
        self._publish = publish
        self._settings = settings
        self._hooks = hooks
        self._timeout_s = settings.kafka_timeout_s
        self._inflight: _Publishing | None = None

    async def __call__(self, messages: list[Message[Incoming]]) -> None:
        started = time.perf_counter()
        metrics.RECEIVED.inc(len(messages))
        finished = await commit_batch(
            messages,
            repo=self._repo,
            settings=self._settings,
            in_transaction=self._hooks.in_transaction,
        )
        committed = time.perf_counter()
        committed_at = utcnow()
        await self._settle()
        after_commit = self._hooks.after_commit
        if after_commit is not None and any(f.fresh for f in finished):
            result = after_commit(finished)
            if result is not None:
                await result
        task = asyncio.create_task(
            self._publish_until_acknowledged(finished, started, committed, committed_at),
            name="processor-outcomes",
        )
        self._inflight = _Publishing(task=task, low=first_offsets(messages))
        outcomes.raise_poison(finished)

    async def _publish_until_acknowledged(
        self, finished: list[Finished], started: float, committed: float, committed_at: datetime
    ) -> None:
        delay = RETRY_FIRST_S
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._publish(finished)
                break
            except Exception as exc:  # Kafka away: the offsets stay held, try again
                log.warning("outcome_publish_retry", attempt=attempt, error=type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
        outcomes.count(
            finished,
            started=started,
            committed=committed,
            published=time.perf_counter(),
            committed_at=committed_at,
        )

    async def _settle(self) -> None:
        """Wait (bounded) until the batch before's outcomes are acknowledged."""
        publishing = self._inflight
        if publishing is None:
            return
        waited = time.perf_counter()
        try:
            await asyncio.wait_for(asyncio.shield(publishing.task), self._timeout_s)
        except TimeoutError:
            raise KafkaUnavailable(
                "the previous batch's outcomes are not acknowledged yet"
            ) from None
        finally:
            metrics.STEP_SECONDS.labels("outcome_wait").observe(time.perf_counter() - waited)
        self._inflight = None

    # --- Holding --------------------------------------------------------------------

    def held(self) -> Mapping[tuple[str, int], int]:
        publishing = self._inflight
        if publishing is None or publishing.acknowledged:
            return {}
        return publishing.low

    def release(self, partitions: set[tuple[str, int]]) -> None:
        publishing = self._inflight
        if publishing is not None:
            for key in partitions:
                publishing.low.pop(key, None)

    async def flush(self) -> None:
        """Stopping: wait for the last batch's outcomes (bounded); if Kafka does not take
        them, stop trying: their offsets stay uncommitted and are read again."""
        publishing = self._inflight
        try:
            await self._settle()
        except KafkaUnavailable:
            if publishing is not None:
                publishing.task.cancel()
            raise


async def handle_batch(
    messages: list[Message[Incoming]],
    *,
    repo: Repository,
    publish: PublishOutcomes,
    settings: ProcessorSettings,
    hooks: Hooks = Hooks(),
) -> None:
    """One batch through a pipeline of its own, outcomes acknowledged before it returns
    (tests and tools): raises :class:`~shared.kafka.PoisonMessage` for a message that can
    never be written, the rest of the batch done."""
    pipeline = Pipeline(repo=repo, publish=publish, settings=settings, hooks=hooks)
    try:
        await pipeline(messages)
    finally:
        await pipeline.flush()
