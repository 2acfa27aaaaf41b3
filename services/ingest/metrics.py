"""Gateway metrics. Kafka produce latency is ``leadwire_kafka_produce_seconds`` (shared.kafka)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from shared.metrics import Children

REQUESTS = Counter(
    "leadwire_ingest_requests_total",
    "Webhook requests by webhook and HTTP status",
    ["webhook", "status"],
)
LATENCY = Histogram(
    "leadwire_ingest_request_seconds",
    "Time from request start to response, by route and HTTP status",
    ["route", "status"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
REJECTIONS = Counter(
    "leadwire_ingest_rejections_total",
    "Requests refused, by reason (auth, limits, validation, conflicts, Kafka unavailable)",
    ["reason"],
)
REJECTION_PUBLISH_FAILED = Counter(
    "leadwire_ingest_rejection_record_failures_total",
    "Rejections whose outcome event or status row could not be written",
    ["target"],
)
PAYLOAD_DROPPED = Counter(
    "leadwire_ingest_rejection_payload_dropped_total",
    "Rejections recorded without their payload: the target refused it for what it holds",
    ["target"],
)

UNKNOWN = "unknown"
OTHER = "other"


class WebhookLabels:
    """Bounded label values: the first ``limit`` webhooks seen get their own, then 'other'."""

    def __init__(self, limit: int = 1000) -> None:
        self._limit = limit
        self._seen: set[str] = set()

    def __call__(self, webhook_id: str | None) -> str:
        if webhook_id is None:
            return UNKNOWN
        if webhook_id in self._seen:
            return webhook_id
        if len(self._seen) < self._limit:
            self._seen.add(webhook_id)
            return webhook_id
        return OTHER


requests_child = Children(REQUESTS)
latency_child = Children(LATENCY)
