"""The notifier's Prometheus metrics (served on /metrics)."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from shared.kafka.consumer import DEADLETTERED as DEADLETTER_ENTRIES

SENT = Counter(
    "leadwire_notifications_sent_total",
    "Notifications the provider accepted (or pushed)",
    ["channel"],
)
MESSAGES = Counter(
    "leadwire_notification_messages_total",
    "Provider messages sent (a digest counts once)",
    ["channel"],
)
RETRIED = Counter(
    "leadwire_notifications_retried_total",
    "Notifications scheduled for another attempt",
    ["channel"],
)
DEADLETTERED = Counter(
    "leadwire_notifications_deadlettered_total",
    "Notifications given up on and dead-lettered",
    ["channel", "reason"],
)
# In leadwire_deadlettered_total (the consumers' dead letters, per source topic and
# reason), the notifier's own dead-letter entries count under this topic label.
NOTIFICATIONS = "notifications"


def dead_lettered(entry: dict[str, Any], reason: str) -> None:
    """Count one dead-letter entry: its sends per channel and reason, and the entry itself
    in ``leadwire_deadlettered_total{topic="notifications", reason}``."""
    DEADLETTERED.labels(entry["channel"], reason).inc(len(entry["send_ids"]))
    DEADLETTER_ENTRIES.labels(NOTIFICATIONS, reason).inc()


QUEUE_DEPTH = Gauge(
    "leadwire_notification_queue_depth",
    "Notifications waiting to be sent (pending or sending)",
    ["channel"],
)
DELAY = Histogram(
    "leadwire_notification_delay_seconds",
    "From the lead accepted by the gateway (an alert: fired) to the notification sent",
    ["channel"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600),
)
EVENTS = Counter(
    "leadwire_notifier_events_total", "Events consumed, by what came of them", ["result"]
)
REALTIME_CLIENTS = Gauge("leadwire_notifier_realtime_clients", "Connected Socket.IO clients")
REALTIME_REFUSED = Counter(
    "leadwire_notifier_realtime_refused_total", "Socket.IO connections refused", ["reason"]
)
REALTIME_DROPPED = Counter(
    "leadwire_notifier_realtime_dropped_total",
    "Socket.IO sessions disconnected because their token was rotated or their workspace disabled",
    ["reason"],
)
