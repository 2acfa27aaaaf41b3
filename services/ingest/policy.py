"""The gateway's input policy: what a body or a header may hold, decided once, at the edge.

One policy for JSON bodies, form bodies and headers (docs/ingest.md, "Input policy"):

- bytes that are not UTF-8 in a body (JSON, a form, or what a form's ``%XX`` escapes stand
  for) and lone surrogates (``"\\ud800"`` escapes) are refused: ``400`` ``invalid_utf8`` /
  ``invalid_unicode``;
- control characters (C0 but tab, CR, LF; :mod:`shared.mapping.controls`) in a field
  name are refused: ``400`` ``control_character`` naming the field (the character shown
  as ``\\uXXXX``);
- in a value they are removed, except in an identity field (phone, email, CRM id), where
  the mapping refuses them (``400`` ``control_character``): the lead, its custom fields and
  the payload carried in the event (stored, archived) are without them;
- header bytes that are not UTF-8 are read as Latin-1 (one character per byte), so a
  vendor's ``User-Agent: Caf\\xe9Client`` is delivered, not answered 500 (the HTTP parser
  already refuses control characters in headers with 400).

A rejection's own record must be storable whatever the body held (:func:`storable`).

The common case costs one regular-expression search over the raw body and an ASCII check
of the raw headers; only a body the search flags is walked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from shared.events import FieldError
from shared.mapping import escape_controls
from shared.mapping.controls import CONTROL

# What may hide a control character: in JSON only an escape can (orjson refuses a raw
# one): \u0000-\u001f, \b, \f; in a form a raw byte or a %XX escape. Tab, CR and LF
# escapes (and an escaped backslash before a b or f) match too and are let through by the
# walk, which is exact.
_JSON_SUSPECT = re.compile(rb"\\(?:u00[01]|[bf])")
_FORM_SUSPECT = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]|%[01]")
# Field-name errors reported per request, at most.
MAX_KEY_ERRORS = 10
# What Postgres text and jsonb cannot hold, and what a rejection's record shows instead.
NUL = "\x00"
REPLACEMENT = "\ufffd"


# --- bodies ---------------------------------------------------------------------------


def suspect(body: bytes, *, is_json: bool) -> bool:
    """Whether the raw body may hold a control character (then :func:`inspect` it)."""
    pattern = _JSON_SUSPECT if is_json else _FORM_SUSPECT
    return pattern.search(body) is not None


@dataclass(slots=True)
class Inspected:
    """A parsed body held against the policy."""

    # Field names that hold a control character (the request is refused).
    errors: list[FieldError] = field(default_factory=list)
    # Whether a value held one (the payload below is without them).
    cleaned: bool = False
    payload: Any = None


def inspect(payload: Any) -> Inspected:
    """Field names with control characters, and ``payload`` without them in its values."""
    found = Inspected()
    found.payload = _walk(payload, "", found)
    return found


def _walk(value: Any, path: str, found: Inspected) -> Any:
    # Depth is bounded before this runs (JSON nesting limit; forms are flat).
    if isinstance(value, str):
        if CONTROL.search(value) is None:
            return value
        found.cleaned = True
        return CONTROL.sub("", value)
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            where = f"{path}.{key}" if path else key
            if CONTROL.search(key) is not None and len(found.errors) < MAX_KEY_ERRORS:
                found.errors.append(
                    FieldError(
                        field=escape_controls(where),
                        code="control_character",
                        message="a field name holds a control character",
                    )
                )
            out[key] = _walk(item, where, found)
        return out
    if isinstance(value, list):
        return [_walk(item, f"{path}.{i}", found) for i, item in enumerate(value)]
    return value


def unreadable_json(body: bytes, error: Exception) -> FieldError:
    """Why orjson refused a body: not UTF-8, a lone surrogate, or not JSON (only asked
    after a refusal, so it costs nothing on the way of a good body)."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return FieldError(field="body", code="invalid_utf8", message="the body is not UTF-8")
    if "surrogate" in str(error):
        return FieldError(
            field="body",
            code="invalid_unicode",
            message="the body holds a lone surrogate escape (\\ud800-\\udfff)",
        )
    return FieldError(field="body", code="invalid_json", message="the body is not valid JSON")


def storable(payload: Any) -> Any:
    """``payload`` as a rejection records it: NUL (in names and values, at any depth)
    becomes U+FFFD, which Postgres jsonb and text hold; nothing else changes."""
    if isinstance(payload, str):
        return payload.replace(NUL, REPLACEMENT) if NUL in payload else payload
    if isinstance(payload, dict):
        return {storable(k): storable(v) for k, v in payload.items()}
    if isinstance(payload, list):
        return [storable(v) for v in payload]
    return payload


# --- headers --------------------------------------------------------------------------


def latin1_headers(request: web.Request) -> web.Request:
    """``request``, or a copy whose header values that are not UTF-8 are read as Latin-1.

    aiohttp decodes header bytes as UTF-8 with ``surrogateescape``: a byte that is not
    UTF-8 arrives as a lone surrogate, which nothing downstream can encode (that was a 500).
    Only a request with a non-ASCII header value is looked at closer (the parser refuses
    a name that is not ASCII)."""
    for _, raw in request.raw_headers:
        if not raw.isascii():
            break
    else:
        return request
    headers: CIMultiDict[str] = CIMultiDict()
    changed = False
    for name, value in request.headers.items():
        text = _header_text(value)
        changed = changed or text is not value
        headers.add(name, text)
    return request.clone(headers=headers) if changed else request


def _header_text(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape").decode("latin-1")
    return value
