"""The statements of :mod:`services.processor.repository` (the only module that runs them)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from services.processor.dedupe import KEY_TYPES

if TYPE_CHECKING:
    from services.processor.repository import BatchQuery

# The processor's sessions: every lookup goes through an index, whatever the table
# statistics say when Postgres plans it. asyncpg prepares each statement, and after five
# runs Postgres keeps a generic plan until the table is next analyzed; one made while a
# table was empty (a fresh database, or just after its first ANALYZE) costs a lookup per
# key nothing by a sequential scan, and keeps scanning as the table grows. Every table the
# processor reads is reached by a key it has an index for.
#
# And every statement is planned once per connection, not at every run: with
# enable_seqscan off, Postgres's own choice (plan_cache_mode auto) never takes the generic
# plan (it compares estimates that include the disabled scans' penalty), so it planned
# LOAD afresh for every batch, ~0.8 ms of a batch's ~4 ms at 300 leads/s. The generic
# plans are the index probes the custom ones were (tests/integration/test_query_plans.py).
SESSION = {"enable_seqscan": "off", "plan_cache_mode": "force_generic_plan"}

LOCK = "SELECT count(pg_advisory_xact_lock(k)) FROM unnest($1::bigint[]) AS k"


def begin_and_lock(keys: list[int]) -> str:
    """BEGIN and :data:`LOCK` as one simple query (one round trip): the keys, integers,
    written into it."""
    listed = ",".join(str(int(k)) for k in keys)
    return "BEGIN; " + LOCK.replace("$1", f"'{{{listed}}}'")


# Finished requests, webhooks, idempotency keys in use, the contacts holding any of the
# batch's keys (row-locked, in id order) and the workspaces' board rules: one round trip.
# Every contact is reached key by key through its index (a LATERAL probe per key, LIMIT 1:
# the keys are unique per workspace), whatever Postgres believes of the table's size: a
# generic plan made while ``contacts`` was small (a fresh database, before its first
# ANALYZE) otherwise kept scanning the whole table three times per batch as it grew.
LOAD = """
WITH stored AS (
    SELECT request_id, status, body_sha256, result, error
      FROM webhook_requests
     WHERE request_id = ANY($1::uuid[]) AND result IS NOT NULL),
hooks AS (
    SELECT w.id, w.workspace_id, w.duplicate_window_s, w.duplicate_key, ws.suppressed_mode
      FROM webhooks w JOIN workspaces ws ON ws.id = w.workspace_id
     WHERE w.id = ANY($2::uuid[])),
idem AS (
    SELECT l.webhook_id, l.idempotency_key, l.request_id
      FROM leads l JOIN unnest($3::uuid[], $4::text[]) AS k(webhook_id, idem)
        ON l.webhook_id = k.webhook_id AND l.idempotency_key = k.idem),
found AS (
    SELECT c.id FROM unnest($5::uuid[], $6::text[]) AS k(ws, v) CROSS JOIN LATERAL (
        SELECT c.id FROM contacts c
         WHERE c.workspace_id = k.ws AND c.crm_id = k.v AND c.crm_id IS NOT NULL LIMIT 1) c
    UNION
    SELECT c.id FROM unnest($7::uuid[], $8::text[]) AS k(ws, v) CROSS JOIN LATERAL (
        SELECT c.id FROM contacts c
         WHERE c.workspace_id = k.ws AND c.phone = k.v AND c.phone IS NOT NULL LIMIT 1) c
    UNION
    SELECT c.id FROM unnest($9::uuid[], $10::text[]) AS k(ws, v) CROSS JOIN LATERAL (
        SELECT c.id FROM contacts c
         WHERE c.workspace_id = k.ws AND c.email = k.v AND c.email IS NOT NULL LIMIT 1) c),
locked AS (
    SELECT c.* FROM (SELECT id FROM found ORDER BY id) f CROSS JOIN LATERAL (
        SELECT c.id, c.workspace_id, c.crm_id, c.phone, c.email, c.first_name, c.last_name,
               c.product, c.lead_status, c.custom, c.board_id
          FROM contacts c WHERE c.id = f.id LIMIT 1 FOR UPDATE) c),
rules AS (
    SELECT r.id, r.workspace_id, r.board_id, b.name AS board_name, r.webhook_id, r.conditions,
           r.priority, r.created_at
      FROM board_rules r JOIN boards b ON b.id = r.board_id
     WHERE r.workspace_id = ANY($11::uuid[])),
supp AS (
    SELECT s.workspace_id, s.kind, encode(s.value_sha256, 'hex') AS h
      FROM suppressions s JOIN unnest($12::uuid[], $13::text[], $14::bytea[]) AS k(ws, kind, h)
        ON s.workspace_id = k.ws AND s.kind = k.kind AND s.value_sha256 = k.h),
seen AS (
    SELECT l.webhook_id, l.key_type, encode(l.value_sha256, 'hex') AS h, l.accepted_at
      FROM webhook_lead_keys l
      JOIN unnest($15::uuid[], $16::text[], $17::bytea[]) AS k(hook, kind, h)
        ON l.webhook_id = k.hook AND l.key_type = k.kind AND l.value_sha256 = k.h
      JOIN webhooks w ON w.id = l.webhook_id AND w.duplicate_window_s IS NOT NULL)
SELECT (SELECT json_agg(s) FROM stored s) AS stored,
       (SELECT json_agg(h) FROM hooks h) AS hooks,
       (SELECT json_agg(i) FROM idem i) AS idem,
       (SELECT json_agg(json_build_object(
                   'id', c.id, 'workspace_id', c.workspace_id, 'crm_id', c.crm_id,
                   'phone', c.phone, 'email', c.email, 'first_name', c.first_name,
                   'last_name', c.last_name, 'product', c.product,
                   'lead_status', c.lead_status, 'custom', c.custom,
                   'board_id', c.board_id, 'board_name', b.name))
          FROM locked c LEFT JOIN boards b ON b.id = c.board_id) AS contacts,
       (SELECT json_agg(r ORDER BY r.workspace_id, r.priority, r.created_at, r.id)
          FROM rules r) AS rules,
       (SELECT json_agg(x) FROM supp x) AS supp,
       (SELECT json_agg(x) FROM seen x) AS seen
"""


def load_args(query: BatchQuery) -> list[Any]:
    """The parameters of :data:`LOAD`, in order."""
    by_kind: dict[str, tuple[list[uuid.UUID], list[str]]] = {k: ([], []) for k in KEY_TYPES}
    for workspace_id, kind, value in query.keys:
        by_kind[kind][0].append(workspace_id)
        by_kind[kind][1].append(value)
    return [
        list(set(query.request_ids)),
        list(set(query.webhook_ids)),
        [p[0] for p in query.idempotency],
        [p[1] for p in query.idempotency],
        *by_kind["crm_id"],
        *by_kind["phone"],
        *by_kind["email"],
        list(set(query.workspace_ids)),
        [d[0] for d in query.digests if d[2] != "crm_id"],
        [d[2] for d in query.digests if d[2] != "crm_id"],
        [d[3] for d in query.digests if d[2] != "crm_id"],
        [d[1] for d in query.digests],
        [d[2] for d in query.digests],
        [d[3] for d in query.digests],
    ]


CLEAR_KEYS = """
UPDATE contacts c
   SET crm_id = CASE WHEN u.crm THEN NULL ELSE c.crm_id END,
       phone  = CASE WHEN u.phone THEN NULL ELSE c.phone END,
       email  = CASE WHEN u.email THEN NULL ELSE c.email END
  FROM unnest($1::uuid[], $2::bool[], $3::bool[], $4::bool[]) AS u(id, crm, phone, email)
 WHERE c.id = u.id
"""

# The batch's contacts and leads in one statement (one round trip): contact updates
# ($1-$10) and inserts ($11-$21), leads ($22-$31, consent $42), possible-duplicate pairs
# ($32-$36) and accepted lead keys ($37-$41). A lead's contact inserted by the same
# statement satisfies its foreign key: Postgres checks constraints once the statement ran.
WRITE = """
WITH upd AS (
    UPDATE contacts c
       SET crm_id = u.crm_id, phone = u.phone, email = u.email,
           first_name = u.first_name, last_name = u.last_name,
           product = u.product, lead_status = u.lead_status,
           custom = u.custom::jsonb, board_id = u.board_id, updated_at = now()
      FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                  $6::text[], $7::text[], $8::text[], $9::text[], $10::uuid[])
        AS u(id, crm_id, phone, email, first_name, last_name, product,
             lead_status, custom, board_id)
     WHERE c.id = u.id
 RETURNING 1),
ins AS (
    INSERT INTO contacts (id, crm_id, phone, email, first_name, last_name, product,
                          lead_status, custom, board_id, workspace_id)
    SELECT u.id, u.crm_id, u.phone, u.email, u.first_name, u.last_name, u.product,
           u.lead_status, u.custom::jsonb, u.board_id, u.workspace_id
      FROM unnest($11::uuid[], $12::text[], $13::text[], $14::text[], $15::text[],
                  $16::text[], $17::text[], $18::text[], $19::text[], $20::uuid[],
                  $21::uuid[])
        AS u(id, crm_id, phone, email, first_name, last_name, product,
             lead_status, custom, board_id, workspace_id)
 RETURNING 1),
new_leads AS (
    INSERT INTO leads (id, workspace_id, contact_id, webhook_id, request_id,
                       idempotency_key, source, status, product_interest, replay_of, consent)
    SELECT l.id, l.ws, l.contact, l.webhook, l.request, l.idem, l.source, l.status,
           l.product, l.replay_of, l.consent::jsonb
      FROM unnest($22::uuid[], $23::uuid[], $24::uuid[], $25::uuid[], $26::uuid[],
                  $27::text[], $28::text[], $29::text[], $30::text[], $31::uuid[], $42::text[])
        AS l(id, ws, contact, webhook, request, idem, source, status, product, replay_of,
             consent)
    RETURNING 1),
pairs AS (
    INSERT INTO possible_duplicates (workspace_id, contact_id, other_contact_id, key_type, request_id)
    SELECT * FROM unnest($32::uuid[], $33::uuid[], $34::uuid[], $35::text[], $36::uuid[])
    ON CONFLICT (workspace_id, contact_id, other_contact_id, key_type) DO NOTHING
    RETURNING 1),
lead_keys AS (
    INSERT INTO webhook_lead_keys (webhook_id, key_type, value_sha256, accepted_at, request_id)
    SELECT * FROM unnest($37::uuid[], $38::text[], $39::bytea[], $40::timestamptz[],
                         $41::uuid[])
    ON CONFLICT (webhook_id, key_type, value_sha256) DO UPDATE
       SET accepted_at = EXCLUDED.accepted_at, request_id = EXCLUDED.request_id
     WHERE webhook_lead_keys.accepted_at < EXCLUDED.accepted_at
    RETURNING 1)
SELECT (SELECT count(*) FROM upd), (SELECT count(*) FROM ins),
       (SELECT count(*) FROM new_leads), (SELECT count(*) FROM pairs),
       (SELECT count(*) FROM lead_keys)
"""

# Completes a row the gateway left without a result; never overwrites a finished one.
# Notifies the gateway only for the requests a client waits for ($13, with each one's
# payload in $14: shared/done.py), and only for rows it stored: one NOTIFY per lead cost
# every gateway worker a wake-up and Postgres a queue entry per lead.
RECORD = """
WITH finished AS (
    INSERT INTO webhook_requests (request_id, workspace_id, webhook_id, status, received_at,
                                  processed_at, idempotency_key, body_sha256, replay_of,
                                  result, steps, error)
    SELECT u.request_id, u.workspace_id, u.webhook_id, u.status, u.received_at,
           u.processed_at, u.idempotency_key, u.body_sha256, u.replay_of,
           u.result::jsonb, u.steps::jsonb, u.error::jsonb
      FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::timestamptz[],
                  $6::timestamptz[], $7::text[], $8::text[], $9::uuid[], $10::text[],
                  $11::text[], $12::text[])
        AS u(request_id, workspace_id, webhook_id, status, received_at, processed_at,
             idempotency_key, body_sha256, replay_of, result, steps, error)
    ON CONFLICT (request_id) DO UPDATE
       SET status = EXCLUDED.status, processed_at = EXCLUDED.processed_at,
           result = EXCLUDED.result, steps = EXCLUDED.steps, error = EXCLUDED.error,
           body_sha256 = COALESCE(webhook_requests.body_sha256, EXCLUDED.body_sha256)
     WHERE webhook_requests.result IS NULL
    RETURNING request_id)
SELECT count(pg_notify('leadwire_request_done', n.payload))
  FROM finished f JOIN unnest($13::uuid[], $14::text[]) AS n(request_id, payload) USING (request_id)
"""

# --- for a person (the CLI, through admin.py) ----------------------------------------

POSSIBLE_DUPLICATES = """
SELECT d.id AS pair_id, d.key_type, d.request_id, d.created_at,
       a.id AS a_id, a.crm_id AS a_crm_id, a.phone AS a_phone, a.email AS a_email,
       a.first_name AS a_first_name, a.last_name AS a_last_name,
       b.id AS b_id, b.crm_id AS b_crm_id, b.phone AS b_phone, b.email AS b_email,
       b.first_name AS b_first_name, b.last_name AS b_last_name
  FROM possible_duplicates d
  JOIN contacts a ON a.id = d.contact_id
  JOIN contacts b ON b.id = d.other_contact_id
 WHERE d.workspace_id = $1
 ORDER BY d.created_at DESC, d.id DESC
 LIMIT $2
"""

CONTACT = """
SELECT c.*, b.name AS board_name FROM contacts c
  LEFT JOIN boards b ON b.id = c.board_id WHERE c.id = $1
"""

CONTACT_LEADS = """
SELECT id, request_id, webhook_id, source, status, product_interest, created_at
  FROM leads WHERE contact_id = $1 ORDER BY created_at DESC LIMIT 50
"""

CONTACT_DUPLICATES = """
SELECT CASE WHEN contact_id = $1 THEN other_contact_id ELSE contact_id END AS other,
       key_type, created_at
  FROM possible_duplicates WHERE contact_id = $1 OR other_contact_id = $1
 ORDER BY created_at DESC
"""
