-- The archive's index: one row per archived request, naming the segment object (gzip
-- NDJSON in the archive bucket) and the line that holds its log record, plus the fields
-- `leadwire archive list|search` filter on. Written by the archiver after the segment is
-- stored, in one statement per flush; the archiver commits its offsets only after both.
-- A request archived once has one row (the primary key): redelivered outcomes are
-- skipped by looking it up here first.
CREATE TABLE archive_index (
    request_id        uuid PRIMARY KEY,
    workspace_id      uuid NOT NULL,
    webhook_id        uuid NOT NULL,
    received_at       timestamptz NOT NULL,
    status            text NOT NULL,
    match_type        text,
    error_type        text,
    replay_of         uuid,
    segment_key       text NOT NULL,
    -- 1-based line of the record in the decompressed segment.
    line              integer NOT NULL,
    -- The gzip member holding that line: bytes [member_offset, member_offset +
    -- member_length) of the object, whose first line is member_first_line. One ranged GET
    -- reads a record without fetching the whole segment.
    member_offset     bigint NOT NULL,
    member_length     integer NOT NULL,
    member_first_line integer NOT NULL,
    archived_at       timestamptz NOT NULL DEFAULT now()
);
-- list/search/replay: a webhook's requests in a time window, in order (keyset paging).
CREATE INDEX archive_index_webhook ON archive_index (webhook_id, received_at, request_id);
-- search across a workspace, retention and export by time.
CREATE INDEX archive_index_received ON archive_index (received_at, request_id);
