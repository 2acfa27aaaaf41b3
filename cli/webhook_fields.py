"""Reading what ``leadwire webhook ...`` and ``leadwire mapping ...`` are given: the
management admin's checks (:mod:`services.api.checks`), named by their flags in the
messages. A malformed value is a usage error (exit 2)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from services.api.admin import checks
from services.api.admin import webhook_options as options

basic_username = checks.basic_username
check_auth_mode = checks.check_auth_mode
check_header = checks.check_header
read_mapping = checks.read_mapping
template_named = checks.template_named
parse_duration = checks.parse_duration


def parse_size(text: str) -> int:
    return checks.parse_size(text, label="--max-body")


def check_rate_limit(value: int) -> int:
    return checks.check_rate_limit(value, label="--rate-limit")


def check_idempotency_field(path: str) -> str:
    return checks.check_idempotency_field(path, label="--idempotency-field")


def check_secret(mode: str, imported: str | None) -> None:
    """Raise if ``imported`` (``--secret``) does not suit ``mode``."""
    if imported is not None:
        checks.issue_secret(mode, imported, label="--secret")


# --- lead buying: acceptance criteria, duplicate-lead window, the Facebook page token ---

Require = Annotated[
    list[str] | None,
    typer.Option(
        "--require",
        help="A field the lead must have (repeat, or comma-separate): product, custom.state, ...",
    ),
]
Allow = Annotated[
    list[str] | None,
    typer.Option("--allow", help="FIELD=v1,v2: the values accepted for FIELD (repeatable)."),
]
RequireConsent = Annotated[
    bool | None,
    typer.Option(
        "--require-consent/--no-require-consent",
        help="Refuse leads without consent evidence (TrustedForm, LeadiD or TCPA consent).",
    ),
]
ClearCriteria = Annotated[
    bool,
    typer.Option("--clear-criteria", help="Remove every acceptance criterion first."),
]
DuplicateWindow = Annotated[
    str | None,
    typer.Option(
        "--duplicate-window",
        help="Reject a repeat of a lead this webhook accepted within e.g. 30d, 12h; 0 = off.",
    ),
]
DuplicateKey = Annotated[
    str | None,
    typer.Option("--duplicate-key", help="What makes a repeat: phone,email (default), crm_id."),
]
PageToken = Annotated[
    str | None,
    typer.Option("--page-token", help="Facebook page access token the leads are fetched with."),
]


def lead_buying(
    row: dict[str, Any] | None,
    *,
    require: list[str] | None = None,
    allow: list[str] | None = None,
    require_consent: bool | None = None,
    clear: bool = False,
    duplicate_window: str | None = None,
    duplicate_key: str | None = None,
    page_token: str | None = None,
) -> dict[str, Any]:
    """The column values the lead-buying flags ask for (checked; nothing given: {})."""
    out: dict[str, Any] = {}
    if clear or require is not None or allow is not None or require_consent is not None:
        out["acceptance"] = options.acceptance(
            row.get("acceptance") if row else None,
            require=require,
            allow=options.parse_allow(allow) if allow is not None else None,
            require_consent=require_consent,
            clear=clear,
        )
    if duplicate_window is not None:
        out["duplicate_window_s"] = options.parse_window(duplicate_window)
    if duplicate_key is not None:
        out["duplicate_key"] = options.check_duplicate_key([duplicate_key])
    if page_token is not None:
        out["facebook_page_token"] = options.check_page_token(page_token)
    return out
