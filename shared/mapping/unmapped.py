"""The body fields no entry consumed: kept in ``custom`` (never dropped unless asked)."""

from __future__ import annotations

from collections.abc import Mapping as AbcMapping
from typing import Any, cast

from shared.mapping.limits import MAX_CUSTOM_DEPTH
from shared.mapping.paths import (
    MISSING,
    OBJECT,
    CompiledPath,
    Index,
    Key,
    Segment,
    Select,
    first_match,
)

_Paths = list[tuple[Segment, ...]]


def unmapped(payload: AbcMapping[str, Any], consumed: list[CompiledPath]) -> dict[str, Any]:
    """``payload`` without what the ``consumed`` paths read."""
    flat: set[str] = set()
    nested: _Paths = []
    for path in consumed:
        if path.key is not None:  # one key (most paths)
            flat.add(path.key)
        elif path.flat_key is not None and path.flat_key in payload:
            flat.add(path.flat_key)
        else:
            nested.append(path.segments)
    if not nested:
        return {k: v for k, v in payload.items() if k not in flat}
    remaining = {k: v for k, v in payload.items() if k not in flat}
    pruned = _prune(remaining, nested)
    return {} if pruned is MISSING else cast(dict[str, Any], pruned)


def _prune(value: Any, paths: _Paths, depth: int = 0) -> Any:
    """``value`` without the parts the consumed ``paths`` (relative to it) point at."""
    if any(not p for p in paths):
        return MISSING
    if depth > MAX_CUSTOM_DEPTH:
        return value
    if isinstance(value, OBJECT):
        return _prune_object(value, paths, depth)
    if isinstance(value, list):
        return _prune_list(value, paths, depth)
    return value


def _prune_object(value: AbcMapping[str, Any], paths: _Paths, depth: int) -> Any:
    by_key: dict[str, _Paths] = {}
    for p in paths:
        seg = p[0]
        if isinstance(seg, (Key, Index)):
            by_key.setdefault(seg.name, []).append(p[1:])
    out: dict[str, Any] = {}
    for key, item in value.items():
        sub = by_key.get(key)
        if sub is None:
            out[key] = item
            continue
        pruned = _prune(item, sub, depth + 1)
        if pruned is not MISSING:
            out[key] = pruned
    return out if out else MISSING


def _prune_list(value: list[Any], paths: _Paths, depth: int) -> Any:
    result: list[Any] = []
    for i, item in enumerate(value):
        sub: _Paths = []
        selector_keys: set[str] = set()
        for p in paths:
            seg = p[0]
            if isinstance(seg, Index) and seg.index == i:
                sub.append(p[1:])
            elif (
                isinstance(seg, Select)
                and isinstance(item, OBJECT)
                and first_match(value, seg) == i
            ):
                sub.append(p[1:])
                selector_keys.add(seg.key)
        if not sub:
            result.append(item)
            continue
        pruned = _prune(item, sub, depth + 1)
        # An element picked by [name=x] that has only its name left is consumed.
        if pruned is MISSING or (
            isinstance(pruned, dict) and selector_keys and set(pruned) <= selector_keys
        ):
            continue
        result.append(pruned)
    return result if result else MISSING
