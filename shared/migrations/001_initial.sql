-- leadwire's core schema. Services add their own numbered migrations after this one:
-- 010-019 processor, 020-029 analytics, 030-039 notifier, 040-049 archiver,
-- 050-059 gateway and admin CLI.

CREATE TABLE workspaces (
    id             uuid PRIMARY KEY,
    name           text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 200),
    -- Region used to read national phone numbers (ISO 3166-1 alpha-2).
    default_region text NOT NULL DEFAULT 'US' CHECK (default_region ~ '^[A-Z]{2}$'),
    status         text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE webhooks (
    id                         uuid PRIMARY KEY,
    workspace_id               uuid NOT NULL REFERENCES workspaces (id),
    name                       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    template                   text NOT NULL DEFAULT 'generic',
    auth_mode                  text NOT NULL DEFAULT 'none'
                               CHECK (auth_mode IN ('none', 'standard', 'github', 'basic', 'api-key')),
    -- standard/github: the HMAC key itself (the mode needs it verbatim);
    -- basic/api-key: a sha256 hash of the generated high-entropy secret.
    secret                     text,
    -- The secret before the last rotation, valid until secret_previous_expires_at.
    secret_previous            text,
    secret_previous_expires_at timestamptz,
    basic_username             text,
    api_key_header             text NOT NULL DEFAULT 'X-API-Key',
    status                     text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    rate_limit_per_minute      integer CHECK (rate_limit_per_minute > 0),
    max_body_bytes             integer CHECK (max_body_bytes > 0),
    -- A body field naming the vendor's idempotency key (besides the webhook-id header).
    idempotency_field          text,
    -- Ordered mapping entries: [{"source", "target", "transform", "value"?, "format"?}].
    mapping                    jsonb NOT NULL DEFAULT '[]',
    -- Facebook Lead Ads subscription check token.
    verify_token               text,
    created_at                 timestamptz NOT NULL DEFAULT now(),
    updated_at                 timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, name)
);

CREATE TABLE boards (
    id           uuid PRIMARY KEY,
    workspace_id uuid NOT NULL REFERENCES workspaces (id),
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, name)
);

-- Evaluated in (priority, created_at) order; the first rule whose webhook (if set) and
-- every condition match sets the contact's board.
CREATE TABLE board_rules (
    id           uuid PRIMARY KEY,
    workspace_id uuid NOT NULL REFERENCES workspaces (id),
    board_id     uuid NOT NULL REFERENCES boards (id) ON DELETE CASCADE,
    webhook_id   uuid REFERENCES webhooks (id) ON DELETE CASCADE,
    -- [{"field": "product", "op": "eq" | "in", "value": "x" | ["a", "b"]}]
    conditions   jsonb NOT NULL DEFAULT '[]',
    priority     integer NOT NULL DEFAULT 100,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX board_rules_order ON board_rules (workspace_id, priority, created_at);

CREATE TABLE contacts (
    id           uuid PRIMARY KEY,
    workspace_id uuid NOT NULL REFERENCES workspaces (id),
    crm_id       text,
    phone        text,
    email        text,
    first_name   text,
    last_name    text,
    product      text,
    lead_status  text,
    custom       jsonb NOT NULL DEFAULT '{}',
    board_id     uuid REFERENCES boards (id) ON DELETE SET NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
-- The backstop of duplicate prevention: each identity key on at most one contact.
CREATE UNIQUE INDEX contacts_crm_id ON contacts (workspace_id, crm_id) WHERE crm_id IS NOT NULL;
CREATE UNIQUE INDEX contacts_phone ON contacts (workspace_id, phone) WHERE phone IS NOT NULL;
CREATE UNIQUE INDEX contacts_email ON contacts (workspace_id, email) WHERE email IS NOT NULL;

CREATE TABLE leads (
    id               uuid PRIMARY KEY,
    workspace_id     uuid NOT NULL REFERENCES workspaces (id),
    contact_id       uuid NOT NULL REFERENCES contacts (id),
    webhook_id       uuid NOT NULL REFERENCES webhooks (id),
    -- One lead per accepted request, and per vendor idempotency key.
    request_id       uuid NOT NULL UNIQUE,
    idempotency_key  text,
    source           text NOT NULL DEFAULT 'webhook',
    status           text,
    product_interest text,
    replay_of        uuid,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX leads_idempotency ON leads (webhook_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX leads_contact ON leads (contact_id);

-- Every request the pipeline finished with: its status, result and per-step timings.
CREATE TABLE webhook_requests (
    request_id      uuid PRIMARY KEY,
    workspace_id    uuid NOT NULL,
    webhook_id      uuid NOT NULL,
    status          text NOT NULL
                    CHECK (status IN ('accepted', 'processed', 'failed', 'rejected', 'duplicate')),
    received_at     timestamptz NOT NULL,
    processed_at    timestamptz,
    idempotency_key text,
    body_sha256     text,
    replay_of       uuid,
    -- The outcome event as published (re-published verbatim on redelivery).
    result          jsonb,
    steps           jsonb NOT NULL DEFAULT '{}',
    error           jsonb,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_requests_webhook_time ON webhook_requests (webhook_id, received_at);

-- Two contacts that share a person's keys: a lead's lower-priority key already
-- belonged to another contact. A person decides whether to merge them.
CREATE TABLE possible_duplicates (
    id               bigserial PRIMARY KEY,
    workspace_id     uuid NOT NULL,
    contact_id       uuid NOT NULL REFERENCES contacts (id),
    other_contact_id uuid NOT NULL REFERENCES contacts (id),
    key_type         text NOT NULL CHECK (key_type IN ('crm_id', 'phone', 'email')),
    request_id       uuid NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, contact_id, other_contact_id, key_type)
);

-- Per workspace: which events go to which channel and recipients.
CREATE TABLE notification_settings (
    workspace_id        uuid PRIMARY KEY REFERENCES workspaces (id),
    -- sha256 of the per-workspace real-time (Socket.IO) token.
    realtime_token_hash text,
    -- {"rules": [{"event": "lead_created", "channel": "email", "recipients": [...]}],
    --  "high_priority": {"conditions": [...], "sms_recipients": [...]}}
    settings            jsonb NOT NULL DEFAULT '{}',
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- Change signal: gateways LISTEN on 'leadwire_config' and drop cached config at once
-- (their cache TTL is the fallback when a notification is missed).
CREATE FUNCTION leadwire_config_changed() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('leadwire_config', TG_TABLE_NAME || ':' || COALESCE(NEW.id, OLD.id)::text);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER workspaces_changed AFTER INSERT OR UPDATE OR DELETE ON workspaces
    FOR EACH ROW EXECUTE FUNCTION leadwire_config_changed();
CREATE TRIGGER webhooks_changed AFTER INSERT OR UPDATE OR DELETE ON webhooks
    FOR EACH ROW EXECUTE FUNCTION leadwire_config_changed();
