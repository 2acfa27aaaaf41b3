"""Committing a batch: transactions of at most ``processor_tx_max_leads`` messages, each
retried at once on a lock conflict (a unique violation, serialization failure or deadlock
is never surfaced), and the fallback for a message Postgres refuses for good: the rest of
its transaction is re-run one message per transaction, and it is recorded as a failed
request with a ``LeadFailed`` outcome and marked poison (one such message does not fail
its batch)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import asyncpg

from services.processor import metrics, outcomes
from services.processor.decode import Incoming
from services.processor.outcomes import Finished
from services.processor.repository import Repository, Transaction
from services.processor.settings import ProcessorSettings
from services.processor.transaction import process_batch, record_failure
from shared.events import ErrorInfo
from shared.kafka import Message
from shared.logs import get_logger

log = get_logger(__name__)

#: A test hook run inside each batch transaction, after its locks are taken.
InTransaction = Callable[[], Awaitable[None]]

T = TypeVar("T")

#: Lock conflicts: the transaction is retried, never surfaced.
RETRYABLE = (
    asyncpg.UniqueViolationError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
    asyncpg.LockNotAvailableError,
)
#: Postgres refuses the data for good: the message is poison.
UNWRITABLE = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.ProgramLimitExceededError,
)


class Unwritable(Exception):
    """Postgres refused data for good (a constraint, a type, a size): not a transient error."""

    def __init__(self, error: asyncpg.PostgresError) -> None:
        super().__init__(str(error))
        self.error = error


class TransactionConflict(Exception):
    """Lock conflicts kept coming back; the runner retries the batch after a backoff."""


def error_info(exc: asyncpg.PostgresError) -> ErrorInfo:
    """The error without PII: class, SQLSTATE, and which constraint/column, never values."""
    where = (
        getattr(exc, "constraint_name", None)
        or getattr(exc, "column_name", None)
        or getattr(exc, "table_name", None)
    )
    message = f"SQLSTATE {exc.sqlstate}" + (f" on {where}" if where else "")
    return ErrorInfo(type=type(exc).__name__, message=message)


async def in_transaction(
    repo: Repository, attempts: int, work: Callable[[Transaction], Awaitable[T]]
) -> T:
    """``work`` in a transaction, retried at once (with jitter) on a lock conflict; raises
    :class:`TransactionConflict` after ``attempts``, :class:`Unwritable` when Postgres
    refuses the data."""
    for attempt in range(1, attempts + 1):
        try:
            async with repo.transaction() as tx:
                result = await work(tx)
                tc = time.perf_counter()
            # The transaction committed when the block above exited.
            metrics.STEP_SECONDS.labels("commit").observe(time.perf_counter() - tc)
            return result
        except RETRYABLE as exc:
            metrics.TX_RETRIES.labels(type(exc).__name__).inc()
            if attempt == attempts:
                raise TransactionConflict(
                    f"{type(exc).__name__} after {attempts} attempts"
                ) from exc
            await asyncio.sleep(random.uniform(0, 0.005 * 2**attempt))
        except UNWRITABLE as exc:
            raise Unwritable(exc) from exc
    raise AssertionError("unreachable")  # pragma: no cover


async def commit_batch(
    messages: Sequence[Message[Incoming]],
    *,
    repo: Repository,
    settings: ProcessorSettings,
    in_transaction: InTransaction | None = None,
) -> list[Finished]:
    """The batch in transactions of at most ``processor_tx_max_leads`` messages; a
    transaction Postgres refuses is re-run one message per transaction."""
    size = settings.processor_tx_max_leads
    attempts = settings.processor_tx_attempts
    finished: list[Finished] = []
    for i in range(0, len(messages), size):
        finished += await _commit_chunk(
            messages[i : i + size], repo=repo, attempts=attempts, hook=in_transaction
        )
    return finished


async def _commit_chunk(
    chunk: Sequence[Message[Incoming]],
    *,
    repo: Repository,
    attempts: int,
    hook: InTransaction | None,
) -> list[Finished]:
    try:
        return await in_transaction(
            repo, attempts, lambda tx: process_batch(chunk, tx=tx, in_transaction=hook)
        )
    except Unwritable as exc:
        metrics.FALLBACKS.inc()
        log.warning("batch_unwritable_fallback", size=len(chunk), error=type(exc.error).__name__)
    out: list[Finished] = []
    for m in chunk:
        out += await _commit_one(m, repo=repo, attempts=attempts, hook=hook)
    return out


async def _commit_one(
    m: Message[Incoming], *, repo: Repository, attempts: int, hook: InTransaction | None
) -> list[Finished]:
    """One message in its own transaction; recorded as failed when Postgres refuses it."""
    try:
        return await in_transaction(
            repo, attempts, lambda tx: process_batch([m], tx=tx, in_transaction=hook)
        )
    except Unwritable as exc:
        error = error_info(exc.error)
    try:
        return [await in_transaction(repo, attempts, lambda tx: record_failure(m, error, tx=tx))]
    except Unwritable as exc:
        # Even the failure record is refused (e.g. a NUL in its idempotency key): the
        # dead-letter topic is the only place left for it.
        log.error("failure_unrecordable", error=type(exc.error).__name__)
        return [outcomes.dead_letter_only(m, error)]
