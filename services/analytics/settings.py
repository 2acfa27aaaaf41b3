"""Analytics settings (``LEADWIRE_`` prefix), read once in ``__main__``."""

from __future__ import annotations

from pydantic import Field

from shared.settings import CommonSettings


class AnalyticsSettings(CommonSettings):
    # Consumer group; one group for every analytics replica.
    analytics_group: str = "leadwire-analytics"
    # Outcome messages handed to one batch (one Postgres transaction per batch).
    analytics_max_batch: int = Field(default=500, ge=1, le=5000)
    # How long the broker may hold a fetch to gather outcomes (up to 1 MiB) into one
    # batch: at a steady rate, a transaction every this often instead of one per few
    # leads, whose CPU the lead's own path (gateway, processor) needs. 0: at once.
    analytics_gather_ms: int = Field(default=500, ge=0, le=5000)
    # DDSketch relative accuracy of every percentile (0.01 = within 1 % of the true value).
    analytics_sketch_accuracy: float = Field(default=0.01, gt=0, lt=0.5)
    # Event ids are remembered this long; an outcome older than this is not counted
    # (keep it well above the outcome topic's retention so a replay never double counts).
    analytics_dedupe_days: int = Field(default=30, ge=1)
    # Per-minute buckets (time series, 24 h window, alert windows) are kept this long.
    analytics_minute_retention_days: int = Field(default=14, ge=2)
    # Recent errors kept per webhook for the dashboard.
    analytics_recent_errors: int = Field(default=20, ge=1, le=1000)
    # How often retention pruning runs (0 turns it off).
    analytics_prune_interval_s: float = Field(default=600.0, ge=0)

    # Dead letters: the consumers' dead-letter topic, counted per webhook and workspace by
    # a consumer group of its own.
    analytics_deadletter_group: str = "leadwire-analytics-deadletters"
    # The dead-letter growth alert (a system-health alert): at least this many new dead
    # letters within the window fire it, a window without any resolves it; checked this
    # often.
    analytics_deadletter_window_minutes: float = Field(default=5.0, gt=0)
    analytics_deadletter_alert_min: int = Field(default=1, ge=1)
    analytics_deadletter_check_s: float = Field(default=15.0, gt=0)

    # Alert defaults (per-webhook overrides: table analytics_alert_thresholds).
    analytics_alert_error_rate: float = Field(default=10.0, ge=0, le=100)  # percent
    analytics_alert_p95_ms: float = Field(default=1000.0, gt=0)
    analytics_alert_min_requests: int = Field(default=20, ge=1)
    analytics_alert_window_minutes: int = Field(default=5, ge=1, le=1440)
    # How often firing alerts are re-checked when no new outcome arrives (they resolve
    # when the window no longer breaches, e.g. because traffic stopped).
    analytics_alert_sweep_s: float = Field(default=15.0, gt=0)
    # How often the notifier's new deliveries (first email or SMS sent) are copied to the
    # accepted leads for the vendor scorecards' speed-to-lead.
    analytics_delivery_sync_s: float = Field(default=5.0, gt=0)
    # How often unpublished alert events are retried.
    analytics_outbox_retry_s: float = Field(default=2.0, gt=0)

    # Prometheus: label sets for at most this many webhooks (most recently active); the
    # rest are summed under webhook="other".
    analytics_metrics_max_webhooks: int = Field(default=500, ge=1, le=10000)
    # How often the Prometheus figures are re-read from Postgres.
    analytics_metrics_refresh_s: float = Field(default=10.0, gt=0)
    # Live dashboard: the least time between two pushes to one stream, and the longest
    # time without one (the rolling window moves even without new outcomes).
    analytics_stream_min_interval_s: float = Field(default=0.5, ge=0)
    analytics_stream_refresh_s: float = Field(default=15.0, gt=0)
    # A live stream checks its key (or session) again this often and ends when it no
    # longer works (revoked, expired, signed out, workspace disabled).
    analytics_stream_recheck_s: float = Field(default=2.0, gt=0, le=60)

    # Dashboard sessions (the key asked for once): how long one lasts, and whether its
    # cookie is sent over HTTPS only even when this service sees plain HTTP (behind a
    # TLS-terminating proxy, set it).
    analytics_session_hours: float = Field(default=8.0, gt=0, le=24 * 30)
    analytics_cookie_secure: bool = False
