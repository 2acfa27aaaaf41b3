"""Gateway settings (env prefix ``LEADWIRE_``), read once in ``__main__``."""

from __future__ import annotations

import os

from pydantic import Field

from shared.settings import CommonSettings


class IngestSettings(CommonSettings):
    # Processes serving the port together (SO_REUSEPORT); 0 = one per core.
    ingest_workers: int = Field(default=0, ge=0)

    # Webhook + workspace config cache; LISTEN 'leadwire_config' drops entries at once.
    config_ttl_s: float = Field(default=60.0, gt=0)
    # Unknown webhook ids are remembered this long, so a flood of them never hits Postgres.
    config_negative_ttl_s: float = Field(default=5.0, ge=0)
    config_cache_size: int = Field(default=100_000, gt=0)

    # Request limits. A webhook's own max_body_bytes overrides the default.
    max_body_bytes: int = Field(default=256 * 1024, gt=0)
    body_timeout_s: float = Field(default=10.0, gt=0)
    json_max_depth: int = Field(default=32, gt=0)
    # Object members plus array items, over the whole document.
    json_max_keys: int = Field(default=2_000, gt=0)
    # One header line (name + value) and the number of headers; beyond them: 431.
    max_header_bytes: int = Field(default=8_190, gt=0)
    max_headers: int = Field(default=100, gt=0)

    # Rate limits (token buckets, per process; see docs/ingest.md for several workers).
    # A webhook's rate_limit_per_minute wins; this applies to webhooks without one (0: none).
    webhook_rate_per_minute: int = Field(default=0, ge=0)
    ip_rate_per_minute: int = Field(default=6_000, ge=0)
    ip_burst: int = Field(default=300, gt=0)
    # Gateway hosts behind the load balancer: every limit is shared out among hosts x workers.
    ingest_hosts: int = Field(default=1, ge=1)
    # Comma-separated CIDRs of proxies whose X-Forwarded-For is believed (empty: none).
    trusted_proxies: str = ""

    # Kafka: how long a POST waits for the acks=all acknowledgement before answering 503.
    enqueue_timeout_s: float = Field(default=5.0, gt=0)
    kafka_probe_interval_s: float = Field(default=5.0, gt=0)
    retry_after_s: int = Field(default=5, gt=0)

    # A worker binds its port once Kafka and Postgres answer, or after this long anyway
    # (then it answers 503 until they do).
    startup_ready_wait_s: float = Field(default=30.0, ge=0)

    # How long an unkeyed request answered 503 after a publish timeout is remembered, so
    # a byte-identical retry reuses its request id (services/ingest/indeterminate.py).
    indeterminate_ttl_s: float = Field(default=900.0, gt=0)

    # A rejection (400/409) is published and stored in the background; each step is
    # retried this long while Kafka or Postgres is away.
    rejection_retry_s: float = Field(default=900.0, gt=0)

    # Prefer: wait=N is clamped to this.
    max_wait_s: float = Field(default=30.0, ge=0)

    # In-process memory of recent keyed and accepted requests (answers retries and
    # status queries without a database hit).
    recent_requests_size: int = Field(default=100_000, gt=0)
    # Distinct webhook label values in /metrics before the rest count as "other".
    metrics_max_webhooks: int = Field(default=1_000, gt=0)

    # Facebook Lead Ads (facebook.py): where the lead's fields are fetched, each answer's
    # bound, how long a lead's fetch is retried (5xx, rate limits, timeouts) before it
    # fails, and how many fetches run at once per worker.
    facebook_graph_url: str = "https://graph.facebook.com/v21.0"
    facebook_fetch_timeout_s: float = Field(default=10.0, gt=0)
    facebook_fetch_retry_s: float = Field(default=300.0, ge=0)
    facebook_fetch_concurrency: int = Field(default=16, gt=0)
    facebook_fetch_group: str = "leadwire-ingest-facebook"

    def workers(self) -> int:
        return self.ingest_workers or os.cpu_count() or 1
