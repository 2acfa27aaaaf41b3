#!/usr/bin/env bash
# A CRM's whole flow through the management API, as in docs/api.md: with `make up`
# running, from the project folder: bash docs/examples/api-flow.sh
set -euo pipefail
set -a; . "${LEADWIRE_STACK_ENV:-.leadwire/stack.env}"; set +a
export PATH="$PWD/.venv/bin:$PATH"
API=$LEADWIRE_API_URL
NAME="acme-$RANDOM"

# The operator gives the CRM a workspace and a manage key for it (the key is shown once).
leadwire workspace create "$NAME" --json > /dev/null
KEY=$(leadwire apikey create --workspace "$NAME" --scope manage --name crm --json | jq -r .key)
AUTH="Authorization: Bearer $KEY"
JSON="Content-Type: application/json"
WS=$(curl -sS -H "$AUTH" "$API/v1/whoami" | jq -r .workspace_id)

# 1. A webhook for a vendor that sends an API key in X-Vendor-Key (its secret: shown once).
HOOK_DOC=$(curl -sS -X POST "$API/v1/workspaces/$WS/webhooks" -H "$AUTH" -H "$JSON" \
  -d '{"name": "vendor", "auth_mode": "api-key", "api_key_header": "X-Vendor-Key"}')
HOOK=$(jq -r .id <<< "$HOOK_DOC"); SECRET=$(jq -r .secret <<< "$HOOK_DOC"); URL=$(jq -r .url <<< "$HOOK_DOC")
echo "webhook $HOOK at $URL"

# 2. The vendor's mapping, then a test of it on a sample body.
curl -sS -X PUT "$API/v1/workspaces/$WS/webhooks/$HOOK/mapping" -H "$AUTH" -H "$JSON" -d '{
  "mapping": {"entries": [
    {"source": "lead.mail", "target": "email", "transform": "lowercase"},
    {"source": "lead.mobile", "target": "phone", "transform": "e164"},
    {"source": "first", "target": "first_name"}]}}' | jq -c '.mapping.entries | length'
curl -sS -X POST "$API/v1/workspaces/$WS/webhooks/$HOOK/mapping/test" -H "$AUTH" -H "$JSON" \
  -d '{"sample": {"lead": {"mobile": "(415) 555-0134", "mail": "Dana@Example.COM"}, "first": "Dana"}}' \
  | jq -c '{valid, lead: {phone: .lead.phone, email: .lead.email}}'

# 3. The vendor posts a lead to the gateway (it waits up to 5 s for the outcome).
REQUEST=$(curl -sS -X POST "$URL" -H "$JSON" -H "X-Vendor-Key: $SECRET" -H 'Prefer: wait=5' \
  -d '{"lead": {"mobile": "(415) 555-0134", "mail": "Dana@Example.COM"}, "first": "Dana"}' \
  | jq -r .request_id)
echo "request $REQUEST"

# 4. The archive: search the webhook's last hour (the archiver stores within seconds).
for _ in $(seq 30); do
  COUNT=$(curl -sS -H "$AUTH" "$API/v1/workspaces/$WS/archive?webhook_id=$HOOK&since=1h" | jq .count)
  [ "$COUNT" -ge 1 ] && break
  sleep 1
done
curl -sS -H "$AUTH" "$API/v1/workspaces/$WS/archive?webhook_id=$HOOK&since=1h" \
  | jq -c '.requests[] | {request_id, status, match_type}'
curl -sS -H "$AUTH" "$API/v1/workspaces/$WS/archive/$REQUEST" | jq -c '{request_id, status}'

# 5. A replay of the last hour with the current mapping: a dry run unless "dry_run": false.
curl -sS -X POST "$API/v1/workspaces/$WS/webhooks/$HOOK/replays" -H "$AUTH" -H "$JSON" \
  -d '{"since": "1h"}' | jq -c '{dry_run, summary}'

# 6. The webhook's figures, as analytics counted them (within a second or so).
for _ in $(seq 30); do
  TOTAL=$(curl -sS -H "$AUTH" "$API/v1/workspaces/$WS/webhooks/$HOOK/analytics" \
    | jq .metrics.total_requests)
  [ "$TOTAL" -ge 1 ] && break
  sleep 1
done
curl -sS -H "$AUTH" "$API/v1/workspaces/$WS/webhooks/$HOOK/analytics" \
  | jq -c '{total: .metrics.total_requests, success_rate: .metrics.success_rate, p95: .metrics.p95_processing_time}'

# 7. Dead letters naming the workspace, and a dry run of sending them back.
curl -sS -H "$AUTH" "$API/v1/workspaces/$WS/deadletters?since=24h" | jq -c '{count, by_reason}'
curl -sS -X POST "$API/v1/workspaces/$WS/deadletters/retry" -H "$AUTH" -H "$JSON" \
  -d '{"all": true, "since": "24h"}' | jq -c '{dry_run, summary}'

# 8. Another workspace's objects do not exist for this key.
curl -sS -o /dev/null -w '%{http_code}\n' -H "$AUTH" \
  "$API/v1/workspaces/00000000-0000-4000-8000-000000000000/webhooks"
