"""Archiving outcome events in segments: the consumer runner's holding handler.

:class:`SegmentWriter` turns each outcome into its log record (one NDJSON line), gathers
the lines in buffers per workspace, hour and partition (:mod:`services.archiver.segments`)
and stores a buffer when it reaches a bound: one PUT of the gzip segment, then its index
rows in one statement (:mod:`services.archiver.index`). What it promises:

- **Nothing is committed before it is stored.** The runner commits a partition's offsets
  only up to the first record still in memory (:meth:`SegmentWriter.held`), so offsets
  move past a record only once its segment *and* its index row are stored. A crash loses
  only memory; the records are read again from the committed offset.
- **Once in the archive.** Before buffering, requests the index already holds are
  skipped (one query per batch), and a request already waiting is replaced by its later
  event in place. A re-run after a crash therefore gathers exactly the records not
  indexed yet, from the same offsets: a buffer's first record, hence its segment key, is
  the same as before the crash, and the object is overwritten, never doubled. A replay of
  the outcome topic from offset 0 adds nothing.
- **Failures wait, they do not drop.** A failed upload or index write raises
  :class:`FlushFailed` (transient for the runner): it retries the batch with backoff,
  commits nothing, and readiness reports the stuck partition; buffers stay bounded because
  the runner fetches nothing new meanwhile. A record that cannot even be serialized is
  the only poison (:class:`~shared.kafka.PoisonMessage`, dead-lettered).
- **Rebalance and stop.** :meth:`SegmentWriter.release` drops the buffers of partitions
  taken away (their new owner reads them again from the last commit);
  :meth:`SegmentWriter.flush` stores everything before the runner's last commit.

Flushes run under the runner's lock (inside the handler, or through ``runner.exclusive()``
for the periodic age check), so a buffer never grows while it is being stored.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import orjson

from services.archiver import records
from services.archiver.index import ArchiveIndex, IndexRow
from services.archiver.metrics import (
    ALREADY_ARCHIVED,
    ARCHIVED,
    HELD_RECORDS,
    SEGMENT_BYTES,
    SEGMENT_RECORDS,
    UPLOAD_SECONDS,
)
from services.archiver.repository import Archive
from services.archiver.segments import (
    CONTENT_TYPE,
    GZIP_LEVEL,
    MEMBER_BYTES,
    Bounds,
    Buffer,
    Buffers,
    encode,
)
from shared.events import Outcome
from shared.kafka import Message, PoisonMessage
from shared.kafka.failures import Kind

# Segments larger than this are compressed in a worker thread (zlib releases the GIL), so
# the event loop keeps heartbeating and answering /readyz.
_THREAD_BYTES = 64 * 1024


class FlushFailed(Exception):
    """Storing segments or their index rows failed; the records stay held."""


def classify(exc: BaseException) -> Kind | None:
    """The archiver's rule for the runner: a failed flush is transient (the records are
    held, not lost, and cannot be dead-lettered one by one)."""
    return "transient" if isinstance(exc, FlushFailed) else None


@dataclass(frozen=True)
class Hooks:
    """Fault injection for tests; production passes none."""

    # Segments stored, their index rows not yet ("between upload and index").
    after_upload: Callable[[list[str]], None] | None = None
    # Index rows stored, offsets not committed yet ("between index and commit").
    after_index: Callable[[list[str]], None] | None = None


@dataclass(frozen=True)
class Sealed:
    """A buffer encoded as its segment object, with the index rows of its records."""

    buffer: Buffer
    key: str
    data: bytes
    rows: list[IndexRow]


def seal(buffer: Buffer, *, level: int, member_bytes: int) -> Sealed:
    key = buffer.key
    data, placements = encode(
        [item.line for item in buffer.items], level=level, member_bytes=member_bytes
    )
    rows = [
        IndexRow(facts=item.facts, segment_key=key, placement=placement)
        for item, placement in zip(buffer.items, placements, strict=True)
    ]
    return Sealed(buffer=buffer, key=key, data=data, rows=rows)


class SegmentWriter:
    """The batch handler (:meth:`handle`) and :class:`~shared.kafka.Holding` of the
    archiver. See the module docstring for what it promises."""

    def __init__(
        self,
        *,
        archive: Archive,
        index: ArchiveIndex,
        bounds: Bounds = Bounds(),
        level: int = GZIP_LEVEL,
        member_bytes: int = MEMBER_BYTES,
        concurrency: int = 16,
        hooks: Hooks = Hooks(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._archive = archive
        self._index = index
        self._buffers = Buffers(bounds)
        self._level = level
        self._member_bytes = member_bytes
        self._concurrency = concurrency
        self._hooks = hooks
        self._clock = clock

    # --- the runner's handler ---------------------------------------------------------------

    async def handle(self, messages: list[Message[Outcome]]) -> None:
        """Buffer the batch's new records, then store every buffer that is due."""
        prepared: list[tuple[Message[Outcome], records.RecordFacts, bytes]] = []
        for m in messages:
            if self._buffers.seen(m.topic, m.partition, m.offset):
                continue  # the runner hands a batch over again after a failed flush
            try:
                line = records.record_line(m.value)
                facts = records.facts_of(m.value)
            except (orjson.JSONEncodeError, TypeError, ValueError, KeyError) as exc:
                raise PoisonMessage(m, f"unarchivable: {type(exc).__name__}: {exc}") from exc
            prepared.append((m, facts, line))
        if prepared:
            asked = [
                f.request_id for _, f, _ in prepared if not self._buffers.waiting(f.request_id)
            ]
            known = await self._index.known(asked)
            now = self._clock()
            for m, facts, line in prepared:
                if facts.request_id in known:
                    self._buffers.skip(m.topic, m.partition, m.offset)
                else:
                    self._buffers.add(m.topic, m.partition, m.offset, facts, line, now)
            ALREADY_ARCHIVED.inc(sum(1 for _, f, _ in prepared if f.request_id in known))
        await self._store(self._buffers.due(self._clock()))

    # --- Holding ---------------------------------------------------------------------------

    def held(self) -> Mapping[tuple[str, int], int]:
        return self._buffers.held()

    def release(self, partitions: set[tuple[str, int]]) -> None:
        self._buffers.release(partitions)
        HELD_RECORDS.set(len(self._buffers))

    async def flush(self) -> None:
        """Store every buffer (the runner is stopping)."""
        await self._store(self._buffers.due(self._clock(), everything=True))

    async def flush_due(self) -> None:
        """Store the buffers that waited long enough (called periodically, under the
        runner's ``exclusive()``)."""
        await self._store(self._buffers.due(self._clock()))

    # --- storing ---------------------------------------------------------------------------

    async def _seal(self, buffer: Buffer) -> Sealed:
        if buffer.size > _THREAD_BYTES:
            return await asyncio.to_thread(
                seal, buffer, level=self._level, member_bytes=self._member_bytes
            )
        return seal(buffer, level=self._level, member_bytes=self._member_bytes)

    async def _upload(self, sealed: Sealed, limit: asyncio.Semaphore) -> None:
        async with limit:
            started = time.perf_counter()
            await self._archive.put_bytes(sealed.key, sealed.data, content_type=CONTENT_TYPE)
            UPLOAD_SECONDS.observe(time.perf_counter() - started)

    async def _store(self, buffers: Sequence[Buffer]) -> None:
        """Upload the buffers' segments (concurrently), then index the stored ones in one
        statement, then forget them. :class:`FlushFailed` if any could not be stored (the
        others are stored and forgotten)."""
        if not buffers:
            HELD_RECORDS.set(len(self._buffers))
            return
        try:
            sealed = [await self._seal(b) for b in buffers]
            limit = asyncio.Semaphore(self._concurrency)
            failures = await _settle([self._upload(s, limit) for s in sealed])
            stored = [s for s, failure in zip(sealed, failures, strict=True) if failure is None]
            if stored:
                keys = [s.key for s in stored]
                if self._hooks.after_upload:
                    self._hooks.after_upload(keys)
                await self._index.insert([row for s in stored for row in s.rows])
                if self._hooks.after_index:
                    self._hooks.after_index(keys)
                self._forget(stored)
            first = next((f for f in failures if f is not None), None)
            if first is not None:
                raise first
        except Exception as exc:
            raise FlushFailed(f"{type(exc).__name__}: {exc}") from exc
        finally:
            HELD_RECORDS.set(len(self._buffers))

    def _forget(self, stored: list[Sealed]) -> None:
        statuses: Counter[str] = Counter()
        for s in stored:
            self._buffers.stored(s.buffer)
            SEGMENT_RECORDS.observe(len(s.rows))
            SEGMENT_BYTES.observe(len(s.data))
            statuses.update(row.facts.status for row in s.rows)
        for status, n in statuses.items():
            ARCHIVED.labels(status).inc(n)


async def _settle(work: list[Awaitable[None]]) -> list[Exception | None]:
    """Run ``work`` concurrently to the end; each one's exception (or None). A failure does
    not cancel the others: what was uploaded can still be indexed."""
    results = await asyncio.gather(*work, return_exceptions=True)
    out: list[Exception | None] = []
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, Exception):
            raise result  # cancellation, KeyboardInterrupt
        out.append(result if isinstance(result, Exception) else None)
    return out
