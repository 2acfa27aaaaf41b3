-- Vendor scorecards (issue 18): what each webhook ("vendor") sent, per minute of
-- received_at, kept 31 days so the 24 h, 7 d and 30 d windows are exact sums of whole
-- minutes (the same minutes as analytics_minutes' last 24 h). Written by analytics in the
-- transaction that counts the outcomes (services/analytics/vendor_repository.py), so a
-- redelivered or replayed outcome adds nothing twice.
--
--   received = accepted + failed + rejected_validation + rejected_not_accepted
--              + rejected_duplicate_lead + rejected_suppressed + rejected_other
--
-- accepted: LeadProcessed; new_contacts: those that created a contact; failed: LeadFailed;
-- rejected_*: LeadRejected by reason (services/analytics/vendors.py maps the reasons).
CREATE TABLE analytics_vendor_minutes (
    webhook_id              uuid NOT NULL,
    minute                  timestamptz NOT NULL,
    workspace_id            uuid NOT NULL,
    received                bigint NOT NULL DEFAULT 0,
    accepted                bigint NOT NULL DEFAULT 0,
    new_contacts            bigint NOT NULL DEFAULT 0,
    failed                  bigint NOT NULL DEFAULT 0,
    rejected_validation     bigint NOT NULL DEFAULT 0,
    rejected_not_accepted   bigint NOT NULL DEFAULT 0,
    rejected_duplicate_lead bigint NOT NULL DEFAULT 0,
    rejected_suppressed     bigint NOT NULL DEFAULT 0,
    rejected_other          bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (webhook_id, minute)
);
CREATE INDEX analytics_vendor_minutes_workspace ON analytics_vendor_minutes (workspace_id, minute);
CREATE INDEX analytics_vendor_minutes_minute ON analytics_vendor_minutes (minute);

-- Accepted leads of the last 31 days, for speed-to-lead: first_sent_at is when the
-- notifier's ledger (notification_sends) first marked an email or SMS of the lead's event
-- sent, copied when the lead is counted (a send already made) and by analytics' delivery
-- sync afterwards (sends since its last round, by sent_at); NULL until one is sent.
CREATE TABLE analytics_vendor_accepted (
    event_id      uuid PRIMARY KEY,
    webhook_id    uuid NOT NULL,
    workspace_id  uuid NOT NULL,
    received_at   timestamptz NOT NULL,
    first_sent_at timestamptz
);
CREATE INDEX analytics_vendor_accepted_workspace
    ON analytics_vendor_accepted (workspace_id, received_at);
CREATE INDEX analytics_vendor_accepted_received ON analytics_vendor_accepted (received_at);

-- The delivery sync's range scan of the notifier's ledger: emails and SMS sent, by when.
CREATE INDEX notification_sends_delivered ON notification_sends (sent_at)
    WHERE status = 'sent' AND channel IN ('email', 'sms');
