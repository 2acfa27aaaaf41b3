-- Dashboard sessions of the analytics service (services/analytics/sessions.py): a key is
-- asked for once, then a cookie carries a random session id. Stored: the id's sha256 (a
-- copy of this table opens nothing) and the sha256 of the key that opened it (the key
-- itself is never stored), which every request re-checks, so a revoked key ends its
-- sessions within a second.
CREATE TABLE analytics_sessions (
    id_hash    bytea PRIMARY KEY CHECK (length(id_hash) = 32),
    key_hash   bytea NOT NULL REFERENCES api_keys (key_hash) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);

CREATE INDEX analytics_sessions_by_expiry ON analytics_sessions (expires_at);
