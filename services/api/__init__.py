"""The management API: workspaces' webhooks, mappings, boards, rules, notifications, API
keys, archive and replay over JSON/HTTP with API keys (see docs/api.md)."""
