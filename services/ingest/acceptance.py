"""A webhook's acceptance criteria: what the buyer ordered, checked after mapping.

Stored in ``webhooks.acceptance`` (migration 085) as
``{"require": [field, ...], "allow": {field: [value, ...]}, "require_consent": bool}``
and set with ``leadwire webhook update NAME --require F --allow F=v1,v2 --require-consent``.

- ``require``: the field must have a value.
- ``allow``: the field's value must be one of these (compared trimmed and
  case-insensitively; a number as its text). A lead without the field is not accepted
  either: a buyer who lists the states it buys in does not buy a lead without one.
- ``require_consent``: the lead must carry consent evidence (a TrustedForm certificate,
  a LeadiD token or the TCPA consent flag; :func:`shared.mapping.consent.has_consent`).

A field is a lead field (``phone``, ``product``, ...), a consent field
(``trustedform_cert_url``, ...) or a custom field (``custom.state``, or ``state``
when no lead field has that name). A lead that fails is answered ``400``, reason
``not_accepted``, with one field error (code ``not_accepted``) per failed criterion; its
``LeadRejected`` outcome carries the reason, so analytics counts it as such.

Pure, no I/O (the gateway's step is :func:`services.ingest.buyer.accept`). Messages name the field and the accepted values
(the buyer's settings), never the lead's value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.events import Consent, FieldError, MappedLead
from shared.mapping.consent import CONSENT_FIELDS, has_consent

REASON = "not_accepted"
CODE = "not_accepted"
MAX_FIELDS = 50
MAX_VALUES = 200
MAX_VALUE_LENGTH = 200
_FIELD = re.compile(r"^(custom\.)?[A-Za-z0-9_][A-Za-z0-9_\-.]{0,99}$")


class AcceptanceError(ValueError):
    """Criteria that cannot be used (a bad field name, too many values, a bad shape)."""


@dataclass(frozen=True, slots=True)
class Acceptance:
    require: tuple[str, ...] = ()
    # field -> the accepted values, folded (see :func:`fold`); the texts as given for messages.
    allow: Mapping[str, frozenset[str]] = field(default_factory=dict)
    allow_shown: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    require_consent: bool = False

    def __bool__(self) -> bool:
        return bool(self.require or self.allow or self.require_consent)

    def to_stored(self) -> dict[str, Any]:
        """The ``webhooks.acceptance`` document."""
        return {
            "require": list(self.require),
            "allow": {name: list(values) for name, values in self.allow_shown.items()},
            "require_consent": self.require_consent,
        }


NO_CRITERIA = Acceptance()


def fold(value: Any) -> str | None:
    """A value as compared: text trimmed and case-folded; None when there is none."""
    if value is None or isinstance(value, (dict, list)):
        return None
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float) and value.is_integer():
        text = str(int(value))
    else:
        text = str(value)
    text = " ".join(text.split()).casefold()
    return text or None


def check_field_name(name: str) -> str:
    """``name`` trimmed, or :class:`AcceptanceError` when it is not a field name."""
    text = name.strip()
    if not _FIELD.match(text):
        raise AcceptanceError(
            f"{name!r} is not a field name (a lead field such as product, a consent field, "
            "or custom.<name>)"
        )
    return text


def build(
    require: list[str] | tuple[str, ...] = (),
    allow: Mapping[str, list[str] | tuple[str, ...]] | None = None,
    *,
    require_consent: bool = False,
) -> Acceptance:
    """Criteria from their parts, checked (:class:`AcceptanceError` naming the problem)."""
    if isinstance(require, str) or not isinstance(require, (list, tuple)):
        raise AcceptanceError("the required fields must be a list")
    names = tuple(dict.fromkeys(check_field_name(str(n)) for n in require))
    allow = allow or {}
    if len(names) > MAX_FIELDS or len(allow) > MAX_FIELDS:
        raise AcceptanceError(f"at most {MAX_FIELDS} required fields and {MAX_FIELDS} allow lists")
    folded: dict[str, frozenset[str]] = {}
    shown: dict[str, tuple[str, ...]] = {}
    for raw_name, values in allow.items():
        name = check_field_name(raw_name)
        if isinstance(values, str) or not isinstance(values, (list, tuple)):
            raise AcceptanceError(f"the accepted values of {name} must be a list")
        texts = tuple(dict.fromkeys(" ".join(str(v).split()) for v in values if fold(v)))
        if not texts:
            raise AcceptanceError(f"--allow {name}= names no value")
        if len(texts) > MAX_VALUES or any(len(t) > MAX_VALUE_LENGTH for t in texts):
            raise AcceptanceError(
                f"{name}: at most {MAX_VALUES} values of at most {MAX_VALUE_LENGTH} characters"
            )
        folded[name] = frozenset(t.casefold() for t in texts)
        shown[name] = texts
    return Acceptance(names, folded, shown, require_consent=bool(require_consent))


def from_stored(stored: Any) -> tuple[Acceptance, str | None]:
    """The criteria in a ``webhooks.acceptance`` value, and the problem when they cannot be
    used (the webhook then takes no leads rather than leads the buyer did not order)."""
    if not stored:
        return NO_CRITERIA, None
    if isinstance(stored, (str, bytes)):  # a connection without the jsonb codec
        import orjson

        stored = orjson.loads(stored)
    if not isinstance(stored, dict):
        return NO_CRITERIA, "acceptance_invalid"
    try:
        return (
            build(
                stored.get("require") or [],
                stored.get("allow") or {},
                require_consent=bool(stored.get("require_consent")),
            ),
            None,
        )
    except (AcceptanceError, AttributeError, TypeError):
        return NO_CRITERIA, "acceptance_invalid"


def parse_allow(items: list[str]) -> dict[str, list[str]]:
    """``["state=CA,NV", "product=Bath"]`` (the CLI's ``--allow``) as a dict; a field
    named twice gets the values of both."""
    out: dict[str, list[str]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        if not sep:
            raise AcceptanceError(f"--allow {item!r}: write FIELD=value1,value2")
        out.setdefault(check_field_name(name), []).extend(
            v.strip() for v in values.split(",") if v.strip()
        )
    return out


def value_of(lead: MappedLead, name: str) -> Any:
    """A lead's value for a criterion's field: lead field, consent field, custom field."""
    if name.startswith("custom."):
        return lead.custom.get(name[len("custom.") :])
    if name in CONSENT_FIELDS:
        consent: Consent | None = lead.consent
        return getattr(consent, name) if consent is not None else None
    return lead.field(name)


def _present(value: Any) -> bool:
    if isinstance(value, (dict, list)):
        return bool(value)
    return fold(value) is not None


def check(criteria: Acceptance, lead: MappedLead) -> list[FieldError]:
    """One field error per criterion the lead fails (empty: accepted)."""
    if not criteria:
        return []
    errors: list[FieldError] = []
    for name in criteria.require:
        if not _present(value_of(lead, name)):
            errors.append(
                FieldError(field=name, code=CODE, message=f"{name} is required by this buyer")
            )
    for name, accepted in criteria.allow.items():
        value = fold(value_of(lead, name))
        if value is None or value not in accepted:
            listed = ", ".join(criteria.allow_shown[name][:20])
            more = " ..." if len(criteria.allow_shown[name]) > 20 else ""
            what = "is missing" if value is None else "is not an accepted value"
            errors.append(
                FieldError(
                    field=name, code=CODE, message=f"{name} {what} (accepted: {listed}{more})"
                )
            )
    if criteria.require_consent and not has_consent(lead.consent):
        errors.append(
            FieldError(
                field="consent",
                code=CODE,
                message="this buyer requires consent evidence (trustedform_cert_url, "
                "leadid_token or tcpa_consent)",
            )
        )
    return errors
