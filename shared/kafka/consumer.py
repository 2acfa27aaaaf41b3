"""The consumer runner: at-least-once batches, commit after success, dead letters.

Offsets are committed manually, only after the batch handler returned (while busy, at most
once per ``kafka_commit_interval_ms``; an idle poll commits at once); a crash before that
redelivers the batch, so **every handler must be idempotent**. A message that can
never be handled (undecodable, or the handler raises :class:`PoisonMessage`) goes to the
dead-letter topic with the reason and the runner moves on. Any other exception is treated
as transient: the batch is retried with backoff and nothing is committed until it
succeeds. On SIGTERM the runner finishes the batch in hand, commits it and stops. On a
rebalance it commits what is done before giving partitions up (aiokafka#933/#848), then
forgets what it handled of them (:mod:`shared.kafka.rebalance`), and a failed commit is
logged, not fatal. Every log line of a batch's handling carries its
topic, partition and offset (:func:`position_of`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import orjson
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import ConsumerRecord
from prometheus_client import Counter, Gauge, Histogram

from shared import topics
from shared.events import UnknownVersion
from shared.kafka import deadletter
from shared.kafka.admin import ensure_topics
from shared.kafka.client import client_config
from shared.kafka.errors import KafkaUnavailable
from shared.kafka.failures import Classifier, StuckPartitions, classify
from shared.kafka.messages import (
    BatchHandler,
    Holding,
    Message,
    PoisonMessage,
    first_offsets,
    position_of,
)
from shared.kafka.producer import Publisher
from shared.kafka.rebalance import Rebalance, rejoin_after_task_error
from shared.logs import get_logger
from shared.retry import DEPENDENCY_ERRORS, Stopped, retry_until
from shared.settings import CommonSettings

log = get_logger(__name__)

E = TypeVar("E")
# What a gathering consumer (``gather_ms``) asks the broker to hold a fetch for.
GATHER_BYTES = 1 << 20

CONSUMED = Counter("leadwire_consumer_messages_total", "Messages handled", ["topic", "result"])
BATCH_SIZE = Histogram(
    "leadwire_consumer_batch_size",
    "Messages per handled batch",
    ["topic"],
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000),
)
CONSUMER_LAG = Gauge(
    "leadwire_consumer_lag",
    "Messages not yet committed: highwater minus the committed offset",
    ["topic", "partition"],
)
CONSUMER_STUCK = Gauge(
    "leadwire_consumer_stuck_seconds",
    "How long the partition has been retrying the same offset (0 when it moves)",
    ["topic", "partition"],
)
DEADLETTERED = Counter(
    "leadwire_deadlettered_total", "Messages sent to the dead-letter topic", ["topic", "reason"]
)


class _Abandoned(Exception):
    """The runner is stopping while a batch is being retried: leave it uncommitted."""


@dataclass
class _Progress:
    """Offsets handled but not yet committed, per partition (next offset to read)."""

    pending: dict[TopicPartition, int] = field(default_factory=dict)


class ConsumerRunner(Generic[E]):
    """Consume topics in batches, hand them to a handler, commit after it succeeds."""

    def __init__(
        self,
        settings: CommonSettings,
        *,
        topics: Sequence[str],
        group_id: str,
        decode: Callable[[bytes], E],
        handler: BatchHandler[E],
        publisher: Publisher,
        max_batch: int = 500,
        poll_timeout_ms: int = 200,
        auto_offset_reset: str = "earliest",
        max_backoff_s: float = 5.0,
        revoke_wait_s: float = 30.0,
        fetch_max_wait_ms: int = 500,
        gather_ms: int = 0,
        classify: Classifier | None = None,
        unknown_attempts: int = 3,
        stuck_after_s: float = 60.0,
        holding: Holding | None = None,
    ) -> None:
        self._settings = settings
        self._logical = {settings.topic(t): t for t in topics}
        self._decode = decode
        self._handler = handler
        self._publisher = publisher
        self._max_batch = max_batch
        self._poll_timeout_ms = poll_timeout_ms
        self._max_backoff_s = max_backoff_s
        self.revoke_wait_s = revoke_wait_s
        self._classify = classify
        self._unknown_attempts = max(1, unknown_attempts)
        self.stuck_after_s = stuck_after_s
        self._holding = holding
        self._lock = asyncio.Lock()
        self._progress = _Progress()
        self._stopping = asyncio.Event()
        self._last_poll = 0.0
        self._last_commit = 0.0
        self._committed: dict[TopicPartition, int] = {}
        # Per partition, (offset, timestamp ms) of every message fetched and not yet
        # committed, oldest first: how far behind the work is (oldest_pending_age_s).
        self._uncommitted: dict[TopicPartition, deque[tuple[int, int]]] = {}
        self.stuck = StuckPartitions()
        self._group_id = group_id
        self._consumer = AIOKafkaConsumer(
            **client_config(settings),
            group_id=group_id,
            # The pid tells the group's members apart (make status: which process holds
            # which partitions, read from the group's description in Kafka).
            client_id=f"{group_id}-{os.getpid()}",
            enable_auto_commit=False,
            auto_offset_reset=auto_offset_reset,
            max_poll_interval_ms=300_000,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=1_000,
            request_timeout_ms=max(int(settings.kafka_timeout_s * 1000), 15_000),
            isolation_level="read_committed",
            # A topic created after subscribe() is noticed within seconds, not minutes.
            metadata_max_age_ms=5_000,
            # How long a fetch waits at the broker while no partition has new data: it
            # answers as soon as one has (fetch_min_bytes 1). Every fetch covers every
            # partition (_fetch_all_partitions_together), so this is the idle polling
            # rate, not a delay. A consumer that need not be prompt gathers instead: the
            # broker holds each fetch until GATHER_BYTES came or gather_ms passed, so a
            # steady trickle comes as a few big batches, not many of one or two records.
            fetch_max_wait_ms=gather_ms or fetch_max_wait_ms,
            fetch_min_bytes=GATHER_BYTES if gather_ms else 1,
        )

    @property
    def consumer(self) -> AIOKafkaConsumer:
        return self._consumer

    def healthy(self, stale_after_s: float = 30.0) -> bool:
        """Ready while the poll loop turns (a consumer stuck after a broker restart,
        aiokafka#1154, stops turning) and no partition has retried one offset for longer
        than ``stuck_after_s``."""
        return self.readiness(stale_after_s)[0]

    def readiness(self, stale_after_s: float = 30.0) -> tuple[bool, dict[str, Any]]:
        """``(ready, details)``: details name every partition stuck past the bound (topic,
        partition, offset, error class, seconds) for ``/readyz``."""
        stuck = self.stuck.longer_than(self.stuck_after_s)
        if stuck:
            return False, {"stuck": [s.describe() for s in stuck]}
        turning = self._last_poll > 0 and time.monotonic() - self._last_poll < stale_after_s
        if not turning:
            return False, {"poll_loop": "not turning"}
        return True, {}

    def oldest_pending_age_s(self) -> float:
        """Seconds since the oldest message this runner fetched and has not committed yet
        was published (0 when there is none): how far behind its work is, e.g. while a
        batch is retried because a dependency is away, or a holding handler holds it."""
        owned = self._consumer.assignment()
        stamps = [q[0][1] for tp, q in self._uncommitted.items() if q and tp in owned]
        return max(time.time() - min(stamps) / 1000, 0.0) if stamps else 0.0

    def stop(self) -> None:
        """Ask the loop to finish the batch in hand, commit and return."""
        self._stopping.set()

    async def run(self) -> None:
        await self._start_consumer()
        try:
            while not self._stopping.is_set():
                batch = await self._poll()
                for record in batch:
                    tp = TopicPartition(record.topic, record.partition)
                    self._uncommitted.setdefault(tp, deque()).append(
                        (record.offset, record.timestamp)
                    )
                if batch or self._progress.pending:
                    async with self._lock:
                        if batch:
                            await self._handle(batch)
                        if not batch or self._commit_due():
                            await self._commit_pending()
                self._update_gauges()
        finally:
            async with self._lock:
                await self._flush_held()
                await self._commit_pending()
            try:
                await asyncio.wait_for(self._consumer.stop(), self._settings.kafka_timeout_s)
            except (TimeoutError, KafkaError, OSError):
                log.warning("kafka_consumer_stop_timeout")

    async def _start_consumer(self) -> None:
        async def start() -> None:
            # Subscribing to a missing topic assigns nothing until metadata refreshes.
            await ensure_topics(self._settings, self._logical.values())
            await asyncio.wait_for(self._consumer.start(), self._settings.kafka_timeout_s)
            _fetch_all_partitions_together(self._consumer)

        try:
            await retry_until(
                self._stopping,
                "kafka consumer",
                start,
                retry_on=(*DEPENDENCY_ERRORS, KafkaUnavailable),
                max_delay_s=self._max_backoff_s,
            )
        except Stopped as exc:
            raise KafkaUnavailable("stopped before Kafka became reachable") from exc
        self._consumer.subscribe(list(self._logical), listener=Rebalance(self))
        self._last_poll = time.monotonic()

    async def _poll(self) -> list[ConsumerRecord[bytes, bytes]]:
        try:
            fetched = await self._consumer.getmany(
                timeout_ms=self._poll_timeout_ms, max_records=self._max_batch
            )
        except (KafkaError, RuntimeError) as exc:
            log.warning("kafka_poll_error", error=type(exc).__name__)
            if not isinstance(exc, KafkaError):
                rejoin_after_task_error(self._consumer)
            await asyncio.sleep(0.5)
            return []
        self._last_poll = time.monotonic()
        return [record for records in fetched.values() for record in records]

    async def _handle(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        messages: list[Message[E]] = []
        for record in records:
            try:
                value = self._decode(record.value)
            except Exception as exc:  # undecodable: it will never decode; dead-letter it
                code = "unknown_version" if isinstance(exc, UnknownVersion) else "undecodable"
                await self._dead_letter(record, f"{code}: {type(exc).__name__}: {exc}", exc)
                continue
            messages.append(
                Message(
                    topic=self._logical.get(record.topic, record.topic),
                    partition=record.partition,
                    offset=record.offset,
                    key=record.key,
                    value=value,
                    raw=record.value,
                    timestamp_ms=record.timestamp,
                )
            )
        try:
            with structlog.contextvars.bound_contextvars(**position_of(messages or records)):
                await self._settle(messages)
        except _Abandoned:
            return  # stopping or revoked mid-retry: nothing committed, redelivered later
        for record in records:
            self._progress.pending[TopicPartition(record.topic, record.partition)] = (
                record.offset + 1
            )
        self.stuck.settled({(m.topic, m.partition) for m in messages})
        if records:
            BATCH_SIZE.labels(self._logical.get(records[0].topic, records[0].topic)).observe(
                len(records)
            )

    async def _settle(self, messages: list[Message[E]]) -> None:
        """Handle ``messages`` until each is handled or dead-lettered (see
        :mod:`shared.kafka.failures`): transient failures are retried for as long as it
        takes; permanent ones, and unknown ones that keep failing, split the batch until
        the failing message is alone and dead-letter it, so its neighbours go on."""
        backoff = 0.1
        attempt = 0
        while messages:
            attempt += 1
            try:
                await self._handler(messages)
                break
            except PoisonMessage as poison:
                await self._dead_letter(poison.message, poison.reason)
                messages = [m for m in messages if m is not poison.message]
                continue
            except Exception as exc:
                kind = classify(exc, self._classify)
                self.stuck.failed(first_offsets(messages), type(exc).__name__)
                self._update_gauges()
                log.warning(
                    "batch_retry",
                    attempt=attempt,
                    kind=kind,
                    error=type(exc).__name__,
                    size=len(messages),
                )
                if kind == "permanent" or (kind == "unknown" and attempt >= self._unknown_attempts):
                    await self._isolate(messages, exc, kind)
                    return
            self._check_still_ours(messages)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff_s)
        for m in messages:
            CONSUMED.labels(m.topic, "ok").inc()

    async def _isolate(self, messages: list[Message[E]], exc: Exception, kind: str) -> None:
        if len(messages) == 1:
            code = "permanent" if kind == "permanent" else "retries_exhausted"
            reason = f"{code}: {type(exc).__name__}: {exc}"
            await self._dead_letter(messages[0], reason, exc)
            return
        middle = len(messages) // 2
        log.info("batch_split", size=len(messages), error=type(exc).__name__)
        await self._settle(messages[:middle])
        await self._settle(messages[middle:])

    def _check_still_ours(self, messages: list[Message[E]]) -> None:
        """Between retries: stop retrying a batch when stopping, or when its partitions
        were given to another consumer (it redelivers them from the last commit)."""
        if self._stopping.is_set():
            raise _Abandoned
        owned = self._consumer.assignment()
        if any(
            TopicPartition(self._settings.topic(m.topic), m.partition) not in owned
            for m in messages
        ):
            log.warning("batch_abandoned_partitions_revoked", size=len(messages))
            raise _Abandoned

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        """Work that must not interleave with a batch's handling and commit (e.g. a
        holding handler's periodic flush)."""
        async with self._lock:
            yield

    async def _flush_held(self) -> None:
        if self._holding is None:
            return
        try:
            await self._holding.flush()
        except Exception as exc:  # what is held stays uncommitted and is read again
            log.warning("held_flush_failed", error=type(exc).__name__)

    def give_up(self, revoked: Collection[TopicPartition]) -> None:
        """The partitions were taken away (their offsets were committed as far as what is
        stored): the holding handler drops what it holds of them, and the runner forgets
        their progress. Whoever gets them next, this runner too, reads them again from the
        commit; a pending offset kept past this would be committed if they came back,
        beyond records dropped here and never stored (archive loss on a rebalance)."""
        if self._holding is not None:
            self._holding.release(
                {(self._logical.get(tp.topic, tp.topic), tp.partition) for tp in revoked}
            )
        for tp in revoked:
            self._progress.pending.pop(tp, None)
            self._committed.pop(tp, None)
            self._uncommitted.pop(tp, None)

    def _committable(self) -> dict[TopicPartition, int]:
        """The pending offsets of owned partitions, held back to what a holding handler
        still holds."""
        owned = self._consumer.assignment()
        offsets = {tp: o for tp, o in self._progress.pending.items() if tp in owned}
        if self._holding is not None:
            for (logical, partition), low in self._holding.held().items():
                tp = TopicPartition(self._settings.topic(logical), partition)
                if tp in offsets and low < offsets[tp]:
                    offsets[tp] = low
        return {tp: o for tp, o in offsets.items() if self._committed.get(tp) != o}

    def _commit_due(self) -> bool:
        interval_s = self._settings.kafka_commit_interval_ms / 1000
        return time.monotonic() - self._last_commit >= interval_s

    async def _commit_pending(self) -> None:
        if not self._progress.pending:
            return
        self._last_commit = time.monotonic()
        owned = self._consumer.assignment()
        for tp, offset in list(self._progress.pending.items()):
            # Already committed (e.g. after a flush), or no longer ours to commit.
            if self._committed.get(tp) == offset or tp not in owned:
                del self._progress.pending[tp]
        offsets = self._committable()
        if not offsets:
            return
        try:
            await asyncio.wait_for(self._consumer.commit(offsets), self._settings.kafka_timeout_s)
            for tp in offsets:
                if self._progress.pending.get(tp) == offsets[tp]:
                    del self._progress.pending[tp]
                fetched = self._uncommitted.get(tp)
                while fetched and fetched[0][0] < offsets[tp]:
                    fetched.popleft()
            self._committed.update(offsets)
        except (CommitFailedError, TimeoutError, KafkaError) as exc:
            # The partitions moved (or the broker is away): the new owner redelivers from
            # the last commit and the idempotent handlers absorb the repeat.
            log.warning("commit_failed", error=type(exc).__name__)
            self._progress.pending.clear()
            self._uncommitted.clear()

    async def _dead_letter(
        self,
        record: ConsumerRecord[bytes, bytes] | Message[Any],
        reason: str,
        exc: BaseException | None = None,
    ) -> None:
        topic = self._logical.get(record.topic, record.topic)
        dead = deadletter.entry(
            source_topic=topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            payload=record.raw if isinstance(record, Message) else record.value,
            reason=reason,
            group_id=self._group_id,
            error_class=type(exc).__name__ if exc is not None else None,
        )
        # Retried until the dead-letter topic has it: the message must not vanish.
        backoff = 0.2
        while True:
            try:
                key = record.key.decode(errors="replace") if record.key else None
                await self._publisher.publish(topics.DEADLETTER, orjson.dumps(dead), key=key)
                break
            except KafkaUnavailable:
                if self._stopping.is_set():
                    raise
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff_s)
        DEADLETTERED.labels(topic, dead["reason_code"]).inc()
        CONSUMED.labels(topic, "deadlettered").inc()
        log.warning(
            "message_deadlettered",
            topic=topic,
            partition=record.partition,
            offset=record.offset,
            reason_code=dead["reason_code"],
            error=dead["error_class"],
        )

    def _update_gauges(self) -> None:
        """Lag counts from the committed offset, so a message being retried shows as lag;
        the stuck gauge says for how long."""
        stuck = {(s.topic, s.partition): s.seconds() for s in self.stuck.all()}
        for tp in self._consumer.assignment():
            logical = self._logical.get(tp.topic, tp.topic)
            high = self._consumer.highwater(tp)
            committed = self._committed.get(tp)
            if high is not None and committed is not None:
                CONSUMER_LAG.labels(logical, str(tp.partition)).set(max(high - committed, 0))
            elif high is not None and (logical, tp.partition) in stuck:
                CONSUMER_LAG.labels(logical, str(tp.partition)).set(high)
            CONSUMER_STUCK.labels(logical, str(tp.partition)).set(
                round(stuck.get((logical, tp.partition), 0.0), 1)
            )


# How long fetched records wait to be taken before aiokafka fetches the node's other
# partitions anyway (its default: 0.1 s).
PREFETCH_BACKOFF_S = 60.0


def _fetch_all_partitions_together(consumer: AIOKafkaConsumer) -> None:
    """aiokafka keeps one fetch in flight per broker. By default a batch handled for over
    0.1 s lets a fetch of the *other* partitions go out, which the batch's own partition
    then waits behind (``fetch_max_wait_ms`` when they are idle): a stall per batch. Here
    the next fetch waits until what was fetched is taken, so every fetch covers every
    partition (tests/unit/test_kafka_batching.py fails if aiokafka renames this)."""
    fetcher = consumer._fetcher
    assert hasattr(fetcher, "_prefetch_backoff")
    fetcher._prefetch_backoff = PREFETCH_BACKOFF_S
