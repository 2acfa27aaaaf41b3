"""Archiving a batch of outcome events: one record object (and pointer) per request.

Idempotent by construction: the object key is derived from the request alone
(:func:`records.record_key`), so a redelivered batch, a re-published outcome or a replay of
the whole topic from offset 0 overwrites the same objects instead of adding any.

At-least-once into S3: :meth:`BatchArchiver.handle` returns only after every object of the
batch is stored; the runner commits offsets only after that. An S3 error is transient: it
raises, the runner retries the batch with backoff (committing nothing), and the objects
stored before the failure are not uploaded again on the retry.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from botocore.exceptions import ClientError
from prometheus_client import Counter, Histogram

from services.archiver import records
from services.archiver.store import ArchiveStore, error_code
from shared.kafka import Message, PoisonMessage
from shared.logs import get_logger

log = get_logger(__name__)

ARCHIVED = Counter("leadwire_archived_total", "Records stored in the archive", ["status"])
UPLOAD_SECONDS = Histogram(
    "leadwire_archive_upload_seconds",
    "Time to store one record and its pointer",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
S3_ERRORS = Counter("leadwire_archive_s3_errors_total", "Failed S3 writes", ["code"])

# Errors a retry can never fix (the object itself is unacceptable): dead-letter it.
_PERMANENT = frozenset({"EntityTooLarge", "KeyTooLongError", "MetadataTooLarge", "InvalidArgument"})

# Identifies one consumed message (topic, partition, offset).
_Position = tuple[str, int, int]


class BatchArchiver:
    """The runner's batch handler: upload concurrently (bounded), return when all stored."""

    def __init__(self, *, store: ArchiveStore, concurrency: int = 16) -> None:
        self._store = store
        self._limit = asyncio.Semaphore(concurrency)
        # Messages of the batch in hand already stored; a retry of the same batch skips
        # them. Cleared once the batch succeeds (its offsets are then committed).
        self._stored: set[_Position] = set()

    async def handle(self, messages: list[Message[records.Outcome]]) -> None:
        # The same request twice in one batch: only the later event is written (the
        # outcome topic is keyed by workspace, so "later" is well defined per request).
        latest: dict[uuid.UUID, Message[records.Outcome]] = {}
        for m in messages:
            if (m.topic, m.partition, m.offset) not in self._stored:
                latest[m.value.request_id] = m
        tasks = [asyncio.create_task(self._archive(m)) for m in latest.values()]
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
        self._stored.clear()

    async def _archive(self, message: Message[records.Outcome]) -> None:
        outcome = message.value
        key = records.record_key(
            outcome.workspace_id, outcome.webhook_id, outcome.received_at, outcome.request_id
        )
        async with self._limit:
            started = time.perf_counter()
            try:
                await self._store.put_json(
                    key, records.build_record(outcome), metadata=records.object_metadata(outcome)
                )
                await self._store.put_json(
                    records.pointer_key(outcome.request_id), records.pointer(outcome, key)
                )
            except ClientError as exc:
                code = error_code(exc)
                S3_ERRORS.labels(code or "unknown").inc()
                if code in _PERMANENT:
                    raise PoisonMessage(message, f"s3_rejected: {code}") from exc
                raise
            except Exception as exc:
                S3_ERRORS.labels(type(exc).__name__).inc()
                raise
            UPLOAD_SECONDS.observe(time.perf_counter() - started)
        # Messages dropped as superseded within the batch are committed with it too.
        self._stored.add((message.topic, message.partition, message.offset))
        ARCHIVED.labels(outcome.status).inc()
