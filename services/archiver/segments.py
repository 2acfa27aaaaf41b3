"""Segments: many log records in one object, and the buffers they are gathered in. Pure:
no I/O (the writer in :mod:`services.archiver.handlers` uploads and indexes them).

A segment is gzip-compressed NDJSON, one log record per line, read as it is by ``zcat``,
``jq`` or DuckDB's ``read_json``. It holds the records of one workspace whose requests
were received in one UTC hour, consumed from one partition of the outcome topic::

    archive/<workspace_id>/<yyyy>/<mm>/<dd>/<hh>/<partition>-<first offset>.ndjson.gz

The key is derived from the partition and the offset of the segment's first record, so a
re-run after a crash (which reads again from the committed offset, skipping what the index
already holds) builds the segment again under the same key and overwrites it: the archive
never holds a record twice. Segments written by ``leadwire archive compact`` from the
first layout end in ``compacted-<digest>.ndjson.gz`` instead.

The object is a series of gzip members of about ``member_bytes`` of NDJSON each (a gzip
file may be several members back to back; every gzip reader reads them as one stream).
The index keeps each record's member (byte range and first line), so ``archive show``
reads one member with a ranged GET instead of the whole segment.
"""

from __future__ import annotations

import hashlib
import re
import uuid
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from services.archiver.records import RecordFacts

PREFIX = "archive/"
CONTENT_TYPE = "application/gzip"
SUFFIX = ".ndjson.gz"
GZIP_LEVEL = 3
MEMBER_BYTES = 256 * 1024  # of NDJSON per gzip member

_KEY = re.compile(
    r"^archive/(?P<workspace>[0-9a-f-]{36})/(?P<y>\d{4})/(?P<m>\d{2})/(?P<d>\d{2})/(?P<h>\d{2})/"
    r"(?P<name>[A-Za-z0-9_-]+)\.ndjson\.gz$"
)

# (workspace, hour, logical topic, partition): the records one segment gathers.
Group = tuple[uuid.UUID, datetime, str, int]


# --- keys -------------------------------------------------------------------------------


def hour_of(moment: datetime) -> datetime:
    """The UTC hour ``moment`` falls in."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def hour_prefix(workspace_id: uuid.UUID, hour: datetime) -> str:
    return f"{PREFIX}{workspace_id}/{hour_of(hour):%Y/%m/%d/%H}/"


def segment_key(workspace_id: uuid.UUID, hour: datetime, partition: int, first_offset: int) -> str:
    return f"{hour_prefix(workspace_id, hour)}{partition}-{first_offset}{SUFFIX}"


def compacted_key(workspace_id: uuid.UUID, hour: datetime, request_ids: Iterable[uuid.UUID]) -> str:
    """The key of a segment compacted from first-layout objects: the same requests give the
    same key (a compaction run again overwrites), other requests another one."""
    digest = hashlib.sha256("".join(sorted(str(r) for r in request_ids)).encode()).hexdigest()
    return f"{hour_prefix(workspace_id, hour)}compacted-{digest[:16]}{SUFFIX}"


@dataclass(frozen=True, slots=True)
class SegmentKey:
    workspace_id: uuid.UUID
    hour: datetime
    name: str


def parse_segment_key(key: str) -> SegmentKey | None:
    """The parts of a segment key, or None for any other key."""
    m = _KEY.match(key)
    if not m:
        return None
    try:
        hour = datetime(int(m["y"]), int(m["m"]), int(m["d"]), int(m["h"]), tzinfo=UTC)
        return SegmentKey(workspace_id=uuid.UUID(m["workspace"]), hour=hour, name=m["name"])
    except ValueError:
        return None


# --- the object ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a record is in its segment: its line (1-based) and the gzip member holding it
    (bytes ``[member_offset, member_offset + member_length)``, first line
    ``member_first_line``)."""

    line: int
    member_offset: int
    member_length: int
    member_first_line: int


def encode(
    lines: Sequence[bytes], *, level: int = GZIP_LEVEL, member_bytes: int = MEMBER_BYTES
) -> tuple[bytes, list[Placement]]:
    """The segment object of ``lines`` (each ending with a newline), and each line's
    placement. Deterministic: the same lines give the same bytes (no gzip timestamp)."""
    parts: list[bytes] = []
    placements: list[Placement] = []
    offset = 0
    start = 0
    while start < len(lines):
        end, size = start, 0
        while end < len(lines) and (end == start or size + len(lines[end]) <= member_bytes):
            size += len(lines[end])
            end += 1
        member = zlib.compress(b"".join(lines[start:end]), level, wbits=31)  # gzip, mtime 0
        placements += [
            Placement(
                line=i + 1,
                member_offset=offset,
                member_length=len(member),
                member_first_line=start + 1,
            )
            for i in range(start, end)
        ]
        parts.append(member)
        offset += len(member)
        start = end
    return b"".join(parts), placements


def decode(data: bytes) -> list[bytes]:
    """The lines of a segment, or of one of its members (without their newlines)."""
    out: list[bytes] = []
    while data:
        inflate = zlib.decompressobj(wbits=31)
        out.append(inflate.decompress(data))
        data = inflate.unused_data
    return b"".join(out).splitlines()


# --- buffers ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bounds:
    """When a buffer becomes a segment: at ``records`` records or ``bytes`` of NDJSON, when
    its first record waited ``age_s``, or when nothing was added for ``idle_s``."""

    records: int = 5000
    bytes: int = 8 * 1024 * 1024
    age_s: float = 30.0
    idle_s: float = 1.0


@dataclass(slots=True)
class Held:
    """One record waiting in a buffer."""

    offset: int
    facts: RecordFacts
    line: bytes


@dataclass
class Buffer:
    """The records of one :data:`Group` not yet stored, in offset order."""

    group: Group
    first_offset: int
    opened_at: float
    touched_at: float
    items: list[Held] = field(default_factory=list)
    size: int = 0

    @property
    def key(self) -> str:
        workspace_id, hour, _, partition = self.group
        return segment_key(workspace_id, hour, partition, self.first_offset)

    def full(self, bounds: Bounds) -> bool:
        return len(self.items) >= bounds.records or self.size >= bounds.bytes

    def due(self, bounds: Bounds, now: float) -> bool:
        return (
            self.full(bounds)
            or now - self.opened_at >= bounds.age_s
            or now - self.touched_at >= bounds.idle_s
        )


class Buffers:
    """Records waiting to be stored, by :data:`Group`; what the runner must not commit.

    - A record is added once per (topic, partition, offset): a batch handed over again
      (the runner retries it after a failed flush) adds nothing twice.
    - A request already waiting is replaced in place by its later event (same line, same
      segment), so a request is in memory once and its line does not depend on how the
      messages were batched.
    """

    def __init__(self, bounds: Bounds) -> None:
        self.bounds = bounds
        self._buffers: dict[Group, Buffer] = {}
        self._where: dict[uuid.UUID, tuple[Group, int]] = {}
        self._seen: dict[tuple[str, int], int] = {}
        self._count = 0

    def __len__(self) -> int:
        """Records held."""
        return self._count

    def seen(self, topic: str, partition: int, offset: int) -> bool:
        """True when this message was taken (or skipped) already."""
        return offset <= self._seen.get((topic, partition), -1)

    def skip(self, topic: str, partition: int, offset: int) -> None:
        """The message needs no storing (already archived): only remember it was seen."""
        self._seen[(topic, partition)] = max(offset, self._seen.get((topic, partition), -1))

    def waiting(self, request_id: uuid.UUID) -> bool:
        return request_id in self._where

    def add(
        self, topic: str, partition: int, offset: int, facts: RecordFacts, line: bytes, now: float
    ) -> None:
        self.skip(topic, partition, offset)
        found = self._where.get(facts.request_id)
        if found is not None:
            waiting = self._buffers[found[0]]
            old = waiting.items[found[1]]
            waiting.size += len(line) - len(old.line)
            waiting.items[found[1]] = Held(old.offset, facts, line)
            waiting.touched_at = now
            return
        group = (facts.workspace_id, hour_of(facts.received_at), topic, partition)
        buffer = self._buffers.get(group)
        if buffer is None:
            buffer = self._buffers[group] = Buffer(group, offset, opened_at=now, touched_at=now)
        self._where[facts.request_id] = (group, len(buffer.items))
        self._count += 1
        buffer.items.append(Held(offset, facts, line))
        buffer.size += len(line)
        buffer.touched_at = now

    def due(self, now: float, *, everything: bool = False) -> list[Buffer]:
        """Buffers to store now (all of them with ``everything``)."""
        return [b for b in self._buffers.values() if everything or b.due(self.bounds, now)]

    def stored(self, buffer: Buffer) -> None:
        """The buffer's segment and index rows are stored: forget it."""
        if self._buffers.get(buffer.group) is buffer:
            del self._buffers[buffer.group]
            self._count -= len(buffer.items)
            for item in buffer.items:
                self._where.pop(item.facts.request_id, None)

    def held(self) -> Mapping[tuple[str, int], int]:
        """Per (topic, partition), the lowest offset still only in memory."""
        low: dict[tuple[str, int], int] = {}
        for (_, _, topic, partition), buffer in self._buffers.items():
            tp = (topic, partition)
            low[tp] = min(low.get(tp, buffer.first_offset), buffer.first_offset)
        return low

    def release(self, partitions: set[tuple[str, int]]) -> None:
        """Drop everything of these partitions (their new owner reads them again)."""
        for group in [g for g in self._buffers if (g[2], g[3]) in partitions]:
            dropped = self._buffers.pop(group)
            self._count -= len(dropped.items)
            for item in dropped.items:
                self._where.pop(item.facts.request_id, None)
        for tp in partitions:
            self._seen.pop(tp, None)
