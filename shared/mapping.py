"""Field mapping: turn a vendor's body into a :class:`~shared.events.MappedLead`.

A mapping is an ordered list of entries ``{source, target, transform, value?, format?}``:

- ``source`` is a path into the body: ``a.b.c`` walks objects, a number walks a list
  (``items.0.email``), ``[key=value]`` picks the first list element whose ``key`` equals
  ``value`` (``field_data[name=email].values.0``, Facebook's shape), ``\\.`` is a literal
  dot. A body key equal to the whole source string always wins (form fields such as
  ``lead[email]`` or ``contact.email`` as one flat key work as written).
- ``target`` is a lead field (:data:`LEAD_FIELDS`) or ``custom.<name>``; ``split_name``
  writes ``first_name`` and ``last_name`` (its target is ``name`` or either of them).
- ``transform`` is one of :data:`TRANSFORMS`.

Entries apply in order and the first entry that yields a value for a target wins, so a
later entry is a fallback (``phone_1`` then ``phone_2``). Body fields no entry consumed
are kept in ``custom`` (never dropped). Then the lead is validated: phone or email is
required, phones become E.164 (the workspace's region reads national numbers), emails are
checked (no DNS) and lowercased, lengths and types are bounded.

Everything here is pure and on the gateway's hot path: :func:`compile_mapping` does the
parsing once (the gateway caches the result per webhook) and :func:`map_and_validate`
only walks precompiled paths. It never raises on bad input: problems become
:class:`~shared.events.FieldError` items whose messages never echo the value (no PII).
A bug, on the other hand, does raise: a 500 makes the vendor retry, a 400 would lose the lead.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Iterable
from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qsl

import orjson
import phonenumbers
import yaml
from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, ConfigDict

from shared.events import FieldError, MappedLead

TRANSFORMS = (
    "direct",
    "lowercase",
    "uppercase",
    "trim",
    "e164",
    "digits",
    "date",
    "boolean",
    "split_name",
    "constant",
    "default",
)
LEAD_FIELDS = ("crm_id", "phone", "email", "first_name", "last_name", "product", "lead_status")
CUSTOM_PREFIX = "custom."

# Bounds. Text lead fields and custom keys stay short; custom values may be longer (notes,
# consent text) but not unbounded; the body itself is bounded by the gateway.
MAX_ENTRIES = 500
MAX_PATH_LENGTH = 500
MAX_FIELD_LENGTH = {
    "crm_id": 200,
    "first_name": 200,
    "last_name": 200,
    "product": 200,
    "lead_status": 100,
    "email": 254,
}
MAX_CUSTOM_FIELDS = 500
MAX_CUSTOM_KEY_LENGTH = 200
MAX_CUSTOM_STRING = 10_000
MAX_CUSTOM_DEPTH = 16
MAX_PHONE_INPUT = 64
MAX_FORM_FIELDS = 1000

_CUSTOM_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-.]{0,99}$")
_MISSING: Any = object()


class MappingError(ValueError):
    """A mapping that cannot be used; ``problems`` names each entry (and line) at fault."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid mapping: " + "; ".join(problems))
        self.problems = problems


class MappingEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str | None = None
    target: str
    transform: str = "direct"
    value: Any = None
    format: str | None = None


class Mapping(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    entries: tuple[MappingEntry, ...] = ()
    # Body fields no entry consumed go to custom fields (False drops them).
    keep_unmapped: bool = True

    def to_stored(self) -> list[dict[str, Any]] | dict[str, Any]:
        """The form kept in ``webhooks.mapping``: the list of entries, or
        ``{"entries": [...], "keep_unmapped": false}`` when unmapped fields are dropped."""
        entries = [e.model_dump(exclude_none=True) for e in self.entries]
        if self.keep_unmapped:
            return entries
        return {"entries": entries, "keep_unmapped": False}


# --- paths ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Key:
    name: str


@dataclass(frozen=True, slots=True)
class _Index:
    index: int
    # A digit segment on an object reads the key (``{"0": ...}``).
    name: str


@dataclass(frozen=True, slots=True)
class _Select:
    key: str
    value: str


_Segment = _Key | _Index | _Select


@dataclass(frozen=True, slots=True)
class CompiledPath:
    source: str
    segments: tuple[_Segment, ...]
    # When the body has this key verbatim, it wins over the parsed path.
    flat_key: str | None

    @property
    def is_simple(self) -> bool:
        return len(self.segments) == 1 and isinstance(self.segments[0], _Key)


def _split_path(source: str) -> list[str]:
    """Split on unescaped dots that are outside ``[...]``."""
    parts: list[str] = []
    buf: list[str] = []
    depth = 0
    i = 0
    while i < len(source):
        ch = source[i]
        if ch == "\\" and i + 1 < len(source) and source[i + 1] in ".[]\\":
            buf.append("\\" + source[i + 1])
            i += 2
            continue
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise ValueError("unbalanced ']'")
        if ch == "." and depth == 0:
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
        i += 1
    if depth != 0:
        raise ValueError("unbalanced '['")
    parts.append("".join(buf))
    return parts


def _unescape(text: str) -> str:
    return re.sub(r"\\([.\[\]\\])", r"\1", text)


_SELECTOR = re.compile(r"\[([^\[\]=]+)(=([^\[\]]*))?\]")


def _parse_part(part: str) -> list[_Segment]:
    # ``name[k=v][k2=v2]`` or ``[k=v]`` or ``name`` or ``0``; escaped brackets are literal.
    raw = part
    plain = re.sub(r"\\[.\[\]\\]", "__", raw)  # same length, no live brackets
    bracket = plain.find("[")
    head_raw = raw if bracket < 0 else raw[:bracket]
    rest_raw = "" if bracket < 0 else raw[bracket:]
    rest_plain = "" if bracket < 0 else plain[bracket:]
    segments: list[_Segment] = []
    if head_raw:
        head = _unescape(head_raw)
        if head.isdecimal() and head.isascii() and head_raw == head:
            segments.append(_Index(int(head), head))
        else:
            segments.append(_Key(head))
    elif not rest_raw:
        raise ValueError("empty path segment (two dots in a row, or a leading/trailing dot)")
    pos = 0
    while pos < len(rest_plain):
        match = _SELECTOR.match(rest_plain, pos)
        if not match:
            raise ValueError(
                "a bracket holds a key, an index or a selector: [email], [0], [name=email] "
                "(escape a literal bracket as \\[)"
            )
        key = _unescape(rest_raw[match.start(1) : match.end(1)]).strip()
        if not key:
            raise ValueError("empty brackets: write [key], [0] or [name=email]")
        if match.group(2) is None:
            # [key] / [0]: the same as .key / .0 (a flat form key such as lead[email]
            # still wins when the body has it verbatim).
            segments.append(
                _Index(int(key), key) if key.isdecimal() and key.isascii() else _Key(key)
            )
        else:
            value = _unescape(rest_raw[match.start(3) : match.end(3)]).strip()
            segments.append(_Select(key, value))
        pos = match.end()
    return segments


@lru_cache(maxsize=4096)
def compile_path(source: str) -> CompiledPath:
    """Parse a source path once; raises ValueError saying what is wrong with it."""
    if not isinstance(source, str):
        raise ValueError("a path must be a string")
    if not source.strip():
        raise ValueError("the path is empty")
    if len(source) > MAX_PATH_LENGTH:
        raise ValueError(f"the path is longer than {MAX_PATH_LENGTH} characters")
    segments: list[_Segment] = []
    for part in _split_path(source):
        segments.extend(_parse_part(part))
    flat = None if len(segments) == 1 and isinstance(segments[0], _Key) else source
    return CompiledPath(source, tuple(segments), flat)


def _walk(value: Any, segments: tuple[_Segment, ...]) -> Any:
    for seg in segments:
        if isinstance(seg, _Key):
            if not isinstance(value, AbcMapping):
                return _MISSING
            value = value.get(seg.name, _MISSING)
        elif isinstance(seg, _Index):
            if isinstance(value, list):
                if seg.index >= len(value):
                    return _MISSING
                value = value[seg.index]
            elif isinstance(value, AbcMapping):
                value = value.get(seg.name, _MISSING)
            else:
                return _MISSING
        else:
            if not isinstance(value, list):
                return _MISSING
            for item in value:
                if isinstance(item, AbcMapping) and _matches(
                    item.get(seg.key, _MISSING), seg.value
                ):
                    value = item
                    break
            else:
                return _MISSING
        if value is _MISSING:
            return _MISSING
    return value


def _matches(found: Any, wanted: str) -> bool:
    if found is _MISSING or isinstance(found, (dict, list)):
        return False
    if isinstance(found, bool):
        return str(found).lower() == wanted.lower()
    return str(found) == wanted


def resolve(payload: Any, path: CompiledPath) -> Any:
    """The value at ``path`` in ``payload``, or the sentinel ``MISSING``."""
    if path.flat_key is not None and isinstance(payload, AbcMapping) and path.flat_key in payload:
        return payload[path.flat_key]
    return _walk(payload, path.segments)


MISSING = _MISSING


def resolve_path(payload: Any, source: str) -> Any:
    """The value at a source path (same syntax as mappings), or None when absent.

    The gateway uses it for a webhook's ``idempotency_field``."""
    value = resolve(payload, compile_path(source))
    return None if value is _MISSING else value


# --- phones and emails --------------------------------------------------------------

_REGIONS = frozenset(phonenumbers.SUPPORTED_REGIONS)


def _normalize_phone(raw: Any, region: str) -> tuple[str, str | None]:
    """(E.164, extension or None); raises ValueError(code)."""
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        raise ValueError("invalid_type")
    text = str(raw).strip()
    if not text:
        raise ValueError("required")
    if len(text) > MAX_PHONE_INPUT:
        raise ValueError("too_long")
    region_code = region.upper() if isinstance(region, str) and region.upper() in _REGIONS else None
    result = _parse_phone(text, region_code)
    if isinstance(result, str):
        raise ValueError(result)
    return result


# Parsing and validating is most of a lead's mapping time; vendors retry and resend the
# same numbers, so recent answers (valid or not) are remembered. Pure, so safe to share.
@lru_cache(maxsize=16384)
def _parse_phone(text: str, region_code: str | None) -> tuple[str, str | None] | str:
    """(E.164, extension) or an error code."""
    if text.startswith("00") and region_code is None:
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, region_code)
    except phonenumbers.NumberParseException:
        return "invalid_phone"
    if not phonenumbers.is_valid_number(number):
        return "invalid_phone"
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return e164, (number.extension or None)


def normalize_phone(raw: str, region: str) -> str:
    """A phone number as E.164, reading national numbers in ``region``.

    Raises ``ValueError(code)`` with code ``invalid_phone``, ``invalid_type``,
    ``too_long`` or ``required``. An extension is dropped here (see map_and_validate)."""
    return _normalize_phone(raw, region)[0]


def normalize_email(raw: Any) -> str:
    """A well-formed address, lowercased (no DNS). Raises ``ValueError(code)``."""
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
    try:
        result = validate_email(text, check_deliverability=False)
    except EmailNotValidError:
        return None
    except Exception:  # the library's own edge cases (odd unicode): still just invalid
        return None
    return str(result.normalized).lower()


# --- transforms ---------------------------------------------------------------------


class _TransformError(Exception):
    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    raise _TransformError("invalid_type", "must be text or a number, not an object or a list")


_TRUE = frozenset({"true", "t", "yes", "y", "1", "on", "checked"})
_FALSE = frozenset({"false", "f", "no", "n", "0", "off", "unchecked", ""})


def _to_boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise _TransformError("invalid_boolean", "is not a yes/no value (true/false, yes/no, 1/0)")


_DATE_FORMATS = (
    "%m/%d/%Y",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %I:%M %p",
    "%m/%d/%Y %I:%M:%S %p",
    "%m-%d-%Y",
    "%Y/%m/%d",
    "%Y/%m/%d %H:%M:%S",
    "%Y-%m-%d %H:%M:%S %z",
    "%d %b %Y",
    "%b %d, %Y",
    "%B %d, %Y",
)


def _date_out(moment: datetime | date) -> str:
    if isinstance(moment, datetime):
        if moment.tzinfo is not None:
            moment = moment.astimezone(UTC)
        return moment.isoformat()
    return moment.isoformat()


def _to_date(value: Any, fmt: str | None) -> str:
    if isinstance(value, bool):
        raise _TransformError("invalid_date", "is not a date")
    if isinstance(value, (int, float)):
        if fmt is not None or not math.isfinite(value):
            raise _TransformError("invalid_date", "is not a date")
        seconds = value / 1000 if abs(value) >= 1e11 else value  # epoch ms vs seconds
        try:
            return _date_out(datetime.fromtimestamp(seconds, UTC))
        except (OverflowError, OSError, ValueError):
            raise _TransformError("invalid_date", "is out of the range of dates") from None
    if not isinstance(value, str):
        raise _TransformError("invalid_date", "is not a date")
    text = value.strip()
    if not text or len(text) > 64:
        raise _TransformError("invalid_date", "is not a date")
    if fmt is not None:
        try:
            parsed = datetime.strptime(text, fmt)
        except ValueError:
            raise _TransformError(
                "invalid_date", f"does not match the date format {fmt!r}"
            ) from None
        has_time = any(d in fmt for d in ("%H", "%I", "%M", "%S", "%p", "%z", "%f"))
        return _date_out(parsed if has_time else parsed.date())
    if text.isascii() and text.isdigit() and len(text) >= 9:
        return _to_date(int(text), None)
    try:
        if len(text) == 10 and text[4] == "-":
            return _date_out(date.fromisoformat(text))
        return _date_out(datetime.fromisoformat(text))
    except ValueError:
        pass
    for candidate in _DATE_FORMATS:
        try:
            parsed = datetime.strptime(text, candidate)
        except ValueError:
            continue
        has_time = "%H" in candidate or "%I" in candidate or "%z" in candidate
        return _date_out(parsed if has_time else parsed.date())
    raise _TransformError(
        "invalid_date",
        "is not a date this mapping understands (ISO 8601, MM/DD/YYYY, epoch); "
        "set the entry's format",
    )


def _split_name(value: Any) -> tuple[str | None, str | None]:
    text = " ".join(_as_text(value).split())
    if not text:
        return None, None
    if "," in text:  # "Last, First"
        last, _, first = text.partition(",")
        return (first.strip() or None), (last.strip() or None)
    first, _, last = text.partition(" ")
    return first, (last or None)


def _digits(value: Any) -> str:
    return "".join(ch for ch in _as_text(value) if ch in string.digits)


# --- compiled mappings --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _CompiledEntry:
    index: int
    path: CompiledPath | None
    transform: str
    # Lead field name, or "custom.<name>"; for split_name: the two name fields.
    targets: tuple[str, ...]
    value: Any
    format: str | None


@dataclass(frozen=True, slots=True)
class CompiledMapping:
    """A mapping ready for :func:`map_and_validate` (immutable; cache it per webhook)."""

    mapping: Mapping
    entries: tuple[_CompiledEntry, ...]
    keep_unmapped: bool


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _check_entry(entry: MappingEntry) -> list[str]:
    problems: list[str] = []
    if entry.transform not in TRANSFORMS:
        problems.append(f"unknown transform {entry.transform!r} (valid: {', '.join(TRANSFORMS)})")
    target = entry.target
    if entry.transform == "split_name":
        if target not in ("name", "first_name", "last_name"):
            problems.append(
                "split_name writes first_name and last_name: its target must be "
                "'name', 'first_name' or 'last_name'"
            )
    elif target.startswith(CUSTOM_PREFIX):
        if not _CUSTOM_NAME.match(target[len(CUSTOM_PREFIX) :]):
            problems.append(
                f"bad custom target {target!r}: use custom.<name> with letters, digits, "
                "'_', '-' or '.' (at most 100 characters)"
            )
    elif target not in LEAD_FIELDS:
        problems.append(
            f"unknown target {target!r} (valid: {', '.join(LEAD_FIELDS)} or custom.<name>)"
        )
    if entry.transform == "constant":
        if entry.source is not None:
            problems.append("a constant entry takes no source")
    elif entry.source is None:
        problems.append(f"the {entry.transform} transform needs a source path")
    if entry.source is not None:
        try:
            compile_path(entry.source)
        except ValueError as exc:
            problems.append(f"bad source path {entry.source!r}: {exc}")
    if entry.transform in ("constant", "default"):
        if entry.value is None:
            problems.append(f"the {entry.transform} transform needs a value")
        elif not isinstance(entry.value, (str, int, float, bool)):
            problems.append("value must be text, a number or true/false")
    elif entry.value is not None:
        problems.append(f"value is only used by constant and default, not {entry.transform}")
    if entry.format is not None:
        if entry.transform == "date":
            if "%" not in entry.format:
                problems.append("a date format is a strptime pattern such as '%m/%d/%Y'")
        elif entry.transform == "e164":
            if entry.format.upper() not in _REGIONS:
                problems.append(
                    f"an e164 format is a region code such as 'US' or 'GB', not {entry.format!r}"
                )
        else:
            problems.append(f"format is only used by date and e164, not {entry.transform}")
    return problems


def _entry_problems(data: Any, where: str) -> tuple[MappingEntry | None, list[str]]:
    if not isinstance(data, AbcMapping):
        return None, [f"{where}: must be an object with source, target and transform"]
    unknown = sorted(set(map(str, data)) - {"source", "target", "transform", "value", "format"})
    problems: list[str] = []
    if unknown:
        problems.append(
            f"unknown key(s) {', '.join(map(repr, unknown))} (valid: source, target, "
            "transform, value, format)"
        )
    target = data.get("target")
    if not isinstance(target, str) or not target:
        problems.append("target is required (a lead field or custom.<name>)")
    for key in ("source", "transform", "format"):
        if data.get(key) is not None and not isinstance(data.get(key), str):
            problems.append(f"{key} must be text")
    if problems:
        return None, [f"{where}: {p}" for p in problems]
    entry = MappingEntry(
        source=data.get("source"),
        target=cast(str, target),
        transform=data.get("transform") or "direct",
        value=data.get("value"),
        format=data.get("format"),
    )
    return entry, [f"{where}: {p}" for p in _check_entry(entry)]


def _parse_mapping(data: Any, lines: list[int] | None = None) -> Mapping:
    keep_unmapped = True
    if isinstance(data, AbcMapping):
        unknown = sorted(set(map(str, data)) - {"entries", "keep_unmapped"})
        if unknown:
            raise MappingError(
                [
                    f"unknown top-level key(s) {', '.join(map(repr, unknown))} "
                    "(a mapping is a list of entries, or {entries: [...], keep_unmapped: bool})"
                ]
            )
        keep = data.get("keep_unmapped", True)
        if not isinstance(keep, bool):
            raise MappingError(["keep_unmapped must be true or false"])
        keep_unmapped = keep
        data = data.get("entries", [])
    if data is None:
        data = []
    if not isinstance(data, list):
        raise MappingError(["a mapping must be a list of entries"])
    if len(data) > MAX_ENTRIES:
        raise MappingError([f"a mapping has at most {MAX_ENTRIES} entries, not {len(data)}"])
    entries: list[MappingEntry] = []
    problems: list[str] = []
    for i, item in enumerate(data):
        where = f"entry {i + 1}"
        if lines is not None and i < len(lines):
            where += f" (line {lines[i]})"
        entry, entry_problems = _entry_problems(item, where)
        problems.extend(entry_problems)
        if entry is not None:
            entries.append(entry)
    if problems:
        raise MappingError(problems)
    return Mapping(entries=tuple(entries), keep_unmapped=keep_unmapped)


def parse_mapping(data: Any) -> Mapping:
    """A mapping from parsed JSON/YAML: a list of entries or ``{entries, keep_unmapped}``.

    Entry numbers in errors start at 1. Raises :class:`MappingError`."""
    return _parse_mapping(data)


def _entry_lines(text: str) -> list[int] | None:
    """1-based line of each entry, from a YAML (or JSON) document's node marks."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == "entries":
                node = value
                break
    if not isinstance(node, yaml.SequenceNode):
        return None
    return [item.start_mark.line + 1 for item in node.value]


def load_mapping_text(text: str, *, kind: str) -> Mapping:
    """Parse a mapping document; ``kind`` is ``json`` or ``yaml``."""
    try:
        if kind == "json":
            data = orjson.loads(text)
        else:
            data = yaml.safe_load(text)
    except orjson.JSONDecodeError as exc:
        raise MappingError([f"not valid JSON: {exc}"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise MappingError([f"not valid YAML{where}: {problem}"]) from None
    return _parse_mapping(data, _entry_lines(text))


def load_mapping_file(path: str | Path) -> Mapping:
    """Read and validate a ``.json``, ``.yaml`` or ``.yml`` mapping file."""
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml"):
        raise MappingError([f"{file.name}: a mapping file ends in .json, .yaml or .yml"])
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MappingError([f"cannot read {file}: {exc}"]) from None
    return load_mapping_text(text, kind="json" if suffix == ".json" else "yaml")


def compile_mapping(mapping: Mapping) -> CompiledMapping:
    """Precompile paths and checks (raises :class:`MappingError` for a bad mapping)."""
    compiled: list[_CompiledEntry] = []
    problems: list[str] = []
    for i, entry in enumerate(mapping.entries):
        entry_problems = _check_entry(entry)
        if entry_problems:
            problems.extend(f"entry {i + 1}: {p}" for p in entry_problems)
            continue
        if entry.transform == "split_name":
            targets: tuple[str, ...] = ("first_name", "last_name")
        else:
            targets = (entry.target,)
        compiled.append(
            _CompiledEntry(
                index=i,
                path=compile_path(entry.source) if entry.source is not None else None,
                transform=entry.transform,
                targets=targets,
                value=entry.value,
                format=entry.format.upper()
                if entry.transform == "e164" and entry.format
                else entry.format,
            )
        )
    if problems:
        raise MappingError(problems)
    return CompiledMapping(mapping, tuple(compiled), mapping.keep_unmapped)


def compile_stored(stored: Any) -> CompiledMapping:
    """Compile a mapping as stored in ``webhooks.mapping`` (list or object)."""
    return compile_mapping(parse_mapping(stored))


# --- mapping ------------------------------------------------------------------------


def _field_label(target: str) -> str:
    return target


def _apply(
    entry: _CompiledEntry, raw: Any, region: str, errors: list[FieldError]
) -> dict[str, Any] | None:
    """The values an entry writes ({target: value}); None when it yields nothing."""
    transform = entry.transform
    target = entry.targets[0]
    try:
        if transform == "constant":
            return {target: entry.value}
        if transform == "default":
            return {target: entry.value if _is_blank(raw) or raw is _MISSING else raw}
        if raw is _MISSING or _is_blank(raw):
            return None
        if transform == "direct":
            return {target: raw}
        if transform == "lowercase":
            return {target: _as_text(raw).lower()}
        if transform == "uppercase":
            return {target: _as_text(raw).upper()}
        if transform == "trim":
            return {target: " ".join(_as_text(raw).split())}
        if transform == "digits":
            digits = _digits(raw)
            return {target: digits} if digits else None
        if transform == "boolean":
            return {target: _to_boolean(raw)}
        if transform == "date":
            return {target: _to_date(raw, entry.format)}
        if transform == "e164":
            if target == "phone":
                return {target: raw}  # normalized (with the entry's region) in validation
            try:
                e164, _ = _normalize_phone(raw, entry.format or region)
            except ValueError as exc:
                raise _TransformError(str(exc), "is not a valid phone number") from None
            return {target: e164}
        if transform == "split_name":
            first, last = _split_name(raw)
            out = {}
            if first:
                out["first_name"] = first
            if last:
                out["last_name"] = last
            return out or None
    except _TransformError as exc:
        label = "name" if transform == "split_name" else _field_label(target)
        errors.append(FieldError(field=label, code=exc.code, message=f"{label} {exc.message}"))
        return None
    raise AssertionError(f"unhandled transform {transform}")  # compile_mapping rejects these


def _prune(value: Any, paths: list[tuple[_Segment, ...]], depth: int = 0) -> Any:
    """``value`` without the parts the consumed ``paths`` (relative to it) point at."""
    if any(not p for p in paths):
        return _MISSING
    if depth > MAX_CUSTOM_DEPTH:
        return value
    if isinstance(value, AbcMapping):
        by_key: dict[str, list[tuple[_Segment, ...]]] = {}
        for p in paths:
            seg = p[0]
            if isinstance(seg, _Key):
                by_key.setdefault(seg.name, []).append(p[1:])
            elif isinstance(seg, _Index):
                by_key.setdefault(seg.name, []).append(p[1:])
        out: dict[str, Any] = {}
        for key, item in value.items():
            sub = by_key.get(key)
            if sub is None:
                out[key] = item
                continue
            pruned = _prune(item, sub, depth + 1)
            if pruned is not _MISSING:
                out[key] = pruned
        return out if out else _MISSING
    if isinstance(value, list):
        result: list[Any] = []
        for i, item in enumerate(value):
            sub = []
            selector_keys: set[str] = set()
            for p in paths:
                seg = p[0]
                if isinstance(seg, _Index) and seg.index == i:
                    sub.append(p[1:])
                elif (
                    isinstance(seg, _Select)
                    and isinstance(item, AbcMapping)
                    and _first_match(value, seg) == i
                ):
                    sub.append(p[1:])
                    selector_keys.add(seg.key)
            if not sub:
                result.append(item)
                continue
            pruned = _prune(item, sub, depth + 1)
            # An element picked by [name=x] that has only its name left is consumed.
            if pruned is _MISSING or (
                isinstance(pruned, dict) and selector_keys and set(pruned) <= selector_keys
            ):
                continue
            result.append(pruned)
        return result if result else _MISSING
    return value


def _first_match(items: list[Any], seg: _Select) -> int:
    for i, item in enumerate(items):
        if isinstance(item, AbcMapping) and _matches(item.get(seg.key, _MISSING), seg.value):
            return i
    return -1


def _unmapped(payload: AbcMapping[str, Any], consumed: list[CompiledPath]) -> dict[str, Any]:
    flat: set[str] = set()
    nested: list[tuple[_Segment, ...]] = []
    for path in consumed:
        if path.flat_key is not None and path.flat_key in payload:
            flat.add(path.flat_key)
        elif path.is_simple:
            flat.add(cast(_Key, path.segments[0]).name)
        else:
            nested.append(path.segments)
    if not nested:
        return {k: v for k, v in payload.items() if k not in flat}
    remaining = {k: v for k, v in payload.items() if k not in flat}
    pruned = _prune(remaining, nested)
    return {} if pruned is _MISSING else cast(dict[str, Any], pruned)


def _check_custom_value(value: Any, depth: int = 0) -> str | None:
    """None when the value is within bounds, else an error code."""
    if isinstance(value, str):
        return "too_long" if len(value) > MAX_CUSTOM_STRING else None
    if value is None or isinstance(value, (bool, int)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else "invalid_type"
    if depth >= MAX_CUSTOM_DEPTH:
        return "too_deep"
    if isinstance(value, AbcMapping):
        for key, item in value.items():
            if not isinstance(key, str):
                return "invalid_type"
            if len(key) > MAX_CUSTOM_KEY_LENGTH:
                return "too_long"
            code = _check_custom_value(item, depth + 1)
            if code:
                return code
        return None
    if isinstance(value, (list, tuple)):
        for item in value:
            code = _check_custom_value(item, depth + 1)
            if code:
                return code
        return None
    return "invalid_type"


_CUSTOM_MESSAGES = {
    "too_long": f"is too long (text at most {MAX_CUSTOM_STRING} characters, keys at most "
    f"{MAX_CUSTOM_KEY_LENGTH})",
    "too_deep": f"is nested more than {MAX_CUSTOM_DEPTH} levels deep",
    "invalid_type": "has a value that is not text, a number, true/false, a list or an object",
}


def _safe_key(key: Any) -> str:
    text = str(key)
    return text if len(text) <= 60 else text[:57] + "..."


def map_and_validate(
    payload: AbcMapping[str, Any] | Any, compiled: CompiledMapping, *, default_region: str
) -> tuple[MappedLead, list[FieldError]]:
    """Map a body and validate the lead. An empty error list means the lead is valid.

    Fields with errors are left out of the returned lead. Never raises on bad input."""
    errors: list[FieldError] = []
    if not isinstance(payload, AbcMapping):
        errors.append(
            FieldError(
                field="body",
                code="invalid_type",
                message="the body must be an object (a JSON object or form fields)",
            )
        )
        payload = {}

    values: dict[str, Any] = {}
    consumed: list[CompiledPath] = []
    phone_region: str | None = None
    for entry in compiled.entries:
        if entry.targets[0] in values and (len(entry.targets) == 1 or entry.targets[1] in values):
            continue  # first entry with a value wins
        raw = resolve(payload, entry.path) if entry.path is not None else _MISSING
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

    custom: dict[str, Any] = {}
    if compiled.keep_unmapped and payload:
        custom.update(_unmapped(payload, consumed))
    lead: dict[str, Any] = {}
    for target, value in values.items():
        if target.startswith(CUSTOM_PREFIX):
            custom[target[len(CUSTOM_PREFIX) :]] = value
        else:
            lead[target] = value

    _validate(lead, custom, phone_region or default_region, errors)
    return MappedLead(**lead, custom=custom), errors


def _validate(
    lead: dict[str, Any], custom: dict[str, Any], region: str, errors: list[FieldError]
) -> None:
    had_contact = False
    for name in ("crm_id", "first_name", "last_name", "product", "lead_status"):
        if name not in lead:
            continue
        value = lead[name]
        try:
            text = (
                " ".join(_as_text(value).split()) if name != "crm_id" else _as_text(value).strip()
            )
        except _TransformError:
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

    if "phone" in lead:
        had_contact = True
        value = lead.pop("phone")
        try:
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            e164, extension = _normalize_phone(value, region)
        except ValueError as exc:
            phone_code = str(exc)
            messages = {
                "invalid_type": "phone must be text or a number",
                "too_long": f"phone is longer than {MAX_PHONE_INPUT} characters",
                "required": "phone is empty",
            }
            errors.append(
                FieldError(
                    field="phone",
                    code="invalid_type"
                    if phone_code == "invalid_type"
                    else ("too_long" if phone_code == "too_long" else "invalid_phone"),
                    message=messages.get(
                        phone_code,
                        f"phone is not a valid phone number for region "
                        f"{region} (give it with + and the country code)",
                    ),
                )
            )
        else:
            lead["phone"] = e164
            if extension:
                custom["phone_extension"] = extension

    if "email" in lead:
        had_contact = True
        value = lead.pop("email")
        try:
            lead["email"] = normalize_email(value)
        except ValueError as exc:
            email_code = str(exc)
            if email_code == "invalid_type":
                errors.append(
                    FieldError(field="email", code="invalid_type", message="email must be text")
                )
            elif email_code == "too_long":
                errors.append(
                    FieldError(
                        field="email",
                        code="too_long",
                        message="email is longer than 254 characters",
                    )
                )
            else:
                errors.append(
                    FieldError(
                        field="email",
                        code="invalid_email",
                        message="email is not a well-formed address",
                    )
                )

    if not had_contact:
        errors.append(
            FieldError(
                field="phone",
                code="required",
                message="a phone number or an email address is required",
            )
        )

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
            code = _check_custom_value(value)
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


# --- form bodies --------------------------------------------------------------------


def parse_form(body: bytes) -> dict[str, Any]:
    """An ``application/x-www-form-urlencoded`` body as a dict (a repeated key -> list).

    Raises ValueError when it has more than :data:`MAX_FORM_FIELDS` fields."""
    text = body.decode("utf-8", errors="replace")
    try:
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except ValueError:
        raise ValueError(f"a form body has at most {MAX_FORM_FIELDS} fields") from None
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            current = out[key]
            if isinstance(current, list):
                current.append(value)
            else:
                out[key] = [current, value]
        else:
            out[key] = value
    return out


def describe_transforms() -> Iterable[tuple[str, str]]:
    """(name, one-line description) of each transform, for help texts."""
    return _TRANSFORM_HELP.items()


_TRANSFORM_HELP: dict[str, str] = {
    "direct": "the value as sent",
    "lowercase": "text in lower case",
    "uppercase": "text in upper case",
    "trim": "surrounding whitespace removed, inner runs collapsed",
    "e164": "a phone number as E.164 (format: region, default the workspace's)",
    "digits": "only the digits",
    "date": "ISO 8601 (format: strptime pattern; default ISO, MM/DD/YYYY, epoch)",
    "boolean": "true/false from yes/no, 1/0, on/off, true/false",
    "split_name": "a full name into first_name and last_name",
    "constant": "always value (no source)",
    "default": "the source's value, or value when it is missing or empty",
}
