"""What a lead buyer sets on a webhook, for the CLI (``leadwire webhook create|update``) and
the management API (``GET|PATCH .../webhooks/{id}/lead-buying``):

- acceptance criteria (``webhooks.acceptance``): required fields, allowed values, consent
  evidence required; the gateway checks them after mapping (services/ingest/acceptance.py,
  whose checks these are, through its admin module);
- the duplicate-lead window and key (``duplicate_window_s``, ``duplicate_key``): the
  processor rejects a lead whose key matches a lead the same webhook had accepted inside
  the window as ``duplicate_lead``;
- the Facebook page access token (``facebook_page_token``) the gateway fetches leads
  with: a credential, written and never read back (views say ``has_page_token``).

Every value is checked here and refused with :class:`~services.api.errors.Invalid`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from services.api import checks
from services.api.errors import Invalid, NotFound
from services.ingest import admin as gateway

DUPLICATE_KEYS = ("phone", "email", "crm_id")
DEFAULT_DUPLICATE_KEY = ["phone", "email"]
MAX_WINDOW = timedelta(days=366)
MAX_TOKEN = 2048

Row = dict[str, Any]


def parse_window(text: str, *, field: str = "--duplicate-window") -> int | None:
    """Seconds from ``30d``, ``12h``, ``90m`` ...; ``0`` or ``off``: no window (None)."""
    if text.strip().lower() in ("0", "off", "none"):
        return None
    period = checks.parse_duration(
        text, maximum=MAX_WINDOW, what="a duplicate-lead window", field=field
    )
    return check_window(int(period.total_seconds()), field=field)


def check_window(seconds: int | None, *, field: str = "duplicate_window_s") -> int | None:
    if seconds is None or seconds == 0:
        return None
    if not 1 <= seconds <= MAX_WINDOW.total_seconds():
        raise Invalid(f"a duplicate-lead window is 1 s to {MAX_WINDOW.days} days", field=field)
    return seconds


def check_duplicate_key(names: Sequence[str], *, field: str = "--duplicate-key") -> list[str]:
    """``["phone", "email"]`` (also ``["phone,email"]``): the fields a repeat is matched on."""
    keys = [n.strip().lower() for item in names for n in item.split(",") if n.strip()]
    unknown = sorted(set(keys) - set(DUPLICATE_KEYS))
    if not keys or unknown:
        raise Invalid(
            f"the duplicate key is made of {', '.join(DUPLICATE_KEYS)}"
            + (f" (not {', '.join(unknown)})" if unknown else ""),
            field=field,
            hint="e.g. --duplicate-key phone,email",
        )
    return list(dict.fromkeys(keys))


def check_page_token(token: str, *, field: str = "--page-token") -> str:
    text = token.strip()
    if not text or len(text) > MAX_TOKEN or any(c.isspace() for c in text):
        raise Invalid(
            f"a page access token is 1 to {MAX_TOKEN} characters without spaces", field=field
        )
    return text


def _fields(names: Sequence[str]) -> list[str]:
    return [n.strip() for item in names for n in item.split(",") if n.strip()]


def acceptance(
    stored: Any,
    *,
    require: Sequence[str] | None = None,
    allow: dict[str, list[str]] | None = None,
    require_consent: bool | None = None,
    clear: bool = False,
) -> Row:
    """The new ``webhooks.acceptance`` document: the stored one with each part given
    replaced (``clear`` starts from none)."""
    current, _problem = gateway.from_stored(None if clear else stored)
    doc = current.to_stored()
    if require is not None:
        doc["require"] = _fields(require)
    if allow is not None:
        doc["allow"] = allow
    if require_consent is not None:
        doc["require_consent"] = require_consent
    try:
        criteria = gateway.build(
            doc["require"], doc["allow"], require_consent=doc["require_consent"]
        )
    except gateway.AcceptanceError as exc:
        raise Invalid(str(exc), field="acceptance") from None
    return criteria.to_stored()


def parse_allow(items: Sequence[str]) -> dict[str, list[str]]:
    """``--allow FIELD=v1,v2`` (repeatable) as a dict."""
    try:
        return gateway.parse_allow(list(items))
    except gateway.AcceptanceError as exc:
        raise Invalid(str(exc), field="--allow") from None


def view(row: Row) -> Row:
    """What is shown of a webhook's lead-buying settings (never the page token)."""
    stored, problem = gateway.from_stored(row.get("acceptance"))
    return {
        "acceptance": stored.to_stored(),
        "acceptance_problem": problem,
        "duplicate_window_s": row.get("duplicate_window_s"),
        "duplicate_key": list(row.get("duplicate_key") or DEFAULT_DUPLICATE_KEY),
        "has_page_token": bool(row.get("has_page_token")),
    }


def describe_lines(w: Row) -> list[str]:
    """The lines ``leadwire webhook show`` prints about them."""
    doc = w.get("acceptance") or {}
    lines = []
    if doc.get("require"):
        lines.append(f"  requires:     {', '.join(doc['require'])}")
    for name, values in (doc.get("allow") or {}).items():
        lines.append(f"  accepts:      {name} in {', '.join(values)}")
    if doc.get("require_consent"):
        lines.append("  consent:      required (TrustedForm, LeadiD or TCPA consent)")
    window = w.get("duplicate_window_s")
    key = ",".join(w.get("duplicate_key") or DEFAULT_DUPLICATE_KEY)
    lines.append(
        f"  duplicates:   {_duration(window)} window on {key}"
        if window
        else "  duplicates:   no window"
    )
    if w.get("template") == "facebook":
        lines.append(f"  page token:   {'set' if w.get('has_page_token') else 'not set'}")
    return lines


def _duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


# --- the management API: GET|PATCH .../webhooks/{id}/lead-buying ----------------------


class LeadBuyingUpdate(BaseModel):
    """Only the fields given change."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    require: list[str] | None = Field(None, description="fields that must have a value")
    allow: dict[str, list[str]] | None = Field(
        None, description="field -> accepted values (trimmed, case-insensitive)"
    )
    require_consent: bool | None = Field(None, description="refuse leads without consent evidence")
    duplicate_window_s: int | None = Field(
        None, ge=0, le=int(MAX_WINDOW.total_seconds()), description="0 or null: no window"
    )
    duplicate_key: list[str] | None = Field(None, description="of phone, email, crm_id")
    facebook_page_token: str | None = Field(
        None, max_length=MAX_TOKEN, description="written, never read back"
    )


class LeadBuying(BaseModel):
    model_config = ConfigDict(frozen=True)

    webhook_id: uuid.UUID
    acceptance: dict[str, Any]
    duplicate_window_s: int | None
    duplicate_key: list[str]
    has_page_token: bool


def changes_from(body: LeadBuyingUpdate, row: Row) -> Row:
    """The column values a PATCH body asks for, checked."""
    given = body.model_fields_set
    out: Row = {}
    if given & {"require", "allow", "require_consent"}:
        out["acceptance"] = acceptance(
            row.get("acceptance"),
            require=body.require if "require" in given else None,
            allow=(body.allow or {}) if "allow" in given else None,
            require_consent=body.require_consent if "require_consent" in given else None,
        )
    if "duplicate_window_s" in given:
        out["duplicate_window_s"] = check_window(body.duplicate_window_s)
    if "duplicate_key" in given:
        out["duplicate_key"] = check_duplicate_key(body.duplicate_key or [], field="duplicate_key")
    if "facebook_page_token" in given:
        token = body.facebook_page_token
        out["facebook_page_token"] = (
            check_page_token(token, field="facebook_page_token") if token else None
        )
    if not out:
        raise Invalid("nothing to change", hint="give at least one field")
    return out


def answer(row: Row) -> LeadBuying:
    shown = view(row)
    return LeadBuying(
        webhook_id=row["id"],
        acceptance=shown["acceptance"],
        duplicate_window_s=shown["duplicate_window_s"],
        duplicate_key=shown["duplicate_key"],
        has_page_token=shown["has_page_token"],
    )


async def _webhook(repo: Any, workspace_id: uuid.UUID, webhook_id: uuid.UUID) -> Row:
    row: Row | None = await repo.webhook(webhook_id)
    if row is None or row["workspace_id"] != workspace_id:
        raise NotFound(f"no webhook with id {webhook_id}", field="webhook_id")
    return row


async def get_lead_buying(
    workspace_id: uuid.UUID, webhook_id: uuid.UUID, *, repo: Any, ctx: Any
) -> LeadBuying:
    """A webhook's acceptance criteria, duplicate-lead window and key, and whether its
    Facebook page token is set (the token itself is never read back)"""
    return answer(await _webhook(repo, workspace_id, webhook_id))


async def update_lead_buying(
    workspace_id: uuid.UUID,
    webhook_id: uuid.UUID,
    body: LeadBuyingUpdate,
    *,
    repo: Any,
    ctx: Any,
) -> LeadBuying:
    """Change a webhook's acceptance criteria, duplicate-lead window or key, or Facebook
    page token (only the fields given; gateways and processors pick it up at once)"""
    row = await _webhook(repo, workspace_id, webhook_id)
    return answer(await repo.update_webhook(row["id"], changes_from(body, row)))
