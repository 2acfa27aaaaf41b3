"""Checking what the management operations are given: names, regions, durations, sizes,
limits, header names, mapping documents, templates, secrets and board-rule conditions.
Pure (no I/O but reading a mapping file); each check raises :class:`Invalid` saying how
to write the value, or :class:`AdminError` for a mapping that does not compile.

``label`` is how the caller names the value in a message: the CLI's flag
(``--rate-limit``), the API's field (``rate_limit_per_minute``).
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import phonenumbers

from services.api.errors import AdminError, Invalid
from shared.mapping import (
    CUSTOM_PREFIX,
    Mapping,
    MappingError,
    compile_mapping,
    compile_path,
    load_mapping_file,
    load_mapping_text,
    parse_mapping,
)
from shared.secrets import AUTH_MODES, check_imported_secret, generate_secret, stored_form
from shared.templates import TEMPLATES, Template, get_template

MAX_NAME = 200
MAX_GRACE = timedelta(days=30)
MAX_KEY_LIFETIME = timedelta(days=3650)
MAX_BODY_LIMIT = 64 * 1024 * 1024
MAX_RATE_LIMIT = 1_000_000
MAX_PRIORITY = 1_000_000
MAX_CONDITION_VALUE = 200
MAX_IN_VALUES = 100
HEADER_NAME = r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,100}$"
CONDITION_FIELD = r"^[A-Za-z0-9_][A-Za-z0-9_\-.]{0,99}$"
_HEADER_NAME = re.compile(HEADER_NAME)
_FIELD = re.compile(CONDITION_FIELD)
_DURATION_PART = re.compile(r"(\d+)(ms|d|h|m|s)")
_SIZE = re.compile(r"^(\d+)\s*(b|k|kb|kib|m|mb|mib)?$", re.IGNORECASE)
_WHEN_HINT = "write --when FIELD=VALUE (equals) or --when FIELD~in:A,B (one of)"
MAPPING_HINT = "see docs/templates.md (`leadwire template show generic` prints an example)"


def check_name(kind: str, name: str, *, field: str = "name") -> str:
    name = name.strip()
    if not name:
        raise Invalid(f"a {kind} name cannot be empty", field=field)
    if len(name) > MAX_NAME:
        raise Invalid(f"a {kind} name has at most {MAX_NAME} characters", field=field)
    return name


def check_region(region: str, *, field: str = "default_region") -> str:
    code = region.strip().upper()
    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise Invalid(
            f"unknown region {region!r}",
            field=field,
            hint="use a two-letter ISO 3166-1 country code such as US, GB or DE",
        )
    return code


def parse_duration(
    text: str, *, maximum: timedelta = MAX_GRACE, what: str = "a grace period", field: str = ""
) -> timedelta:
    """``24h``, ``30m``, ``90s``, ``1h30m``, ``2d``, ``500ms`` or plain seconds; ``0`` = none."""
    raw = text.strip().lower().replace(" ", "")
    if raw.isdigit():
        seconds: float = int(raw)
    else:
        parts = _DURATION_PART.findall(raw)
        if not parts or "".join(n + u for n, u in parts) != raw:
            raise Invalid(
                f"cannot read the duration {text!r}",
                field=field,
                hint="write it like 24h, 30m, 90s, 1h30m or 2d (0 for no grace period)",
            )
        unit_seconds = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
        seconds = sum(int(n) * unit_seconds[u] for n, u in parts)
    # Compared before timedelta() sees it: a huge number would overflow it.
    if seconds > maximum.total_seconds():
        raise Invalid(f"{what} is at most {maximum.days} days", field=field)
    return timedelta(seconds=seconds)


def parse_size(text: str, *, label: str = "--max-body") -> int:
    """Bytes from ``65536``, ``64k`` or ``1mb``."""
    match = _SIZE.match(text.strip())
    if not match:
        raise Invalid(f"cannot read the size {text!r}", hint="write it like 65536, 64k or 1mb")
    unit = (match.group(2) or "b").lower()
    size = int(match.group(1)) * (
        1024 if unit.startswith("k") else 1024 * 1024 if unit.startswith("m") else 1
    )
    return check_size(size, label=label)


def check_size(size: int, *, label: str = "max_body_bytes") -> int:
    if not 1 <= size <= MAX_BODY_LIMIT:
        raise Invalid(
            f"{label} must be between 1 byte and {MAX_BODY_LIMIT // (1024 * 1024)}mb",
            field=label.lstrip("-"),
        )
    return size


def check_rate_limit(value: int, *, label: str = "rate_limit_per_minute") -> int:
    if value < 1 or value > MAX_RATE_LIMIT:
        raise Invalid(
            f"{label} is requests per minute, between 1 and {MAX_RATE_LIMIT}",
            field=label.lstrip("-"),
        )
    return value


def check_idempotency_field(path: str, *, label: str = "idempotency_field") -> str:
    try:
        compile_path(path)
    except ValueError as exc:
        raise Invalid(f"bad {label} {path!r}: {exc}", field=label.lstrip("-")) from None
    return path


def check_header(name: str, *, field: str = "api_key_header") -> str:
    if not _HEADER_NAME.match(name):
        raise Invalid(f"{name!r} is not a valid HTTP header name", field=field)
    return name


def check_auth_mode(mode: str, *, field: str = "auth_mode") -> str:
    if mode not in AUTH_MODES:
        raise Invalid(
            f"unknown auth mode {mode!r}", field=field, hint=f"valid: {', '.join(AUTH_MODES)}"
        )
    return mode


def template_named(name: str, *, field: str = "template") -> Template:
    try:
        return get_template(name)
    except KeyError:
        raise Invalid(
            f"no template named {name!r}", field=field, hint=f"valid: {', '.join(TEMPLATES)}"
        ) from None


def _invalid_mapping(what: str, exc: MappingError) -> AdminError:
    return AdminError(
        f"{what} is not a valid mapping:\n  " + "\n  ".join(exc.problems),
        code="invalid_mapping",
        field="mapping",
        hint=MAPPING_HINT,
    )


def read_mapping(path: str) -> Mapping:
    """A mapping file (.json, .yaml, .yml), checked."""
    try:
        mapping = load_mapping_file(Path(path))
        compile_mapping(mapping)
    except MappingError as exc:
        raise _invalid_mapping(Path(path).name, exc) from None
    return mapping


def mapping_from_text(text: str, *, what: str = "stdin") -> Mapping:
    """A mapping document (JSON when it starts like JSON, else YAML), checked."""
    kind = "json" if text.lstrip()[:1] in ("[", "{") else "yaml"
    try:
        mapping = load_mapping_text(text, kind=kind)
        compile_mapping(mapping)
    except MappingError as exc:
        raise _invalid_mapping(what, exc) from None
    return mapping


def mapping_from_doc(doc: Any, *, what: str = "the mapping") -> Mapping:
    """A parsed mapping document (a list of entries or ``{entries, keep_unmapped}``),
    checked."""
    try:
        mapping = parse_mapping(doc)
        compile_mapping(mapping)
    except MappingError as exc:
        raise _invalid_mapping(what, exc) from None
    return mapping


def check_mapping(mapping: Mapping, *, what: str = "the mapping") -> Mapping:
    """A parsed mapping whose paths and transforms compile."""
    try:
        compile_mapping(mapping)
    except MappingError as exc:
        raise _invalid_mapping(what, exc) from None
    return mapping


def issue_secret(mode: str, imported: str | None, *, label: str = "secret") -> tuple[str, str]:
    """(shown once, stored form) of a new secret for ``mode``: ``imported`` when given
    (checked), else a generated one."""
    if imported is None:
        plain, stored, _ = generate_secret(mode)
        return plain, stored
    problem = check_imported_secret(mode, imported)
    if problem:
        raise Invalid(f"{label}: {problem}", field=label.lstrip("-"))
    return imported, stored_form(mode, imported)


def basic_username() -> str:
    """A new username for a basic-auth webhook."""
    return str(generate_secret("basic")[2]["basic_username"])


def check_priority(priority: int, *, label: str = "priority") -> int:
    if not -MAX_PRIORITY <= priority <= MAX_PRIORITY:
        raise Invalid(
            f"{label} is between -{MAX_PRIORITY} and {MAX_PRIORITY}", field=label.lstrip("-")
        )
    return priority


def check_condition(field: str, op: str, value: Any, *, text: str = "") -> dict[str, Any]:
    """A board-rule condition ``{"field", "op": "eq" | "in", "value"}``, checked: a lead
    field or a custom field's name (``custom.`` is dropped), a value of at most 200
    characters (for ``in``: 1 to 100 of them)."""
    about = f" in {text!r}" if text else ""
    field = field.strip().removeprefix(CUSTOM_PREFIX)
    if field == "webhook":
        raise Invalid("match a webhook with --webhook, not --when", field="conditions")
    if not _FIELD.match(field):
        raise Invalid(
            f"bad field name {field!r}{about}",
            field="conditions",
            hint="a field is a lead field (product, lead_status, ...) or a custom field's name",
        )
    if op == "in":
        values = [str(v).strip() for v in value] if isinstance(value, list | tuple) else []
        if not values or any(not v for v in values):
            raise Invalid(f"empty value{about}", field="conditions", hint="write FIELD~in:A,B,C")
        if len(values) > MAX_IN_VALUES:
            raise Invalid(f"at most {MAX_IN_VALUES} values in one condition", field="conditions")
        too_long = any(len(v) > MAX_CONDITION_VALUE for v in values)
        checked: Any = values
    elif op == "eq":
        checked = str(value).strip() if isinstance(value, str | int | float) else ""
        if not checked:
            raise Invalid(f"empty value{about}", field="conditions", hint=_WHEN_HINT)
        too_long = len(checked) > MAX_CONDITION_VALUE
    else:
        raise Invalid(f"unknown operator {op!r}{about}", field="conditions", hint=_WHEN_HINT)
    if too_long:
        raise Invalid(
            f"a condition value has at most {MAX_CONDITION_VALUE} characters", field="conditions"
        )
    return {"field": field, "op": op, "value": checked}


def parse_condition(text: str) -> dict[str, Any]:
    """One ``--when`` (``FIELD=VALUE`` or ``FIELD~in:A,B``) into a checked condition."""
    eq, tilde = text.find("="), text.find("~")
    if eq < 0 and tilde < 0:
        raise Invalid(f"cannot read the condition {text!r}", hint=_WHEN_HINT)
    if tilde >= 0 and (eq < 0 or tilde < eq):
        field, rest = text[:tilde], text[tilde + 1 :]
        op, sep, raw = rest.partition(":")
        op = op.strip().lower()
        if not sep or op not in ("in", "eq"):
            raise Invalid(
                f"unknown operator in {text!r}: after '~' comes in:A,B (or eq:VALUE)",
                hint=_WHEN_HINT,
            )
    else:
        field, raw, op = text[:eq], text[eq + 1 :], "eq"
    value: Any = raw.split(",") if op == "in" and raw.strip() else ([] if op == "in" else raw)
    return check_condition(field, op, value, text=text)
