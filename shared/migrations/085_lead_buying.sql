-- What a lead buyer sets per webhook and workspace (issue 18), and what a lead keeps.
--
-- webhooks.acceptance: the gateway's acceptance criteria, checked after mapping
--   {"require": ["field", ...], "allow": {"field": ["v1", "v2"]}, "require_consent": false}
--   (services/ingest/acceptance.py); a lead that fails them is rejected as not_accepted.
-- webhooks.duplicate_window_s / duplicate_key: the processor's duplicate-lead window (NULL:
--   none); a lead whose key matches a lead accepted from the same webhook inside the window
--   is rejected as duplicate_lead.
-- webhooks.facebook_page_token: the Facebook page access token the gateway's lead fetcher
--   sends to the Graph API (a credential: stored as given because it must be sent as
--   given, never logged, never returned by the CLI or the API). The app secret that signs
--   Facebook's notifications (X-Hub-Signature-256) is the webhook's secret in auth mode
--   github.
-- workspaces.suppressed_mode: what a lead whose phone or email is on the workspace's
--   suppression list becomes: 'reject' (rejected as suppressed) or 'flag' (processed,
--   flagged, never notified by SMS).
-- leads.consent: the consent evidence the lead came with (TrustedForm certificate URL,
--   LeadiD token, TCPA consent, its text and time), NULL when it came with none.

ALTER TABLE webhooks
    ADD COLUMN acceptance          jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN duplicate_window_s  integer CHECK (duplicate_window_s > 0),
    ADD COLUMN duplicate_key       text[] NOT NULL DEFAULT '{phone,email}'
                                   CHECK (cardinality(duplicate_key) > 0
                                          AND duplicate_key <@ ARRAY['phone', 'email', 'crm_id']),
    ADD COLUMN facebook_page_token text;

ALTER TABLE workspaces
    ADD COLUMN suppressed_mode text NOT NULL DEFAULT 'reject'
                               CHECK (suppressed_mode IN ('reject', 'flag'));

ALTER TABLE leads
    ADD COLUMN consent jsonb;
