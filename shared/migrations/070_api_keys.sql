-- API keys of the management API (services/api) and, next, of every HTTP API that reads
-- a workspace's data. 070-079: the management API.
--
-- A key is shown once when it is made; only its sha256 is kept (keys carry 256 random
-- bits, so a slow hash would buy nothing). workspace_id NULL: an operator key, over every
-- workspace. A revoked or expired row stays, so `apikey list` can tell what happened.
CREATE TABLE api_keys (
    id           uuid PRIMARY KEY,
    workspace_id uuid REFERENCES workspaces (id),
    name         text NOT NULL DEFAULT '' CHECK (length(name) <= 200),
    scope        text NOT NULL CHECK (scope IN ('read', 'manage')),
    key_hash     bytea NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    -- What a listing shows to recognise a key: its first 8 and last 4 characters.
    prefix       text NOT NULL,
    last4        text NOT NULL,
    -- Who made it: 'cli', or the id of the API key that created it.
    created_by   text NOT NULL DEFAULT 'cli',
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    revoked_at   timestamptz,
    -- Written at most once a minute per key by the services that check keys.
    last_used_at timestamptz
);

CREATE INDEX api_keys_by_workspace ON api_keys (workspace_id, created_at);
