"""Validation of a mapped lead: each check drops the field it finds at fault and says why.

Phone or email is required; phones become E.164, emails are normalized; consent evidence
is typed (:mod:`shared.mapping.consent`); text fields are collapsed and bounded; custom
fields are bounded in count, size and depth. Messages never echo a value (no PII).
"""

from __future__ import annotations

import math
from typing import Any

from shared.events import FieldError
from shared.mapping.consent import check_consent
from shared.mapping.limits import (
    MAX_CUSTOM_DEPTH,
    MAX_CUSTOM_FIELDS,
    MAX_CUSTOM_KEY_LENGTH,
    MAX_CUSTOM_STRING,
    MAX_FIELD_LENGTH,
    MAX_PHONE_INPUT,
)
from shared.mapping.normalize import normalize_email, phone_parts
from shared.mapping.paths import OBJECT
from shared.mapping.transforms import TransformError, as_text

_TEXT_FIELDS = ("crm_id", "first_name", "last_name", "product", "lead_status")

_PHONE_MESSAGES = {
    "invalid_type": "phone must be text or a number",
    "too_long": f"phone is longer than {MAX_PHONE_INPUT} characters",
    "required": "phone is empty",
}

_EMAIL_ERRORS = {
    "invalid_type": ("invalid_type", "email must be text"),
    "too_long": ("too_long", f"email is longer than {MAX_FIELD_LENGTH['email']} characters"),
}
_BAD_EMAIL = ("invalid_email", "email is not a well-formed address")

_CUSTOM_MESSAGES = {
    "too_long": f"is too long (text at most {MAX_CUSTOM_STRING} characters, keys at most "
    f"{MAX_CUSTOM_KEY_LENGTH})",
    "too_deep": f"is nested more than {MAX_CUSTOM_DEPTH} levels deep",
    "invalid_type": "has a value that is not text, a number, true/false, a list or an object",
}


def validate(
    lead: dict[str, Any], custom: dict[str, Any], region: str, errors: list[FieldError]
) -> None:
    """Normalize ``lead`` and ``custom`` in place; append what is wrong to ``errors``."""
    check_consent(lead, errors)
    check_text_fields(lead, errors)
    has_phone = check_phone(lead, custom, region, errors)
    has_email = check_email(lead, errors)
    if not (has_phone or has_email):
        errors.append(
            FieldError(
                field="phone",
                code="required",
                message="a phone number or an email address is required",
            )
        )
    check_custom(custom, errors)


def check_text_fields(lead: dict[str, Any], errors: list[FieldError]) -> None:
    """Text fields collapsed (``crm_id`` only stripped), empty ones dropped, bounded."""
    for name in _TEXT_FIELDS:
        if name not in lead:
            continue
        value = lead[name]
        try:
            text = " ".join(as_text(value).split()) if name != "crm_id" else as_text(value).strip()
        except TransformError:
            errors.append(
                FieldError(
                    field=name, code="invalid_type", message=f"{name} must be text or a number"
                )
            )
            del lead[name]
            continue
        if not text:
            del lead[name]
        elif len(text) > MAX_FIELD_LENGTH[name]:
            errors.append(
                FieldError(
                    field=name,
                    code="too_long",
                    message=f"{name} is longer than {MAX_FIELD_LENGTH[name]} characters",
                )
            )
            del lead[name]
        else:
            lead[name] = text


def check_phone(
    lead: dict[str, Any], custom: dict[str, Any], region: str, errors: list[FieldError]
) -> bool:
    """The phone as E.164 (its extension into ``custom``); True when the lead gave one."""
    if "phone" not in lead:
        return False
    value = lead.pop("phone")
    try:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        e164, extension = phone_parts(value, region)
    except ValueError as exc:
        code = str(exc)
        message = _PHONE_MESSAGES.get(
            code,
            f"phone is not a valid phone number for region "
            f"{region} (give it with + and the country code)",
        )
        if code not in ("invalid_type", "too_long"):
            code = "invalid_phone"
        errors.append(FieldError(field="phone", code=code, message=message))
    else:
        lead["phone"] = e164
        if extension:
            custom["phone_extension"] = extension
    return True


def check_email(lead: dict[str, Any], errors: list[FieldError]) -> bool:
    """The email normalized; True when the lead gave one."""
    if "email" not in lead:
        return False
    value = lead.pop("email")
    try:
        lead["email"] = normalize_email(value)
    except ValueError as exc:
        code, message = _EMAIL_ERRORS.get(str(exc), _BAD_EMAIL)
        errors.append(FieldError(field="email", code=code, message=message))
    return True


def check_custom(custom: dict[str, Any], errors: list[FieldError]) -> None:
    """Custom fields bounded: all dropped when too many, else each bad one dropped."""
    if len(custom) > MAX_CUSTOM_FIELDS:
        errors.append(
            FieldError(
                field="custom",
                code="too_long",
                message=f"more than {MAX_CUSTOM_FIELDS} custom fields",
            )
        )
        custom.clear()
        return
    bad: list[str] = []
    for key, value in custom.items():
        if not isinstance(key, str) or len(key) > MAX_CUSTOM_KEY_LENGTH:
            code: str | None = "too_long" if isinstance(key, str) else "invalid_type"
        else:
            code = _custom_value_problem(value)
        if code:
            label = f"custom.{_safe_key(key)}"
            errors.append(
                FieldError(
                    field=label,
                    code="too_long" if code == "too_deep" else code,
                    message=f"{label} {_CUSTOM_MESSAGES[code]}",
                )
            )
            bad.append(key)
    for key in bad:
        del custom[key]


def _custom_value_problem(value: Any, depth: int = 0) -> str | None:
    """None when the value is within bounds, else an error code."""
    if isinstance(value, str):
        return "too_long" if len(value) > MAX_CUSTOM_STRING else None
    if value is None or isinstance(value, (bool, int)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else "invalid_type"
    if depth >= MAX_CUSTOM_DEPTH:
        return "too_deep"
    if isinstance(value, OBJECT):
        for key, item in value.items():
            if not isinstance(key, str):
                return "invalid_type"
            if len(key) > MAX_CUSTOM_KEY_LENGTH:
                return "too_long"
            code = _custom_value_problem(item, depth + 1)
            if code:
                return code
        return None
    if isinstance(value, (list, tuple)):
        for item in value:
            code = _custom_value_problem(item, depth + 1)
            if code:
                return code
        return None
    return "invalid_type"


def _safe_key(key: Any) -> str:
    text = str(key)
    return text if len(text) <= 60 else text[:57] + "..."
