"""Archiving a batch of outcome events: one record object (and pointer) per request.

Idempotent by construction: the object key is derived from the request alone
(:func:`records.record_key`), so a redelivered batch, a re-published outcome or a replay of
the whole topic from offset 0 overwrites the same objects instead of adding any.

At-least-once into S3: :func:`archive_outcomes` returns only after every object of the
batch is stored; the runner commits offsets only after that. A storage error is
transient: it raises, the runner retries the batch with backoff (committing nothing), and
the objects stored before the failure are not uploaded again on the retry (``stored``).
An object the store can never accept is dead-lettered (:class:`PoisonMessage`).
"""

from __future__ import annotations

import asyncio
import time
import uuid

from services.archiver import records
from services.archiver.metrics import ARCHIVED, UPLOAD_SECONDS
from services.archiver.repository import Archive, ArchiveRejected
from shared.events import Outcome
from shared.kafka import Message, PoisonMessage

# Identifies one consumed message (topic, partition, offset).
Position = tuple[str, int, int]


async def archive_outcomes(
    messages: list[Message[Outcome]],
    *,
    archive: Archive,
    stored: set[Position],
    concurrency: int = 16,
) -> None:
    """The runner's batch handler: upload concurrently (at most ``concurrency`` at once)
    and return when all are stored.

    ``stored`` holds the messages of the batch in hand already stored (kept by the caller
    across the runner's retries of one batch); a retry skips them. It is cleared once the
    batch succeeds (its offsets are then committed)."""
    # The same request twice in one batch: only the later event is written (the
    # outcome topic is keyed by workspace, so "later" is well defined per request).
    latest: dict[uuid.UUID, Message[Outcome]] = {}
    for m in messages:
        if (m.topic, m.partition, m.offset) not in stored:
            latest[m.value.request_id] = m
    limit = asyncio.Semaphore(concurrency)
    tasks = [
        asyncio.create_task(_archive_one(m, archive=archive, limit=limit, stored=stored))
        for m in latest.values()
    ]
    if tasks:
        try:
            # Fail fast: with S3 away every upload would fail the same way, slowly.
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for task in tasks:
                if not task.done():
                    task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    poison: PoisonMessage | None = None
    for task in tasks:
        if task.cancelled():
            continue
        error = task.exception()
        if isinstance(error, PoisonMessage):
            poison = poison or error
        elif error is not None:
            raise error  # transient: the runner retries the batch with backoff
    if poison is not None:
        raise poison
    stored.clear()


async def _archive_one(
    message: Message[Outcome],
    *,
    archive: Archive,
    limit: asyncio.Semaphore,
    stored: set[Position],
) -> None:
    outcome = message.value
    key = records.record_key(
        outcome.workspace_id, outcome.webhook_id, outcome.received_at, outcome.request_id
    )
    async with limit:
        started = time.perf_counter()
        try:
            await archive.put_json(
                key, records.build_record(outcome), metadata=records.object_metadata(outcome)
            )
            await archive.put_json(
                records.pointer_key(outcome.request_id), records.pointer(outcome, key)
            )
        except ArchiveRejected as exc:
            raise PoisonMessage(message, f"s3_rejected: {exc.code}") from exc
        UPLOAD_SECONDS.observe(time.perf_counter() - started)
    # Messages dropped as superseded within the batch are committed with it too.
    stored.add((message.topic, message.partition, message.offset))
    ARCHIVED.labels(outcome.status).inc()
