"""Dead letters, read from the two dead-letter topics, seen one way, and sent back once:
the store under :mod:`services.api.deadletters` (which ``leadwire deadletter`` and the
management API call).

- ``<prefix>deadletter``: what a consumer (processor, analytics, notifier, archiver) gave
  up on; one entry per message (:mod:`shared.kafka.deadletter`) holding the original
  bytes. Sending it back publishes those bytes, unchanged and with their key, to the
  entry's source topic.
- ``<prefix>notifications.deadletter``: sends the notifier gave up on; one entry per
  batch (:func:`services.notifier.ledger.deadletter_entry`). Sending it back re-queues
  its sends that are still dead (:func:`services.notifier.admin.requeue_dead_sends`).

A dead letter is named ``<topic>:<partition>:<offset>`` (the dead-letter message itself).
Every one sent back is recorded in ``deadletter_retries`` (migration 075) in the same
transaction as the re-queue, and before the publish is acknowledged (a publish Kafka
refuses rolls the record back), so ``retry --all`` never sends one back twice.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from services.api.errors import AdminError, Invalid
from services.notifier import admin as notifier_admin
from shared import topics
from shared.kafka import Publisher, client_config, deadletter
from shared.settings import CommonSettings

TOPICS = (topics.DEADLETTER, topics.NOTIFY_DEADLETTER)
# Where a consumers' dead letter may be sent back to (an entry names its source topic).
SOURCES = (topics.RAW, topics.FETCH, topics.OUTCOMES, topics.ALERTS)
NOTIFICATION_SENDS = "notification_sends"


@dataclass
class DeadLetter:
    """One dead letter of either topic, as the commands show it."""

    topic: str
    partition: int
    offset: int
    at: datetime
    reason_code: str
    # The full reason (it may quote the refused value: shown by `show` only).
    reason: str
    # Where it came from: "<topic>:<partition>:<offset>", or "<channel> notifications".
    source: str
    group_id: str | None = None
    error_class: str | None = None
    ids: dict[str, Any] = field(default_factory=dict)
    entry: dict[str, Any] = field(default_factory=dict)
    retried_at: datetime | None = None

    @property
    def id(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"

    def summary(self) -> dict[str, Any]:
        """What ``list`` shows: ids, codes and positions, no free text."""
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "reason_code": self.reason_code,
            "error_class": self.error_class,
            "source": self.source,
            "group_id": self.group_id,
            **self.ids,
            "retried_at": self.retried_at.isoformat() if self.retried_at else None,
        }


def parse_id(text: str) -> tuple[str, int, int]:
    """``<topic>:<partition>:<offset>`` -> its parts (:class:`Invalid` if it is not one)."""
    topic, _, rest = text.strip().partition(":")
    partition, _, offset = rest.partition(":")
    if (
        topic not in TOPICS
        or not (partition.isascii() and partition.isdigit())
        or not (offset.isascii() and offset.isdigit())
        or len(partition) > 6
        or len(offset) > 19
    ):
        raise Invalid(
            f"{text!r} is not a dead letter id",
            field="deadletter_id",
            hint="ids look like deadletter:2:15 or notifications.deadletter:0:3 "
            "(see `leadwire deadletter list`)",
        )
    return topic, int(partition), int(offset)


def from_record(topic: str, record: ConsumerRecord[bytes, bytes]) -> DeadLetter:
    """A dead letter from its message (any bytes: an unreadable one says so)."""
    at = datetime.fromtimestamp(record.timestamp / 1000, UTC)
    try:
        doc = orjson.loads(record.value or b"")
    except orjson.JSONDecodeError:
        doc = None
    if not isinstance(doc, dict):
        return DeadLetter(topic, record.partition, record.offset, at, "unreadable", "", "?")
    base = DeadLetter(
        topic,
        record.partition,
        record.offset,
        at,
        reason_code=str(doc.get("reason_code") or doc.get("reason") or "unknown")[:40],
        reason=str(doc.get("reason") or ""),
        source="?",
        entry=doc,
    )
    if topic == topics.NOTIFY_DEADLETTER:
        base.source = f"{doc.get('channel')} notifications"
        base.ids = {
            "workspace_id": doc.get("workspace_id"),
            "sends": len(doc.get("send_ids") or []),
        }
        return base
    base.source = f"{doc.get('source_topic')}:{doc.get('partition')}:{doc.get('offset')}"
    base.group_id = doc.get("group_id")
    base.error_class = doc.get("error_class")
    base.ids = {k: doc.get(k) for k in ("request_id", "workspace_id", "webhook_id")}
    return base


def payload_view(letter: DeadLetter) -> Any:
    """What ``show`` prints of the original message: the JSON it holds, else its bytes
    in base64 (with their size)."""
    if letter.topic == topics.NOTIFY_DEADLETTER:
        return None  # the entry itself is the whole story
    raw = deadletter.payload_of(letter.entry)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {"bytes": len(raw), "base64": base64.b64encode(raw).decode()}


# --- reading the topics -----------------------------------------------------------------


Progress = Callable[[int], None]


async def read(
    settings: CommonSettings,
    topic: str,
    *,
    since: datetime | None = None,
    at: tuple[int, int] | None = None,
    total: Progress = lambda n: None,
    advance: Progress = lambda n: None,
) -> list[DeadLetter]:
    """The dead letters of ``topic`` from ``since`` (the message time) to its end, or the
    one at ``at`` (partition, offset). A topic that does not exist yet holds none."""
    consumer = AIOKafkaConsumer(
        **client_config(settings),
        enable_auto_commit=False,
        isolation_level="read_committed",
        request_timeout_ms=max(int(settings.kafka_timeout_s * 1000), 15_000),
    )
    timeout = settings.kafka_timeout_s
    try:
        await asyncio.wait_for(consumer.start(), timeout)
    except (TimeoutError, KafkaError, OSError) as exc:
        await _stop(consumer, timeout)
        raise _kafka_error(settings, exc) from exc
    try:
        return await _read(consumer, settings, topic, since, at, total, advance)
    except (TimeoutError, KafkaError, OSError) as exc:
        raise _kafka_error(settings, exc) from exc
    finally:
        await _stop(consumer, timeout)


async def _read(
    consumer: AIOKafkaConsumer,
    settings: CommonSettings,
    topic: str,
    since: datetime | None,
    at: tuple[int, int] | None,
    total: Progress,
    advance: Progress,
) -> list[DeadLetter]:
    name = settings.topic(topic)
    timeout = settings.kafka_timeout_s
    # (aiokafka's public topics() does not fill in partitions; the cluster metadata does)
    cluster = await asyncio.wait_for(consumer._client.fetch_all_metadata(), timeout)
    tps = [TopicPartition(name, p) for p in sorted(cluster.partitions_for_topic(name) or ())]
    if not tps:
        return []  # no such topic yet: nothing was ever dead-lettered there
    if at is not None:
        tps = [tp for tp in tps if tp.partition == at[0]]
    consumer.assign(tps)
    ends = await asyncio.wait_for(consumer.end_offsets(tps), timeout)
    starts = await _starts(consumer, tps, ends, since, at, timeout)
    if at is not None:
        ends = {tp: min(ends[tp], at[1] + 1) for tp in tps}
    for tp in tps:
        consumer.seek(tp, starts[tp])
    total(sum(max(ends[tp] - starts[tp], 0) for tp in tps))
    out: list[DeadLetter] = []
    loop = asyncio.get_running_loop()
    quiet_until = loop.time() + timeout
    while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
        batch = await consumer.getmany(*tps, timeout_ms=200)
        records = [
            r
            for rs in batch.values()
            for r in rs
            if r.offset < ends[TopicPartition(r.topic, r.partition)]
        ]
        if records:
            quiet_until = loop.time() + timeout
        elif loop.time() > quiet_until:
            raise TimeoutError(f"{name} could not be read to its end")
        out.extend(from_record(topic, r) for r in records)
        advance(len(records))
    if at is not None:
        out = [d for d in out if d.offset == at[1]]
    return sorted(out, key=lambda d: (d.at, d.partition, d.offset))


async def _starts(
    consumer: AIOKafkaConsumer,
    tps: list[TopicPartition],
    ends: dict[TopicPartition, int],
    since: datetime | None,
    at: tuple[int, int] | None,
    timeout: float,
) -> dict[TopicPartition, int]:
    if at is not None:
        return {tp: at[1] for tp in tps}
    if since is None:
        return dict(await asyncio.wait_for(consumer.beginning_offsets(tps), timeout))
    found = await asyncio.wait_for(
        consumer.offsets_for_times({tp: int(since.timestamp() * 1000) for tp in tps}), timeout
    )
    return {tp: found[tp].offset if found.get(tp) else ends[tp] for tp in tps}


async def _stop(consumer: AIOKafkaConsumer, timeout: float) -> None:
    try:
        await asyncio.wait_for(consumer.stop(), timeout)
    except (TimeoutError, KafkaError, OSError):
        pass


def _kafka_error(settings: CommonSettings, exc: BaseException) -> AdminError:
    return AdminError(
        f"cannot read the dead-letter topics from Kafka at {settings.kafka_bootstrap} "
        f"({type(exc).__name__})",
        code="kafka_unavailable",
        hint="start the stack with `make up`, or set LEADWIRE_KAFKA_BOOTSTRAP",
    ).with_status(503)


# --- what was retried -------------------------------------------------------------------


async def mark_retried(
    conn: asyncpg.Connection, settings: CommonSettings, letters: Sequence[DeadLetter]
) -> None:
    """Fill in ``retried_at`` of the dead letters sent back before."""
    if not letters:
        return
    rows = await conn.fetch(
        """SELECT r.topic, r.partition, r."offset", r.retried_at
           FROM deadletter_retries r
           JOIN unnest($1::text[], $2::int[], $3::bigint[]) AS q(topic, partition, "offset")
             ON (r.topic, r.partition, r."offset") = (q.topic, q.partition, q."offset")""",
        [settings.topic(d.topic) for d in letters],
        [d.partition for d in letters],
        [d.offset for d in letters],
    )
    when = {(r["topic"], r["partition"], r["offset"]): r["retried_at"] for r in rows}
    for d in letters:
        d.retried_at = when.get((settings.topic(d.topic), d.partition, d.offset))


def target_of(letter: DeadLetter) -> str | None:
    """Where the dead letter goes back to; None when it cannot go anywhere."""
    if letter.topic == topics.NOTIFY_DEADLETTER:
        return NOTIFICATION_SENDS if letter.entry.get("send_ids") else None
    source = letter.entry.get("source_topic")
    return source if source in SOURCES and "payload_b64" in letter.entry else None


async def send_back(
    conn: asyncpg.Connection,
    settings: CommonSettings,
    publisher: Publisher,
    letter: DeadLetter,
) -> dict[str, Any] | None:
    """Send one dead letter back, once: None if it was sent back before. Recorded in
    the same transaction as the re-queue (notifications), or before the publish is
    acknowledged (a refused publish rolls the record back)."""
    target = target_of(letter)
    assert target is not None
    async with conn.transaction():
        claimed = await conn.fetchval(
            """INSERT INTO deadletter_retries (topic, partition, "offset", target)
               VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true""",
            settings.topic(letter.topic),
            letter.partition,
            letter.offset,
            target,
        )
        if not claimed:
            return None
        if target == NOTIFICATION_SENDS:
            ids = [uuid.UUID(s) for s in letter.entry["send_ids"]]
            result: dict[str, Any] = {
                "requeued": await notifier_admin.requeue_dead_sends(conn, ids),
                "sends": len(ids),
            }
        else:
            meta = await publisher.publish(
                target, deadletter.payload_of(letter.entry), key=letter.entry.get("key")
            )
            result = {"partition": meta.partition, "offset": meta.offset}
        await conn.execute(
            """UPDATE deadletter_retries SET result = $4
               WHERE topic = $1 AND partition = $2 AND "offset" = $3""",
            settings.topic(letter.topic),
            letter.partition,
            letter.offset,
            result,
        )
    return {"id": letter.id, "target": target, **result}
