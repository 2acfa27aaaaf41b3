-- Dead letters: what analytics counts of them, the growth alert's state, and what
-- `leadwire deadletter retry` has sent back.

-- Analytics: one row per dead letter on <prefix>deadletter, keyed by the dead-letter
-- message's own topic, partition and offset, so a redelivered or replayed dead letter
-- is counted once. Counts per webhook and workspace are count(*) over these rows; rows
-- older than the dedupe horizon (LEADWIRE_ANALYTICS_DEDUPE_DAYS) are pruned.
CREATE TABLE analytics_deadletters (
    topic        text NOT NULL,
    partition    integer NOT NULL,
    "offset"     bigint NOT NULL,
    -- Where the message came from and why it was given up on (a bounded code).
    source_topic text NOT NULL,
    reason_code  text NOT NULL,
    group_id     text,
    -- The event's ids, where the message was an event carrying them.
    workspace_id uuid,
    webhook_id   uuid,
    failed_at    timestamptz NOT NULL,
    counted_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition, "offset")
);
CREATE INDEX analytics_deadletters_webhook ON analytics_deadletters (webhook_id)
    WHERE webhook_id IS NOT NULL;
CREATE INDEX analytics_deadletters_workspace ON analytics_deadletters (workspace_id)
    WHERE workspace_id IS NOT NULL;
CREATE INDEX analytics_deadletters_failed ON analytics_deadletters (failed_at);

-- System-health checks whose state must be shared by every analytics replica (the
-- dead-letter growth alert): firing or not, since when (the crossing the event id is
-- derived from), and whether the last transition's event is published (the row is its
-- own outbox).
CREATE TABLE analytics_health_state (
    "check"    text PRIMARY KEY,
    firing     boolean NOT NULL DEFAULT false,
    since      timestamptz,
    detail     text NOT NULL DEFAULT '',
    changed_at timestamptz,
    published  boolean NOT NULL DEFAULT true
);

-- `leadwire deadletter retry`: every dead letter sent back, keyed by the dead-letter
-- message (full topic name, partition, offset), so a second `retry --all` skips it.
CREATE TABLE deadletter_retries (
    topic      text NOT NULL,
    partition  integer NOT NULL,
    "offset"   bigint NOT NULL,
    -- Where it went: the source topic, or 'notification_sends' (sends re-queued).
    target     text NOT NULL,
    -- What was done: e.g. {"requeued": 2} for notifications.
    result     jsonb NOT NULL DEFAULT '{}',
    retried_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition, "offset")
);
