"""What the consumer runner hands a handler, and what a handler can tell the runner."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from aiokafka.structs import ConsumerRecord

E = TypeVar("E")


class PoisonMessage(Exception):
    """Raised by a handler for a message that can never be handled; it is dead-lettered."""

    def __init__(self, message: Message[Any], reason: str) -> None:
        super().__init__(reason)
        self.message = message
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Message(Generic[E]):
    """A decoded message and where it came from."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: E
    raw: bytes
    timestamp_ms: int


BatchHandler = Callable[[list[Message[E]]], Awaitable[None]]


class Holding(Protocol):
    """A handler that keeps messages in memory past its return (e.g. the archiver's
    segments) tells the runner what it still holds, so nothing held is committed.

    - ``held()``: per (logical topic, partition), the lowest offset still only in memory;
      offsets are committed up to it, never past it.
    - ``release(partitions)``: the partitions were taken away (a rebalance): drop what is
      held of them; their new owner reads them again from the last commit.
    - ``flush()``: the runner is stopping: make everything held durable (it is then
      committed).
    """

    def held(self) -> Mapping[tuple[str, int], int]: ...

    def release(self, partitions: set[tuple[str, int]]) -> None: ...

    async def flush(self) -> None: ...


def first_offsets(messages: Sequence[Message[Any]]) -> dict[tuple[str, int], int]:
    """Per (logical topic, partition), the lowest offset among ``messages``."""
    first: dict[tuple[str, int], int] = {}
    for m in messages:
        key = (m.topic, m.partition)
        if key not in first or m.offset < first[key]:
            first[key] = m.offset
    return first


def position_of(
    records: Sequence[Message[Any]] | Sequence[ConsumerRecord[bytes, bytes]],
) -> dict[str, Any]:
    """Log context for the messages being handled: ``topic``, ``partition`` and ``offset``
    (the first; ``last_offset`` when there are more), or per-partition ranges when a batch
    spans partitions. The runner binds it to every log line of the handling."""
    if not records:
        return {}
    first = records[0]
    spans: dict[int, list[int]] = {}
    for r in records:
        span = spans.setdefault(r.partition, [r.offset, r.offset])
        span[0] = min(span[0], r.offset)
        span[1] = max(span[1], r.offset)
    if len(spans) == 1:
        low, high = spans[first.partition]
        context: dict[str, Any] = {"topic": first.topic, "partition": first.partition}
        context["offset"] = low
        if high != low:
            context["last_offset"] = high
        return context
    return {
        "topic": first.topic,
        "offsets": ",".join(f"{p}:{lo}-{hi}" for p, (lo, hi) in sorted(spans.items())),
    }
