"""What ``leadwire webhook ...`` prints about a webhook: never a stored secret; a new
secret only in the document of the command that issued it."""

from __future__ import annotations

from typing import Any

from cli.context import load_settings
from services.api import admin


def view(row: dict[str, Any]) -> dict[str, Any]:
    """What list/show print about a webhook (never a secret)."""
    return admin.webhook_view(row, load_settings().public_url)


def describe(w: dict[str, Any]) -> str:
    lines = [
        f"webhook {w['name']} ({w['id']}) in workspace {w['workspace']}",
        f"  url:          {w['url']}",
        f"  status:       {w['status']}",
        f"  template:     {w['template']}",
        f"  auth:         {w['auth_mode']}",
    ]
    if w.get("basic_username"):
        lines.append(f"  username:     {w['basic_username']}")
    if w.get("api_key_header"):
        lines.append(f"  key header:   {w['api_key_header']}")
    if w.get("verify_token"):
        lines.append(f"  verify token: {w['verify_token']}")
    if w.get("previous_secret_valid_until"):
        lines.append(
            f"  old secret valid until {w['previous_secret_valid_until']:%Y-%m-%d %H:%M:%S %Z}"
        )
    limit = w.get("rate_limit_per_minute")
    lines.append(f"  rate limit:   {f'{limit}/min' if limit else 'default'}")
    body = w.get("max_body_bytes")
    lines.append(f"  max body:     {f'{body} bytes' if body else 'default'}")
    lines.append(
        f"  idempotency:  {w.get('idempotency_field') or 'webhook-id / Idempotency-Key headers'}"
    )
    lines.append(
        f"  mapping:      {w['mapping_entries']} entries (`leadwire mapping show {w['id']}`)"
    )
    lines.extend(admin.webhook_options.describe_lines(w))
    return "\n".join(lines)


def secret_lines(data: dict[str, Any]) -> list[str]:
    if not data.get("secret"):
        return []
    mode = data["auth_mode"]
    label = {"basic": "password", "api-key": "api key"}.get(mode, "secret")
    lines = [f"  {label + ':':<13} {data['secret']}"]
    if mode == "api-key":
        lines.append(f"  send it as:   {data['api_key_header']}: <api key>")
    elif mode == "basic":
        lines.append(
            f"  send it as:   Authorization: Basic base64({data['basic_username']}:<password>)"
        )
    elif mode == "github":
        lines.append("  sign with:    X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>")
    elif mode == "standard":
        lines.append(
            "  sign with:    Standard Webhooks (webhook-id, webhook-timestamp, webhook-signature)"
        )
    lines.append("  (shown once: store it now; `leadwire webhook rotate-secret` issues a new one)")
    return lines


def created_doc(data: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "id",
        "workspace_id",
        "workspace",
        "name",
        "url",
        "status",
        "template",
        "auth_mode",
        "secret",
        "basic_username",
        "api_key_header",
        "verify_token",
        "rate_limit_per_minute",
        "max_body_bytes",
        "idempotency_field",
        "mapping_entries",
        "acceptance",
        "duplicate_window_s",
        "duplicate_key",
        "has_page_token",
        "created_at",
    )
    return {k: data.get(k) for k in keys}
