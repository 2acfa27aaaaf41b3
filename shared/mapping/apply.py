"""Applying a compiled mapping to a body: the lead, its custom fields, and what is wrong.

Entries apply in order and the first entry that yields a value for a target wins, so a
later entry is a fallback. Never raises on bad input (problems become field errors); a
bug does raise: a 500 makes the vendor retry, a 400 would lose the lead.

Control characters (:mod:`shared.mapping.controls`) in a value: refused in an identity
field (phone, email, CRM id), removed from every other field and from custom fields.
"""

from __future__ import annotations

from collections.abc import Mapping as AbcMapping
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shared.events import FieldError, MappedLead
from shared.mapping.controls import IDENTITY_FIELDS, has_control, strip_controls
from shared.mapping.normalize import phone_parts
from shared.mapping.paths import MISSING, OBJECT, CompiledPath, resolve
from shared.mapping.spec import CUSTOM_PREFIX, WITHOUT_SOURCE, CompiledEntry, CompiledMapping
from shared.mapping.transforms import (
    TransformError,
    as_text,
    digits,
    split_name,
    to_boolean,
    to_date,
)
from shared.mapping.unmapped import unmapped
from shared.mapping.validate import validate


def map_and_validate(
    payload: AbcMapping[str, Any] | Any,
    compiled: CompiledMapping,
    *,
    default_region: str,
    controls: bool = True,
) -> tuple[MappedLead, list[FieldError]]:
    """Map a body and validate the lead. An empty error list means the lead is valid.

    Fields with errors are left out of the returned lead. Never raises on bad input.
    ``controls=False`` says the body is known to hold no control character (the gateway
    scans the raw bytes once), which spares looking for them here."""
    return validate_mapped(
        map_fields(payload, compiled, default_region=default_region, controls=controls)
    )


@dataclass(slots=True)
class Mapped:
    """A body mapped onto lead fields, not yet validated (:func:`validate_mapped`)."""

    lead: dict[str, Any]
    custom: dict[str, Any]
    # The region national phone numbers are read in.
    region: str
    errors: list[FieldError]


def map_fields(
    payload: AbcMapping[str, Any] | Any,
    compiled: CompiledMapping,
    *,
    default_region: str,
    controls: bool = True,
) -> Mapped:
    """The first half of :func:`map_and_validate`: the entries applied, the fields no
    entry consumed kept in ``custom`` (the gateway times the halves apart)."""
    errors: list[FieldError] = []
    if not isinstance(payload, OBJECT):
        errors.append(
            FieldError(
                field="body",
                code="invalid_type",
                message="the body must be an object (a JSON object or form fields)",
            )
        )
        payload = {}

    values, consumed, phone_region = _apply_entries(
        payload, compiled, default_region, errors, controls=controls
    )
    custom: dict[str, Any] = {}
    if compiled.keep_unmapped and payload:
        rest = unmapped(payload, consumed)
        custom.update(strip_controls(rest) if controls else rest)
    lead: dict[str, Any] = {}
    for target, value in values.items():
        if target.startswith(CUSTOM_PREFIX):
            custom[target[len(CUSTOM_PREFIX) :]] = value
        else:
            lead[target] = value
    return Mapped(lead, custom, phone_region or default_region, errors)


def validate_mapped(mapped: Mapped) -> tuple[MappedLead, list[FieldError]]:
    """The second half of :func:`map_and_validate`: the checks of the mapped lead."""
    lead, custom, errors = mapped.lead, mapped.custom, mapped.errors
    validate(lead, custom, mapped.region, errors)
    return MappedLead(**lead, custom=custom), errors


def _apply_entries(
    payload: AbcMapping[str, Any],
    compiled: CompiledMapping,
    default_region: str,
    errors: list[FieldError],
    *,
    controls: bool,
) -> tuple[dict[str, Any], list[CompiledPath], str | None]:
    """(value per target, the paths that gave one, the region of the phone's entry)."""
    values: dict[str, Any] = {}
    consumed: list[CompiledPath] = []
    phone_region: str | None = None
    for entry in _candidates(payload, compiled):
        targets = entry.targets
        if targets[0] in values and (len(targets) == 1 or targets[1] in values):
            continue  # first entry with a value wins
        path = entry.path
        if path is None:
            raw = MISSING
        elif path.key is not None and type(payload) is dict:
            raw = payload.get(path.key, MISSING)  # (resolve's answer, without the call)
        else:
            raw = resolve(payload, path)
        if raw is MISSING:
            if entry.transform not in WITHOUT_SOURCE:
                continue  # (what _apply would say: nothing to write)
        elif controls:
            raw = _without_controls(targets[0], raw, errors)
        written = _apply(entry, raw, default_region, errors)
        if not written:
            continue
        wrote = False
        for target, value in written.items():
            if target not in values and value is not None:
                values[target] = value
                wrote = True
                if target == "phone" and entry.transform == "e164" and entry.format:
                    phone_region = entry.format
        if wrote and entry.path is not None:
            consumed.append(entry.path)
    return values, consumed, phone_region


def _candidates(
    payload: AbcMapping[str, Any], compiled: CompiledMapping
) -> Sequence[CompiledEntry]:
    """The entries that may write something, in order: for a plain dict body, those its
    keys name plus the ones that always apply (a template has dozens of aliases, a body a
    few keys); every entry otherwise."""
    if type(payload) is not dict:
        return compiled.entries
    by_key = compiled.by_key
    positions = list(compiled.always)
    for key in payload:
        found = by_key.get(key)
        if found is not None:
            positions.extend(found)
    positions.sort()
    entries = compiled.entries
    return [entries[p] for p in positions]


def _without_controls(target: str, raw: Any, errors: list[FieldError]) -> Any:
    """``raw`` without control characters; MISSING (and a field error) for an identity
    field that holds one: what a contact is matched on is never edited silently."""
    if target not in IDENTITY_FIELDS:
        return strip_controls(raw)
    if isinstance(raw, str) and has_control(raw):
        errors.append(
            FieldError(
                field=target,
                code="control_character",
                message=f"{target} holds a control character",
            )
        )
        return MISSING
    return raw


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _apply(
    entry: CompiledEntry, raw: Any, region: str, errors: list[FieldError]
) -> dict[str, Any] | None:
    """The values an entry writes ({target: value}); None when it yields nothing."""
    transform = entry.transform
    target = entry.targets[0]
    try:
        if transform == "constant":
            return {target: entry.value}
        if transform == "default":
            return {target: entry.value if _is_blank(raw) or raw is MISSING else raw}
        if raw is MISSING or raw is None or (isinstance(raw, str) and not raw.strip()):
            return None  # (_is_blank, inline: this runs for every mapped field)
        if transform == "trim" and type(raw) is str:
            return {target: " ".join(raw.split())}
        if transform == "direct":
            return {target: raw}
        if transform == "lowercase":
            return {target: as_text(raw).lower()}
        if transform == "uppercase":
            return {target: as_text(raw).upper()}
        if transform == "trim":
            return {target: " ".join(as_text(raw).split())}
        if transform == "digits":
            text = digits(raw)
            return {target: text} if text else None
        if transform == "boolean":
            return {target: to_boolean(raw)}
        if transform == "date":
            return {target: to_date(raw, entry.format)}
        if transform == "e164":
            return _e164(target, raw, entry.format or region)
        if transform == "split_name":
            return _split_name(raw)
    except TransformError as exc:
        label = "name" if transform == "split_name" else target
        errors.append(FieldError(field=label, code=exc.code, message=f"{label} {exc.message}"))
        return None
    raise AssertionError(f"unhandled transform {transform}")  # compile_mapping rejects these


def _e164(target: str, raw: Any, region: str) -> dict[str, Any]:
    if target == "phone":
        return {target: raw}  # normalized (with the entry's region) in validation
    try:
        e164, _ = phone_parts(raw, region)
    except ValueError as exc:
        raise TransformError(str(exc), "is not a valid phone number") from None
    return {target: e164}


def _split_name(raw: Any) -> dict[str, Any] | None:
    first, last = split_name(raw)
    out = {}
    if first:
        out["first_name"] = first
    if last:
        out["last_name"] = last
    return out or None
