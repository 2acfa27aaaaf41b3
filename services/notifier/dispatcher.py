"""The sending side: claim ready batches from the send ledger, send each as one message,
and record what happened.

- Batching (the queue semantics): a batch is at most ``notify_batch_size`` notifications
  to one recipient on one channel of one workspace, sent when full or when its oldest
  notification has waited ``notify_batch_window_s``. A batch of emails is one digest
  email; a batch of SMS is one text.
- Retries: a failed batch is retried at most ``notify_max_retries`` times, after
  ``base * 2**(attempt-1)`` seconds (+-10 % jitter); then its rows are marked 'dead' and a
  dead-letter entry (attempts, channel, event ids, last error, recipient for re-driving)
  is written to an outbox in the same transaction and published to the notifications
  dead-letter topic. A permanent error (5xx SMTP reply, 4xx from the SMS API, a channel
  not configured) is dead-lettered at once. A row is 'sent' or 'dead', never both.
- Never twice: a row leaves 'pending' only by a claim that counts the attempt first;
  'sent' rows are never claimed again. The one window left is a crash between the
  provider accepting a message and the row being marked 'sent' (milliseconds): such a
  row stays 'sending' until its lease runs out, and is then dead-lettered as
  'interrupted' (delivery unknown) instead of being re-sent: never sent twice, never
  silently dropped — an operator can re-drive it from the dead-letter entry.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg
import orjson

from services.notifier import metrics
from services.notifier.ledger import ClaimedSend
from services.notifier.render import Item
from services.notifier.repository import Repository
from services.notifier.senders import Sender, SendError
from services.notifier.settings import NotifierSettings
from shared import topics
from shared.events import utcnow
from shared.kafka import KafkaUnavailable, Publisher
from shared.logs import get_logger

log = get_logger(__name__)

T = TypeVar("T")

_DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


def retry_delay(attempts: int, base_s: float, *, jitter: float = 0.1) -> float:
    """Seconds before the next attempt, after ``attempts`` failed ones (1, 2, ...)."""
    delay = base_s * 2 ** max(attempts - 1, 0)
    return delay * random.uniform(1 - jitter, 1 + jitter)


async def report_queue_depth(repo: Repository) -> None:
    """Upkeep: the queue-depth gauge, per channel."""
    depth = await repo.queue_depth()
    for channel in ("email", "sms"):
        metrics.QUEUE_DEPTH.labels(channel).set(depth.get(channel, 0))


async def prune(repo: Repository, *, retention_s: float) -> None:
    """Upkeep: forget finished sends (and the contact details they hold) past retention."""
    pruned = await repo.prune(older_than_s=retention_s)
    if pruned:
        log.info("notification_sends_pruned", count=pruned)


def batches(rows: Sequence[ClaimedSend]) -> list[list[ClaimedSend]]:
    """Claimed rows grouped per (workspace, channel, recipient), in claim order."""
    groups: dict[tuple[uuid.UUID, str, str], list[ClaimedSend]] = {}
    for r in rows:
        groups.setdefault((r.workspace_id, r.channel, r.recipient), []).append(r)
    return list(groups.values())


class Dispatcher:
    def __init__(
        self,
        *,
        repo: Repository,
        senders: dict[str, Sender],
        publisher: Publisher,
        settings: NotifierSettings,
    ) -> None:
        self._repo = repo
        self._senders = senders
        self._publisher = publisher
        self._s = settings
        # Longer than any send can take (bounded by the send timeout) plus marking it.
        self._lease_s = settings.claim_lease_s
        self._recover_every_s = min(5.0, self._lease_s / 3)
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self._last_cycle = 0.0
        self._next_recover = 0.0

    # --- control ----------------------------------------------------------------------

    def wake(self) -> None:
        """New rows (or a retry came due): look for ready batches now."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def healthy(self) -> bool:
        return self._last_cycle > 0 and time.monotonic() - self._last_cycle < max(
            30.0, self._s.notify_poll_interval_s * 10
        )

    async def run(self) -> None:
        backoff = 0.2
        try:
            while not self._stopping.is_set():
                self._wake.clear()
                try:
                    await self.cycle()
                    self._last_cycle = time.monotonic()
                    backoff = 0.2
                except _DB_ERRORS as exc:
                    log.warning("dispatch_cycle_failed", error=type(exc).__name__)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                try:
                    await asyncio.wait_for(self._wake.wait(), self._s.notify_poll_interval_s)
                except TimeoutError:
                    pass
        finally:
            # Drain: every in-flight send is bounded by the send timeout; let them finish
            # and record their result, so a SIGTERM leaves nothing 'sending'.
            if self._inflight:
                await asyncio.gather(*self._inflight, return_exceptions=True)

    async def cycle(self) -> None:
        now = time.monotonic()
        if now >= self._next_recover:
            self._next_recover = now + self._recover_every_s
            entries = await self._repo.recover_interrupted(failed_at=utcnow())
            for entry in entries:
                metrics.dead_lettered(entry, "interrupted")
                log.warning(
                    "notification_interrupted",
                    channel=entry["channel"],
                    count=len(entry["send_ids"]),
                    deadletter_id=entry["deadletter_id"],
                )
        await self.publish_deadletters()
        free = self._s.notify_concurrency - len(self._inflight)
        if free > 0 and not self._stopping.is_set():
            claim_id = uuid.uuid4()
            rows = await self._repo.claim_batches(
                claim_id=claim_id,
                batch_size=self._s.notify_batch_size,
                window_s=self._s.notify_batch_window_s,
                lease_s=self._lease_s,
                max_batches=free,
            )
            for batch in batches(rows):
                task = asyncio.create_task(self._send_batch(claim_id, batch))
                self._inflight.add(task)
                task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("send_task_failed", error=type(task.exception()).__name__)
        self._wake.set()  # a slot is free; there may be more ready batches

    # --- one batch --------------------------------------------------------------------

    async def _send_batch(self, claim_id: uuid.UUID, rows: list[ClaimedSend]) -> None:
        channel, recipient = rows[0].channel, rows[0].recipient
        sender = self._senders.get(channel)
        items = [Item(summary=r.summary, kinds=r.kinds) for r in rows]
        event_ids = [str(r.event_id) for r in rows]
        try:
            if sender is None:
                raise SendError(
                    f"no sender for channel {channel}", code="no_sender", permanent=True
                )
            ref = await sender.send(recipient, items)
        except SendError as exc:
            await self._failed(claim_id, rows, exc)
            return
        except Exception as exc:  # a bug must not lose the batch: treat it as a failure
            log.exception("send_unexpected_error", channel=channel)
            await self._failed(claim_id, rows, SendError(f"{type(exc).__name__}", code="internal"))
            return
        marked = await self._db(
            lambda: self._repo.mark_sent([r.id for r in rows], claim_id=claim_id, provider_ref=ref)
        )
        metrics.MESSAGES.labels(channel).inc()
        metrics.SENT.labels(channel).inc(len(marked))
        for _id, event_at, sent_at in marked:
            metrics.DELAY.labels(channel).observe(max((sent_at - event_at).total_seconds(), 0.0))
        if len(marked) != len(rows):
            log.error("send_claim_lost", channel=channel, count=len(rows) - len(marked))
        log.info("notification_sent", channel=channel, count=len(rows), event_ids=event_ids)

    async def _failed(self, claim_id: uuid.UUID, rows: list[ClaimedSend], exc: SendError) -> None:
        channel = rows[0].channel
        error = str(exc)
        if exc.permanent:
            give_up, again = rows, []
        else:
            give_up = [r for r in rows if r.attempts > self._s.notify_max_retries]
            again = [r for r in rows if r.attempts <= self._s.notify_max_retries]
        log.warning(
            "notification_failed",
            channel=channel,
            code=exc.code,
            permanent=exc.permanent,
            attempts=max(r.attempts for r in rows),
            count=len(rows),
            retrying=len(again),
            deadlettering=len(give_up),
        )
        if again:
            attempts = max(r.attempts for r in again)
            delay = retry_delay(attempts, self._s.notify_retry_base_s)
            n = await self._db(
                lambda: self._repo.mark_retry(
                    [r.id for r in again], claim_id=claim_id, error=error, delay_s=delay
                )
            )
            metrics.RETRIED.labels(channel).inc(n)
            asyncio.get_running_loop().call_later(delay, self._wake.set)
        if give_up:
            reason = "permanent_error" if exc.permanent else "retries_exhausted"
            entry = await self._db(
                lambda: self._repo.mark_dead(
                    [r.id for r in give_up],
                    claim_id=claim_id,
                    error=error,
                    reason=reason,
                    failed_at=utcnow(),
                )
            )
            if entry is not None:
                metrics.dead_lettered(entry, reason)
                log.warning(
                    "notification_deadlettered",
                    channel=channel,
                    reason=reason,
                    attempts=entry["attempts"],
                    count=len(entry["send_ids"]),
                    deadletter_id=entry["deadletter_id"],
                )
                try:
                    await self.publish_deadletters()
                except _DB_ERRORS:
                    pass  # the next cycle publishes it

    async def publish_deadletters(self) -> int:
        """Publish dead-letter entries from the outbox until Kafka has them."""

        async def publish(entry: dict[str, Any]) -> None:
            await self._publisher.publish(
                topics.NOTIFY_DEADLETTER, orjson.dumps(entry), key=entry["workspace_id"]
            )

        try:
            return await self._repo.publish_deadletters(publish)
        except KafkaUnavailable:
            log.warning("deadletter_publish_failed")
            return 0

    async def _db(self, work: Callable[[], Awaitable[T]]) -> T:
        """Retry a bookkeeping write while Postgres is away, within the claim's lease."""
        end = time.monotonic() + max(self._lease_s - 5, 1.0)
        backoff = 0.1
        while True:
            try:
                return await work()
            except _DB_ERRORS as exc:
                if time.monotonic() > end:
                    raise
                log.warning("notification_bookkeeping_retry", error=type(exc).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
