"""Consent evidence: the mapping targets that carry it, typed and validated.

A lead bought from a vendor should come with the proof that the person agreed to be
contacted. Three kinds are common, and a mapping writes them to these targets:

| target | what it holds | valid when |
|---|---|---|
| ``trustedform_cert_url`` | ActiveProspect TrustedForm certificate | ``https://cert.trustedform.com/<40 hex>`` |
| ``leadid_token`` | Jornaya LeadiD token | 36 characters, a UUID's shape (kept upper-case) |
| ``tcpa_consent`` | the TCPA consent flag | true/false (``yes``, ``1``, ``on`` ... as the ``boolean`` transform reads them) |
| ``tcpa_consent_text`` | the consent language the person saw | text, at most 5,000 characters |
| ``tcpa_consent_at`` | when they agreed | ISO 8601 (a date alone is midnight UTC; no zone: UTC), or Unix seconds |

A value that is not valid is a field error (the lead is refused as ``validation``, like
a bad phone): evidence that cannot be checked is no evidence. The lead carries what was
given as :class:`shared.events.Consent` (``MappedLead.consent``, None when none was);
the processor stores it with the lead (``leads.consent``) and the archive keeps it with
the event. :func:`has_consent` is what a webhook's ``require_consent`` asks.

Pure, no I/O; messages never echo a value.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any

from shared.events import Consent, FieldError
from shared.mapping.transforms import TransformError, as_text, to_boolean

CONSENT_FIELDS = (
    "trustedform_cert_url",
    "leadid_token",
    "tcpa_consent",
    "tcpa_consent_text",
    "tcpa_consent_at",
)
MAX_CONSENT_TEXT = 5000
# ActiveProspect's certificate URLs: https://cert.trustedform.com/ and a 40-hex cert id.
_TRUSTEDFORM = re.compile(r"^https://cert\.trustedform\.com/([0-9a-fA-F]{40})$")
_LEADID = re.compile(
    r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$"
)


def _error(field: str, code: str, message: str) -> FieldError:
    return FieldError(field=field, code=code, message=message)


def _text(value: Any) -> str:
    return as_text(value).strip()


def _trustedform(value: Any) -> str:
    text = _text(value)
    if not _TRUSTEDFORM.match(text):
        raise ValueError(
            "invalid_trustedform_cert_url",
            "trustedform_cert_url is not a TrustedForm certificate URL "
            "(https://cert.trustedform.com/ and a 40-character certificate id)",
        )
    return text


def _leadid(value: Any) -> str:
    text = _text(value)
    if len(text) != 36 or not _LEADID.match(text):
        raise ValueError(
            "invalid_leadid_token",
            "leadid_token is not a LeadiD token (36 characters: 8-4-4-4-12 hexadecimal)",
        )
    return text.upper()


def _flag(value: Any) -> bool:
    try:
        return to_boolean(value)
    except TransformError:
        raise ValueError("invalid_type", "tcpa_consent must be true or false") from None


def _consent_text(value: Any) -> str:
    text = " ".join(_text(value).split())
    if len(text) > MAX_CONSENT_TEXT:
        raise ValueError(
            "too_long", f"tcpa_consent_text is longer than {MAX_CONSENT_TEXT} characters"
        )
    return text


def parse_moment(value: Any) -> datetime:
    """A timestamp as vendors send one: ISO 8601 text, a date, or Unix seconds."""
    bad = ValueError("invalid_date", "tcpa_consent_at is not a date and time (ISO 8601)")
    if isinstance(value, bool):
        raise bad
    if isinstance(value, (int, float)):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            raise bad from None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        text = value.strip()
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T", 1))
        except ValueError:
            if not (text.isascii() and text.isdigit() and len(text) <= 11):
                raise bad from None
            moment = datetime.fromtimestamp(int(text), UTC)
    else:
        raise bad
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _checks() -> dict[str, Any]:
    return {
        "trustedform_cert_url": _trustedform,
        "leadid_token": _leadid,
        "tcpa_consent": _flag,
        "tcpa_consent_text": _consent_text,
        "tcpa_consent_at": parse_moment,
    }


_CHECKS = _checks()


def check_consent(lead: dict[str, Any], errors: list[FieldError]) -> None:
    """Take the consent targets out of ``lead`` and put back ``consent`` (a
    :class:`Consent`) when any is valid; each invalid one is a field error."""
    found: dict[str, Any] = {}
    for name in CONSENT_FIELDS:
        if name not in lead:
            continue
        value = lead.pop(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        try:
            found[name] = _CHECKS[name](value)
        except TransformError:
            errors.append(_error(name, "invalid_type", f"{name} must be text"))
        except ValueError as exc:
            code, message = exc.args if len(exc.args) == 2 else ("invalid", f"{name} is invalid")
            errors.append(_error(name, code, message))
    if found:
        lead["consent"] = Consent(**found)


def has_consent(consent: Consent | None) -> bool:
    """Evidence a lead buyer can show: a TrustedForm certificate, a LeadiD token, or the
    TCPA consent flag set."""
    if consent is None:
        return False
    return bool(consent.trustedform_cert_url or consent.leadid_token or consent.tcpa_consent)
