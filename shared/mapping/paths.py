"""Source paths: ``a.b.c``, ``items.0.email``, ``field_data[name=email].values.0``.

A path is parsed once (:func:`compile_path`, cached) into segments: a key walks an object,
a number walks a list (or reads the digit key of an object), ``[key=value]`` picks the
first list element whose ``key`` equals ``value``, ``\\.`` is a literal dot. A body key
equal to the whole source string always wins (form fields such as ``lead[email]``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from shared.mapping.limits import MAX_PATH_LENGTH

# What a path resolves to when the body has nothing there (None is a value).
MISSING: Any = object()

# What counts as an object, for ``isinstance``: dict first, because bodies are dicts and
# the ABC check alone is several times slower (it runs many times per lead).
OBJECT = (dict, AbcMapping)


@dataclass(frozen=True, slots=True)
class Key:
    name: str


@dataclass(frozen=True, slots=True)
class Index:
    index: int
    # A digit segment on an object reads the key (``{"0": ...}``).
    name: str


@dataclass(frozen=True, slots=True)
class Select:
    key: str
    value: str


Segment = Key | Index | Select


@dataclass(frozen=True, slots=True)
class CompiledPath:
    source: str
    segments: tuple[Segment, ...]
    # When the body has this key verbatim, it wins over the parsed path.
    flat_key: str | None
    # The one key of a one-segment path (most paths): read with a single dict lookup.
    key: str | None = None

    @property
    def is_simple(self) -> bool:
        return len(self.segments) == 1 and isinstance(self.segments[0], Key)


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


def _parse_part(part: str) -> list[Segment]:
    # ``name[k=v][k2=v2]`` or ``[k=v]`` or ``name`` or ``0``; escaped brackets are literal.
    raw = part
    plain = re.sub(r"\\[.\[\]\\]", "__", raw)  # same length, no live brackets
    bracket = plain.find("[")
    head_raw = raw if bracket < 0 else raw[:bracket]
    rest_raw = "" if bracket < 0 else raw[bracket:]
    rest_plain = "" if bracket < 0 else plain[bracket:]
    segments: list[Segment] = []
    if head_raw:
        head = _unescape(head_raw)
        if head.isdecimal() and head.isascii() and head_raw == head:
            segments.append(Index(int(head), head))
        else:
            segments.append(Key(head))
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
            segments.append(Index(int(key), key) if key.isdecimal() and key.isascii() else Key(key))
        else:
            value = _unescape(rest_raw[match.start(3) : match.end(3)]).strip()
            segments.append(Select(key, value))
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
    segments: list[Segment] = []
    for part in _split_path(source):
        segments.extend(_parse_part(part))
    head = segments[0] if len(segments) == 1 else None
    key = head.name if isinstance(head, Key) else None
    return CompiledPath(source, tuple(segments), None if key is not None else source, key)


def _walk(value: Any, segments: tuple[Segment, ...]) -> Any:
    for seg in segments:
        if isinstance(seg, Key):
            if not isinstance(value, OBJECT):
                return MISSING
            value = value.get(seg.name, MISSING)
        elif isinstance(seg, Index):
            if isinstance(value, list):
                if seg.index >= len(value):
                    return MISSING
                value = value[seg.index]
            elif isinstance(value, OBJECT):
                value = value.get(seg.name, MISSING)
            else:
                return MISSING
        else:
            if not isinstance(value, list):
                return MISSING
            position = first_match(value, seg)
            if position < 0:
                return MISSING
            value = value[position]
        if value is MISSING:
            return MISSING
    return value


def first_match(items: list[Any], seg: Select) -> int:
    """The position of the first element ``seg`` selects, or -1."""
    for i, item in enumerate(items):
        if isinstance(item, OBJECT) and _matches(item.get(seg.key, MISSING), seg.value):
            return i
    return -1


def _matches(found: Any, wanted: str) -> bool:
    if found is MISSING or isinstance(found, (dict, list)):
        return False
    if isinstance(found, bool):
        return str(found).lower() == wanted.lower()
    return str(found) == wanted


def resolve(payload: Any, path: CompiledPath) -> Any:
    """The value at ``path`` in ``payload``, or the sentinel ``MISSING``."""
    if path.key is not None:
        return payload.get(path.key, MISSING) if isinstance(payload, OBJECT) else MISSING
    if path.flat_key is not None and isinstance(payload, OBJECT) and path.flat_key in payload:
        return payload[path.flat_key]
    return _walk(payload, path.segments)


def resolve_path(payload: Any, source: str) -> Any:
    """The value at a source path (same syntax as mappings), or None when absent.

    The gateway uses it for a webhook's ``idempotency_field``."""
    value = resolve(payload, compile_path(source))
    return None if value is MISSING else value
