"""Phones and emails: the two contact fields, in the one form the rest of the system keeps.

Phones become E.164 (a national number is read in the workspace's region, or the entry's;
an international number may start with ``+``, with the region's own international prefix
such as ``011`` in the US, or with ``00``, the prefix of most of the world, in any region).
Emails are NFKC-normalized (an address in full-width letters is the ASCII address),
checked (no DNS) and lowercased. Errors are ``ValueError(code)``, never echoing the value
(no PII).
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache
from typing import Any

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from shared.mapping.limits import MAX_FIELD_LENGTH, MAX_PHONE_INPUT

REGIONS = frozenset(phonenumbers.SUPPORTED_REGIONS)


def phone_parts(raw: Any, region: str) -> tuple[str, str | None]:
    """(E.164, extension or None); raises ValueError(code)."""
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        raise ValueError("invalid_type")
    text = str(raw).strip()
    if not text:
        raise ValueError("required")
    if len(text) > MAX_PHONE_INPUT:
        raise ValueError("too_long")
    region_code = region.upper() if isinstance(region, str) and region.upper() in REGIONS else None
    result = _parse_phone(text, region_code)
    if isinstance(result, str):
        raise ValueError(result)
    return result


# Parsing and validating is most of a lead's mapping time; vendors retry and resend the
# same numbers, so recent answers (valid or not) are remembered. Pure, so safe to share.
@lru_cache(maxsize=16384)
def _parse_phone(text: str, region_code: str | None) -> tuple[str, str | None] | str:
    """(E.164, extension) or an error code.

    phonenumbers reads the region's own international prefix (``011`` in the US, ``0011``
    in Australia); ``00`` is read as one in every region when the number is not a valid
    national one (no national number starts with it)."""
    number = _valid_number(text, region_code)
    if number is None and text.startswith(("00", "\uff10\uff10")):  # (or full-width 00)
        number = _valid_number("+" + text[2:], None)
    if number is None:
        return "invalid_phone"
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return e164, (number.extension or None)


def _valid_number(text: str, region_code: str | None) -> phonenumbers.PhoneNumber | None:
    try:
        number = phonenumbers.parse(text, region_code)
    except phonenumbers.NumberParseException:
        return None
    return number if phonenumbers.is_valid_number(number) else None


def normalize_phone(raw: str, region: str) -> str:
    """A phone number as E.164, reading national numbers in ``region``.

    Raises ``ValueError(code)`` with code ``invalid_phone``, ``invalid_type``,
    ``too_long`` or ``required``. An extension is dropped here (see map_and_validate)."""
    return phone_parts(raw, region)[0]


def normalize_email(raw: Any) -> str:
    """A well-formed address, NFKC-normalized and lowercased (no DNS). Raises
    ``ValueError(code)``."""
    if not isinstance(raw, str):
        raise ValueError("invalid_type")
    text = raw.strip()
    if not text:
        raise ValueError("required")
    if len(text) > MAX_FIELD_LENGTH["email"]:
        raise ValueError("too_long")
    normalized = _check_email(text)
    if normalized is None:
        raise ValueError("invalid_email")
    return normalized


@lru_cache(maxsize=16384)
def _check_email(text: str) -> str | None:
    # Compatibility forms (full-width letters, the full-width at sign) are the same
    # address: one contact.
    text = unicodedata.normalize("NFKC", text)
    try:
        result = validate_email(text, check_deliverability=False)
    except EmailNotValidError:
        return None
    except Exception:  # the library's own edge cases (odd unicode): still just invalid
        return None
    return str(result.normalized).lower()
