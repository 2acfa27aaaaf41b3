-- Unkeyed requests the gateway answered 503 after a publish timed out: Kafka may still
-- take them (the idempotent producer retries a buffered batch), so a byte-identical
-- retry reuses the same request id and the processor keeps one lead for both.
CREATE TABLE ingest_indeterminate (
    webhook_id  uuid NOT NULL,
    body_sha256 text NOT NULL,
    request_id  uuid NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (webhook_id, body_sha256)
);
CREATE INDEX ingest_indeterminate_age ON ingest_indeterminate (created_at);
