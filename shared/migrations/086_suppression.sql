-- Do-not-contact and the duplicate-lead window (issue 18): two tables of hashes.
--
-- suppressions: a workspace's suppression list. A value is stored as the sha256 of its
--   normalized form (phone: E.164 read in the workspace's default region; email:
--   NFKC-normalized and lowercased; see shared/suppression.py), never as given. The
--   processor rejects (or, with workspaces.suppressed_mode 'flag', flags) a lead whose
--   phone or email is on it; the notifier never sends to a suppressed number or address.
--   source: where the entry came from ('cli', 'api', 'import:<file name>').
-- webhook_lead_keys: per webhook, the identity keys (sha256 of the value, as stored on
--   the lead) of the leads it accepted, with the latest acceptance time. The processor
--   writes a row for every lead accepted while the webhook has a window, in the lead's
--   transaction, and reads them for the webhook's duplicate-lead window
--   (webhooks.duplicate_window_s, duplicate_key): a lead whose key was accepted from the
--   same webhook inside the window is rejected as duplicate_lead. One row per (webhook, key type, value): it holds no more rows than
--   the webhook has distinct people.

CREATE TABLE suppressions (
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    kind         text NOT NULL CHECK (kind IN ('phone', 'email')),
    value_sha256 bytea NOT NULL CHECK (octet_length(value_sha256) = 32),
    source       text NOT NULL DEFAULT 'cli' CHECK (length(source) <= 300),
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, kind, value_sha256)
);
CREATE INDEX suppressions_listing ON suppressions (workspace_id, created_at DESC);

CREATE TABLE webhook_lead_keys (
    -- No foreign key: written with every accepted lead, next to the lead row that has one.
    webhook_id   uuid NOT NULL,
    key_type     text NOT NULL CHECK (key_type IN ('crm_id', 'phone', 'email')),
    value_sha256 bytea NOT NULL CHECK (octet_length(value_sha256) = 32),
    accepted_at  timestamptz NOT NULL,
    request_id   uuid NOT NULL,
    PRIMARY KEY (webhook_id, key_type, value_sha256)
);
