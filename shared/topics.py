"""Logical topic names. The full name is ``settings.topic(NAME)`` (prefix + name).

- RAW: one :class:`shared.events.LeadReceived` per accepted webhook request, keyed by
  workspace id, so one workspace's leads are processed in order by one processor.
- FETCH: a ``LeadReceived`` whose fields are still to be fetched (a Facebook Lead Ads
  notification's change: ids only); the gateway's fetcher fetches them and puts the lead
  on RAW under the same request id.
- OUTCOMES: one outcome per request (processed, failed, rejected), keyed by workspace id.
- ALERTS: performance alerts from analytics, for the notifier.
- DEADLETTER: messages a consumer could never handle, with the reason.
- NOTIFY_DEADLETTER: notifications that failed after their retries.
"""

RAW = "webhooks.raw"
FETCH = "webhooks.fetch"
OUTCOMES = "outcomes"
ALERTS = "alerts"
DEADLETTER = "deadletter"
NOTIFY_DEADLETTER = "notifications.deadletter"

ALL = (RAW, FETCH, OUTCOMES, ALERTS, DEADLETTER, NOTIFY_DEADLETTER)
