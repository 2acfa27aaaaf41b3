-- Analytics: exactly-once aggregates of the outcome topic, per webhook and per minute,
-- latency sketches (DDSketch bins), breakdowns, recent errors and performance alerts.
--
-- Exactly once: a batch inserts its event ids into analytics_counted_events with
-- ON CONFLICT DO NOTHING and only the ids that were new are added to the aggregates, all
-- in one transaction. A redelivered message or a replay from offset 0 (even by a new
-- consumer group) finds its id already there and changes nothing.

CREATE TABLE analytics_counted_events (
    event_id    uuid PRIMARY KEY,
    webhook_id  uuid NOT NULL,
    occurred_at timestamptz NOT NULL,
    counted_at  timestamptz NOT NULL DEFAULT now()
);
-- Pruning past the dedupe horizon (events older than it are not counted at all).
CREATE INDEX analytics_counted_events_occurred ON analytics_counted_events (occurred_at);

-- Sum two sketches' bins: {"<bin key>": count, ..., "z": zero count}. Merging inside the
-- UPDATE keeps concurrent replicas safe without a read-modify-write in Python.
CREATE FUNCTION analytics_merge_bins(a jsonb, b jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT COALESCE(jsonb_object_agg(k, v), '{}'::jsonb)
    FROM (
        SELECT k, sum(v) AS v
        FROM (
            SELECT key AS k, value::text::float8 AS v FROM jsonb_each(COALESCE(a, '{}'::jsonb))
            UNION ALL
            SELECT key, value::text::float8 FROM jsonb_each(COALESCE(b, '{}'::jsonb))
        ) AS bins
        GROUP BY k
    ) AS summed
$$;

-- All-time figures per webhook (a workspace's are the sum of its webhooks').
CREATE TABLE analytics_webhooks (
    webhook_id    uuid PRIMARY KEY,
    workspace_id  uuid NOT NULL,
    total         bigint NOT NULL DEFAULT 0,
    processed     bigint NOT NULL DEFAULT 0,
    failed        bigint NOT NULL DEFAULT 0,
    rejected      bigint NOT NULL DEFAULT 0,
    -- Sum of processing.duration_ms over every counted outcome (average = sum / total).
    duration_sum  double precision NOT NULL DEFAULT 0,
    sketch        jsonb NOT NULL DEFAULT '{}',
    first_seen_at timestamptz NOT NULL,
    last_seen_at  timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX analytics_webhooks_workspace ON analytics_webhooks (workspace_id);
CREATE INDEX analytics_webhooks_recent ON analytics_webhooks (last_seen_at DESC);

-- Per webhook and minute (of received_at): the rolling 24 h window, time series and the
-- alert windows are sums of these rows.
CREATE TABLE analytics_minutes (
    webhook_id   uuid NOT NULL,
    minute       timestamptz NOT NULL,
    workspace_id uuid NOT NULL,
    total        bigint NOT NULL DEFAULT 0,
    processed    bigint NOT NULL DEFAULT 0,
    failed       bigint NOT NULL DEFAULT 0,
    rejected     bigint NOT NULL DEFAULT 0,
    duration_sum double precision NOT NULL DEFAULT 0,
    sketch       jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (webhook_id, minute)
);
CREATE INDEX analytics_minutes_workspace ON analytics_minutes (workspace_id, minute);
CREATE INDEX analytics_minutes_minute ON analytics_minutes (minute);

-- Counts by error type (failed: error.type, rejected: reason) and by match type, and the
-- per-step time sums (count and sum_ms) per webhook.
CREATE TABLE analytics_breakdowns (
    webhook_id uuid NOT NULL,
    dimension  text NOT NULL CHECK (dimension IN ('error_type', 'match_type', 'step')),
    name       text NOT NULL,
    count      bigint NOT NULL DEFAULT 0,
    sum_ms     double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (webhook_id, dimension, name)
);

-- The latest failures and rejections per webhook for the dashboard (messages scrubbed of
-- phone-, email- and secret-shaped text; pruned to the newest few per webhook).
CREATE TABLE analytics_recent_errors (
    event_id     uuid PRIMARY KEY,
    webhook_id   uuid NOT NULL,
    workspace_id uuid NOT NULL,
    request_id   uuid NOT NULL,
    occurred_at  timestamptz NOT NULL,
    status       text NOT NULL CHECK (status IN ('failed', 'rejected')),
    error_type   text NOT NULL,
    message      text NOT NULL DEFAULT ''
);
CREATE INDEX analytics_recent_errors_webhook ON analytics_recent_errors (webhook_id, occurred_at DESC);

-- Optional per-webhook alert thresholds; a NULL column means the service default.
CREATE TABLE analytics_alert_thresholds (
    webhook_id         uuid PRIMARY KEY,
    error_rate_percent double precision CHECK (error_rate_percent BETWEEN 0 AND 100),
    p95_ms             double precision CHECK (p95_ms > 0),
    min_requests       integer CHECK (min_requests > 0),
    window_minutes     integer CHECK (window_minutes BETWEEN 1 AND 1440),
    enabled            boolean NOT NULL DEFAULT true,
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- Whether each (webhook, metric) alert is firing, and how many times it has crossed
-- (seq): the alert event id is uuid5(webhook, metric, seq, state), so a re-publish of
-- the same crossing carries the same id. Updated in the batch's transaction.
CREATE TABLE analytics_alert_state (
    webhook_id   uuid NOT NULL,
    metric       text NOT NULL CHECK (metric IN ('error_rate', 'p95_processing_time')),
    workspace_id uuid NOT NULL,
    firing       boolean NOT NULL DEFAULT false,
    seq          integer NOT NULL DEFAULT 0,
    value        double precision,
    threshold    double precision,
    changed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (webhook_id, metric)
);
CREATE INDEX analytics_alert_state_firing ON analytics_alert_state (webhook_id) WHERE firing;

-- Transactional outbox of alert events: written with the state change, published to the
-- alerts topic after commit (and retried until Kafka acknowledges).
CREATE TABLE analytics_alert_outbox (
    event_id     uuid PRIMARY KEY,
    webhook_id   uuid NOT NULL,
    payload      jsonb NOT NULL,
    -- clock_timestamp(): a firing and its resolve in one transaction keep their order.
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    published_at timestamptz
);
CREATE INDEX analytics_alert_outbox_pending ON analytics_alert_outbox (created_at)
    WHERE published_at IS NULL;
