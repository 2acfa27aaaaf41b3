"""What a failed handling means, and how long a partition has been stuck on it.

Every consumer sorts a handler's exception into one of three kinds (:func:`classify`):

- ``transient``: the world is away (connection lost, timeout, Kafka or S3 unreachable,
  a serialization failure or deadlock). Retried with backoff for as long as it takes;
  nothing is committed meanwhile, and readiness says so once it lasts (see
  :class:`StuckPartitions`).
- ``permanent``: the message itself cannot be stored (a data or constraint error, an
  encoding Postgres refuses, a request S3 refuses). Retrying cannot help: the batch is
  split until the message is alone, then it goes to the dead-letter topic with the reason.
- ``unknown``: anything else, e.g. a handler bug. Retried a few times (it may be
  transient after all); a message that fails the same way every time is then isolated and
  dead-lettered like a permanent one, so it never holds its partition for ever.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import asyncpg
from aiokafka.errors import KafkaError
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError
from pydantic import ValidationError

from shared.kafka.errors import KafkaUnavailable

Kind = Literal["transient", "permanent", "unknown"]
Classifier = Callable[[BaseException], Kind | None]

# "This value can never be stored": data, constraint and encoding errors.
_PG_PERMANENT: tuple[type[BaseException], ...] = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.ProgramLimitExceededError,
)
# S3 answers about the object itself; every other S3 answer (no bucket, access denied, a
# 5xx, throttling) is about the deployment or the moment, and retried.
_S3_PERMANENT_CODES = frozenset(
    {"EntityTooLarge", "InvalidArgument", "KeyTooLongError", "InvalidDigest", "BadDigest"}
)


def classify(exc: BaseException, extra: Classifier | None = None) -> Kind:
    """The kind of a handler's failure (see the module docstring). ``extra`` is a
    service's own rule, asked first (e.g. the archiver's "S3 refused this object").

    Errors about the deployment rather than the message (a missing table, a refused
    permission, a bucket that is not there) are transient: the partition waits, readiness
    and a health alert say so, and nothing is dead-lettered by a misconfiguration."""
    if extra is not None:
        kind = extra(exc)
        if kind is not None:
            return kind
    if isinstance(exc, asyncpg.UniqueViolationError | asyncpg.ExclusionViolationError):
        return "unknown"  # often a race between replicas: worth a retry before isolating
    if isinstance(exc, _PG_PERMANENT):
        return "permanent"
    if isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError):
        return "transient"
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        return "permanent" if code in _S3_PERMANENT_CODES else "transient"
    if isinstance(exc, ParamValidationError):
        return "permanent"
    if isinstance(exc, KafkaUnavailable | KafkaError | OSError | TimeoutError | BotoCoreError):
        return "transient"
    if isinstance(exc, ValidationError | UnicodeError):
        return "permanent"
    return "unknown"


def reason_code(reason: str) -> str:
    """The bounded label of a dead-letter reason (``"permanent: DataError: ..."`` ->
    ``permanent``), for metrics and summaries."""
    return reason.split(":", 1)[0].strip()[:40] or "unknown"


@dataclass
class Stuck:
    """A partition whose batch keeps failing: where, since when, and with what."""

    topic: str
    partition: int
    offset: int
    since: float
    error: str
    attempts: int = 1

    def seconds(self, now: float | None = None) -> float:
        return (now if now is not None else time.monotonic()) - self.since

    def describe(self) -> dict[str, object]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "error": self.error,
            "attempts": self.attempts,
            "stuck_s": round(self.seconds(), 1),
        }


class StuckPartitions:
    """Partitions retrying the same offset; cleared when that offset is settled."""

    def __init__(self) -> None:
        self._stuck: dict[tuple[str, int], Stuck] = {}

    def failed(self, positions: dict[tuple[str, int], int], error: str) -> None:
        now = time.monotonic()
        for (topic, partition), offset in positions.items():
            current = self._stuck.get((topic, partition))
            if current is not None and current.offset == offset:
                current.error = error
                current.attempts += 1
            else:
                self._stuck[(topic, partition)] = Stuck(topic, partition, offset, now, error)

    def settled(self, partitions: set[tuple[str, int]]) -> None:
        for tp in partitions:
            self._stuck.pop(tp, None)

    def longer_than(self, seconds: float) -> list[Stuck]:
        now = time.monotonic()
        return [s for s in self._stuck.values() if s.seconds(now) > seconds]

    def all(self) -> list[Stuck]:
        return list(self._stuck.values())
