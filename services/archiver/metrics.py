"""The archiver's Prometheus metrics (the consumer runner adds lag, batch size and dead
letters)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ARCHIVED = Counter("leadwire_archived_total", "Records stored in the archive", ["status"])
ALREADY_ARCHIVED = Counter(
    "leadwire_archive_already_archived_total",
    "Outcomes skipped because the index holds their request already (redeliveries, replays)",
)
HELD_RECORDS = Gauge(
    "leadwire_archive_held_records", "Records buffered in memory, not stored in a segment yet"
)
UPLOAD_SECONDS = Histogram(
    "leadwire_archive_upload_seconds",
    "Time to store one segment object",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
SEGMENT_RECORDS = Histogram(
    "leadwire_archive_segment_records",
    "Records per stored segment",
    buckets=(1, 10, 50, 100, 500, 1000, 2500, 5000, 10000),
)
SEGMENT_BYTES = Histogram(
    "leadwire_archive_segment_bytes",
    "Compressed size of a stored segment",
    buckets=(1e3, 1e4, 1e5, 2.5e5, 5e5, 1e6, 2.5e6, 5e6, 1e7),
)
S3_ERRORS = Counter("leadwire_archive_s3_errors_total", "Failed S3 writes", ["code"])
