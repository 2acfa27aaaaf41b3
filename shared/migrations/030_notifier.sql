-- The notifier's ledger: one row per notification, keyed by (event, channel, recipient),
-- so a redelivered or replayed event finds its row and is never sent twice.
--
--   pending -> sending -> sent
--                     \-> pending (retry, after backoff)   -> ... -> dead (dead-lettered)
--
-- Real-time pushes are recorded as 'sent' when they are published (they are ephemeral).
CREATE TABLE notification_sends (
    id              uuid PRIMARY KEY,
    event_id        uuid NOT NULL,
    workspace_id    uuid NOT NULL,
    channel         text NOT NULL CHECK (channel IN ('realtime', 'email', 'sms')),
    -- An email address, an E.164 phone, or the workspace id (realtime).
    recipient       text NOT NULL,
    -- Why this notification exists: comma-separated kinds (lead_created,high_priority).
    kinds           text NOT NULL,
    -- The event summary the message is rendered from (contact details: PII; pruned).
    summary         jsonb NOT NULL,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'sending', 'sent', 'dead')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- Set while a dispatcher holds the row; a lease that runs out means it died mid-send.
    claim_id        uuid,
    claimed_until   timestamptz,
    last_error      text,
    -- Provider reference: the email Message-ID or the SMS provider's message sid.
    provider_ref    text,
    -- When the lead was accepted (alerts: when they fired): the end-to-end delay origin.
    event_at        timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    dead_at         timestamptz,
    UNIQUE (event_id, channel, recipient)
);
-- The dispatcher's work queue (only unfinished rows are indexed).
CREATE INDEX notification_sends_queue ON notification_sends (next_attempt_at)
    WHERE status IN ('pending', 'sending');
CREATE INDEX notification_sends_created ON notification_sends (created_at);

-- Outbox of dead-letter entries: written in the transaction that marks sends dead, then
-- published to the notifications dead-letter topic (re-published until Kafka has it).
CREATE TABLE notification_deadletters (
    id           uuid PRIMARY KEY,
    entry        jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX notification_deadletters_unpublished ON notification_deadletters (created_at)
    WHERE published_at IS NULL;
