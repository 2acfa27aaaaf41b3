"""Form bodies (``application/x-www-form-urlencoded``) as the dict a mapping reads."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from shared.mapping.limits import MAX_FORM_FIELDS


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
