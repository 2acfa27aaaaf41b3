"""The mapping format: entries, how a mapping is read (JSON, YAML, stored) and compiled.

A mapping is an ordered list of entries ``{source, target, transform, value?, format?}``,
or ``{entries: [...], keep_unmapped: bool}``. Reading one names every problem with its
entry (and line, for a file); compiling one checks it and parses its paths once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import orjson
import yaml
from pydantic import BaseModel, ConfigDict

from shared.mapping.consent import CONSENT_FIELDS
from shared.mapping.limits import MAX_ENTRIES
from shared.mapping.normalize import REGIONS
from shared.mapping.paths import CompiledPath, compile_path
from shared.mapping.transforms import TRANSFORMS

LEAD_FIELDS = ("crm_id", "phone", "email", "first_name", "last_name", "product", "lead_status")
# What an entry may write: the lead's fields and its consent evidence (mapping.consent).
TARGETS = LEAD_FIELDS + CONSENT_FIELDS
CUSTOM_PREFIX = "custom."

_CUSTOM_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-.]{0,99}$")
_ENTRY_KEYS = {"source", "target", "transform", "value", "format"}


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


@dataclass(frozen=True, slots=True)
class CompiledEntry:
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
    entries: tuple[CompiledEntry, ...]
    keep_unmapped: bool
    # For a body that is a plain dict, which entries can write anything: those a key of
    # the body names (key -> their positions in ``entries``), plus ``always`` (no path, a
    # nested path, or a transform that writes without a source). The others find nothing.
    by_key: dict[str, tuple[int, ...]] = field(default_factory=dict, compare=False)
    always: tuple[int, ...] = ()


# --- checks of one entry ----------------------------------------------------------


def _target_problems(entry: MappingEntry) -> list[str]:
    target = entry.target
    if entry.transform == "split_name":
        if target not in ("name", "first_name", "last_name"):
            return [
                "split_name writes first_name and last_name: its target must be "
                "'name', 'first_name' or 'last_name'"
            ]
    elif target.startswith(CUSTOM_PREFIX):
        if not _CUSTOM_NAME.match(target[len(CUSTOM_PREFIX) :]):
            return [
                f"bad custom target {target!r}: use custom.<name> with letters, digits, "
                "'_', '-' or '.' (at most 100 characters)"
            ]
    elif target not in TARGETS:
        return [f"unknown target {target!r} (valid: {', '.join(TARGETS)} or custom.<name>)"]
    return []


def _source_problems(entry: MappingEntry) -> list[str]:
    problems: list[str] = []
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
    return problems


def _value_problems(entry: MappingEntry) -> list[str]:
    if entry.transform in ("constant", "default"):
        if entry.value is None:
            return [f"the {entry.transform} transform needs a value"]
        if not isinstance(entry.value, (str, int, float, bool)):
            return ["value must be text, a number or true/false"]
    elif entry.value is not None:
        return [f"value is only used by constant and default, not {entry.transform}"]
    return []


def _format_problems(entry: MappingEntry) -> list[str]:
    if entry.format is None:
        return []
    if entry.transform == "date":
        if "%" not in entry.format:
            return ["a date format is a strptime pattern such as '%m/%d/%Y'"]
    elif entry.transform == "e164":
        if entry.format.upper() not in REGIONS:
            return [f"an e164 format is a region code such as 'US' or 'GB', not {entry.format!r}"]
    else:
        return [f"format is only used by date and e164, not {entry.transform}"]
    return []


def _check_entry(entry: MappingEntry) -> list[str]:
    problems: list[str] = []
    if entry.transform not in TRANSFORMS:
        problems.append(f"unknown transform {entry.transform!r} (valid: {', '.join(TRANSFORMS)})")
    problems += _target_problems(entry)
    problems += _source_problems(entry)
    problems += _value_problems(entry)
    problems += _format_problems(entry)
    return problems


# --- reading ----------------------------------------------------------------------


def _entry_problems(data: Any, where: str) -> tuple[MappingEntry | None, list[str]]:
    if not isinstance(data, AbcMapping):
        return None, [f"{where}: must be an object with source, target and transform"]
    unknown = sorted(set(map(str, data)) - _ENTRY_KEYS)
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


def _unwrap(data: Any) -> tuple[Any, bool]:
    """(the list of entries, keep_unmapped) of a list or ``{entries, keep_unmapped}``."""
    if not isinstance(data, AbcMapping):
        return data, True
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
    return data.get("entries", []), keep


def _parse_mapping(data: Any, lines: list[int] | None = None) -> Mapping:
    data, keep_unmapped = _unwrap(data)
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


# --- compiling --------------------------------------------------------------------


def _compile_entry(index: int, entry: MappingEntry) -> CompiledEntry:
    if entry.transform == "split_name":
        targets: tuple[str, ...] = ("first_name", "last_name")
    else:
        targets = (entry.target,)
    return CompiledEntry(
        index=index,
        path=compile_path(entry.source) if entry.source is not None else None,
        transform=entry.transform,
        targets=targets,
        value=entry.value,
        format=entry.format.upper() if entry.transform == "e164" and entry.format else entry.format,
    )


# The transforms that write a value when the source is missing.
WITHOUT_SOURCE = frozenset({"constant", "default"})


def compile_mapping(mapping: Mapping) -> CompiledMapping:
    """Precompile paths and checks (raises :class:`MappingError` for a bad mapping)."""
    compiled: list[CompiledEntry] = []
    problems: list[str] = []
    for i, entry in enumerate(mapping.entries):
        entry_problems = _check_entry(entry)
        if entry_problems:
            problems.extend(f"entry {i + 1}: {p}" for p in entry_problems)
            continue
        compiled.append(_compile_entry(i, entry))
    if problems:
        raise MappingError(problems)
    by_key: dict[str, list[int]] = {}
    always: list[int] = []
    for position, c in enumerate(compiled):
        if c.path is None or c.path.key is None or c.transform in WITHOUT_SOURCE:
            always.append(position)
        else:
            by_key.setdefault(c.path.key, []).append(position)
    return CompiledMapping(
        mapping,
        tuple(compiled),
        mapping.keep_unmapped,
        by_key={k: tuple(v) for k, v in by_key.items()},
        always=tuple(always),
    )


def compile_stored(stored: Any) -> CompiledMapping:
    """Compile a mapping as stored in ``webhooks.mapping`` (list or object)."""
    return compile_mapping(parse_mapping(stored))
