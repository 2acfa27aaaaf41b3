"""Archiver settings (``LEADWIRE_`` prefix), read once in ``__main__``."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from services.archiver.segments import Bounds
from shared.settings import CommonSettings


class ArchiverSettings(CommonSettings):
    # The archive bucket is its store: its S3 keys are checked in production.
    uses_s3: ClassVar[bool] = True

    # Archives older than this (by the day the request was received, UTC) are deleted:
    # by an S3 lifecycle rule where the server accepts one, else by the archiver's own
    # periodic prune (and `leadwire archive prune`).
    archive_retention_days: int = Field(default=90, ge=1)
    # A segment is stored when it holds this many records, or this many bytes of NDJSON
    # (before compression), or its first record waited this long, or nothing was added to
    # it for this long (so a burst is archived, and committed, soon after it ends).
    archive_segment_records: int = Field(default=5000, ge=1)
    archive_segment_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    archive_segment_age_s: float = Field(default=30.0, gt=0)
    archive_segment_idle_s: float = Field(default=1.0, gt=0)
    # gzip level of segments (1 fastest .. 9 smallest). Measured on lead records: level 3
    # compresses ~4.8x for ~60 % of level 6's CPU (~5.4x); see docs/archiver.md.
    archive_gzip_level: int = Field(default=3, ge=1, le=9)
    # Segment uploads in flight at once (per archiver process).
    archive_upload_concurrency: int = Field(default=16, ge=1, le=256)
    # Outcome messages handed to one batch (one index look-up per batch).
    archive_max_batch: int = Field(default=500, ge=1)
    # How long the broker may hold a fetch to gather outcomes (up to 1 MiB) into one
    # batch (one index look-up per batch); 0: at once.
    archive_gather_ms: int = Field(default=500, ge=0, le=5000)
    # Consumer group; one group for every archiver replica.
    archiver_group: str = "leadwire-archiver"
    # How often the archiver prunes expired archives itself when the S3 server has no
    # lifecycle rules (0 turns it off; `leadwire archive prune` still works).
    archive_prune_interval_s: float = Field(default=3600.0, ge=0)

    def segment_bounds(self) -> Bounds:
        return Bounds(
            records=self.archive_segment_records,
            bytes=self.archive_segment_bytes,
            age_s=self.archive_segment_age_s,
            idle_s=self.archive_segment_idle_s,
        )
