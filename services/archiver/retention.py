"""Retention: delete archives older than N days.

Where the S3 server accepts a lifecycle rule, the archiver installs one at startup
(expire after N days, whole bucket). The S3 server of the local stack (versitygw, posix
backend) has no lifecycle support, so the archiver prunes by itself every
``archive_prune_interval_s`` and ``leadwire archive prune`` does the same on demand.

Pruning goes by the **key date** (the UTC day the request was received), not by the
object's LastModified: a replayed outcome rewrites an old record, which must not make it
live longer. A day is deleted once it ended at least N days ago. The walk descends the
key hierarchy (workspace / webhook / year / month / day) with delimiter listings, so it
reads only day folders' names until it reaches an expired day; each record goes with its
``by-request/`` pointer.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from datetime import date, datetime

from services.archiver import records
from services.archiver.repository import Archive


@dataclass
class PruneResult:
    older_than_days: int
    dry_run: bool
    days: list[str] = field(default_factory=list)
    records: int = 0
    pointers: int = 0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _is_uuid(segment: str) -> bool:
    try:
        uuid.UUID(segment)
        return True
    except ValueError:
        return False


def _last_segment(prefix: str) -> str:
    return prefix.rstrip("/").rsplit("/", 1)[-1]


async def prune(
    archive: Archive, *, older_than_days: int, now: datetime, dry_run: bool = False
) -> PruneResult:
    """Delete every record (and pointer) received on a day that ended N days before now."""
    result = PruneResult(older_than_days=older_than_days, dry_run=dry_run)
    for workspace in await archive.children(""):
        if not _is_uuid(_last_segment(workspace)):
            continue  # by-request/ pointers go with their records
        for webhook in await archive.children(workspace):
            if not _is_uuid(_last_segment(webhook)):
                continue
            for year in await archive.children(webhook):
                for month in await archive.children(year):
                    for day_prefix in await archive.children(month):
                        try:
                            day = date(
                                int(_last_segment(year)),
                                int(_last_segment(month)),
                                int(_last_segment(day_prefix)),
                            )
                        except ValueError:
                            continue
                        if not records.expired_day(day, now=now, older_than_days=older_than_days):
                            continue
                        await _prune_day(archive, day_prefix, result)
    return result


async def _prune_day(archive: Archive, prefix: str, result: PruneResult) -> None:
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
    result.records += len(pointers)
    result.pointers += len(pointers)
    if not result.dry_run:
        # Records first: a pointer without its record reads as "not archived", never the
        # other way round.
        await archive.delete(keys)
        await archive.delete(pointers)
