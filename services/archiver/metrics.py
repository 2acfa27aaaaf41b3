"""The archiver's Prometheus metrics (the consumer runner adds lag, batch size and dead
letters)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

ARCHIVED = Counter("leadwire_archived_total", "Records stored in the archive", ["status"])
UPLOAD_SECONDS = Histogram(
    "leadwire_archive_upload_seconds",
    "Time to store one record and its pointer",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
S3_ERRORS = Counter("leadwire_archive_s3_errors_total", "Failed S3 writes", ["code"])
