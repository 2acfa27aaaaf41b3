"""Retention: delete archives older than N days.

Where the S3 server accepts a lifecycle rule, the archiver installs one at startup
(expire after N days, whole bucket). The S3 server of the local stack (versitygw, posix
backend) has no lifecycle support, so the archiver prunes by itself every
``archive_prune_interval_s`` and ``leadwire archive prune`` does the same on demand.
(A lifecycle rule expires objects, not index rows: the prune also runs there to drop the
rows of expired segments, see :func:`prune`.)

Pruning goes by the day the request was received (UTC), never by the object's
LastModified: a day is deleted once it ended at least N days ago. A segment holds one
hour of one workspace, so whole segments expire; each goes with its index rows (rows
first: a row whose segment is gone would read as a broken archive, a segment without
rows is only an orphan the next prune removes). Segments are found through the index
(``received_at`` before the cut-off) and, for orphans (a segment stored by a run that
crashed before indexing it and was not rewritten), by listing the expired day folders.

Objects of the first layout (one per request) are pruned as before: the walk descends
``<workspace>/<webhook>/<yyyy>/<mm>/<dd>/`` with delimiter listings and deletes expired
day folders, each record with its ``by-request/`` pointer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

from services.archiver import records, segments
from services.archiver.index import ArchiveIndex
from services.archiver.repository import Archive
from services.archiver.search import legacy_days, segment_days


@dataclass
class PruneResult:
    older_than_days: int
    dry_run: bool
    cutoff: str = ""
    segments: int = 0
    records: int = 0
    days: list[str] = field(default_factory=list)
    legacy_records: int = 0
    pointers: int = 0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def cutoff_for(now: datetime, older_than_days: int) -> datetime:
    """Requests received before this instant are on days that ended N days ago."""
    moment = (now - timedelta(days=older_than_days)).astimezone(UTC)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


async def prune(
    archive: Archive,
    index: ArchiveIndex,
    *,
    older_than_days: int,
    now: datetime,
    dry_run: bool = False,
) -> PruneResult:
    """Delete (or with ``dry_run`` count) every segment, index row and first-layout record
    of requests received on a day that ended N days before now."""
    cutoff = cutoff_for(now, older_than_days)
    result = PruneResult(
        older_than_days=older_than_days, dry_run=dry_run, cutoff=cutoff.isoformat()
    )
    expired = await index.expired(cutoff)
    keys = set(expired.segments) | set(await _orphans(archive, cutoff))
    result.segments = len(keys)
    result.records = expired.records
    if keys and not dry_run:
        ordered = sorted(keys)
        await index.delete_segments(ordered)
        await archive.delete(ordered)
    await _prune_legacy(archive, result, now=now)
    return result


async def _orphans(archive: Archive, cutoff: datetime) -> list[str]:
    """Segment objects in day folders before ``cutoff`` (indexed or not)."""
    found: list[str] = []
    async for prefix, day in segment_days(archive):
        if datetime(day.year, day.month, day.day, tzinfo=UTC) < cutoff:
            found += [k async for k in archive.keys(prefix) if segments.parse_segment_key(k)]
    return found


async def _prune_legacy(archive: Archive, result: PruneResult, *, now: datetime) -> None:
    """The first layout: expired ``<workspace>/<webhook>/<yyyy>/<mm>/<dd>/`` folders."""
    async for prefix, day in legacy_days(archive):
        if records.expired_day(day, now=now, older_than_days=result.older_than_days):
            await _prune_legacy_day(archive, prefix, result)


async def _prune_legacy_day(archive: Archive, prefix: str, result: PruneResult) -> None:
    keys: list[str] = []
    pointers: list[str] = []
    async for key in archive.keys(prefix):
        keys.append(key)
        parts = records.parse_record_key(key)
        if parts is not None:
            pointers.append(records.pointer_key(parts.request_id))
    if not keys:
        return
    result.days.append(prefix.rstrip("/"))
    result.legacy_records += len(pointers)
    result.pointers += len(pointers)
    if not result.dry_run:
        # Records first: a pointer without its record reads as "not archived", never the
        # other way round.
        await archive.delete(keys)
        await archive.delete(pointers)
