"""Logical topic names. The full name is ``settings.topic(NAME)`` (prefix + name).

- RAW: one :class:`shared.events.LeadReceived` per accepted webhook request, keyed by
  workspace id, so one workspace's leads are processed in order by one processor.
- OUTCOMES: one outcome per request (processed, failed, rejected), keyed by workspace id.
- ALERTS: performance alerts from analytics, for the notifier.
- DEADLETTER: messages a consumer could never handle, with the reason.
- NOTIFY_DEADLETTER: notifications that failed after their retries.
"""

RAW = "webhooks.raw"
OUTCOMES = "outcomes"
ALERTS = "alerts"
DEADLETTER = "deadletter"
NOTIFY_DEADLETTER = "notifications.deadletter"

ALL = (RAW, OUTCOMES, ALERTS, DEADLETTER, NOTIFY_DEADLETTER)
