"""The management API's Prometheus metrics. Labels are route templates (``/v1/workspaces/
{workspace_id}/webhooks``), never ids, so their number is bounded by the route table."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "leadwire_api_requests_total",
    "Management API answers, by operation and status",
    ["operation", "status"],
)
LATENCY = Histogram(
    "leadwire_api_request_seconds",
    "Time to answer a management API request, by operation",
    ["operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
KEY_REFUSALS = Counter(
    "leadwire_api_key_refusals_total",
    "Requests refused for their credential, by reason (missing, invalid, revoked, expired ...)",
    ["reason"],
)
