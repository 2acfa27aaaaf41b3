"""Archiver settings (``LEADWIRE_`` prefix), read once in ``__main__``."""

from __future__ import annotations

from pydantic import Field

from shared.settings import CommonSettings


class ArchiverSettings(CommonSettings):
    # Archives older than this (by the day the request was received, UTC) are deleted:
    # by an S3 lifecycle rule where the server accepts one, else by the archiver's own
    # periodic prune (and `leadwire archive prune`).
    archive_retention_days: int = Field(default=90, ge=1)
    # Uploads in flight at once (per archiver process).
    archive_upload_concurrency: int = Field(default=16, ge=1, le=256)
    # Outcome messages handed to one batch (offsets committed after the whole batch).
    archive_max_batch: int = Field(default=500, ge=1)
    # Consumer group; one group for every archiver replica.
    archiver_group: str = "leadwire-archiver"
    # How often the archiver prunes expired archives itself when the S3 server has no
    # lifecycle rules (0 turns it off; `leadwire archive prune` still works).
    archive_prune_interval_s: float = Field(default=3600.0, ge=0)
