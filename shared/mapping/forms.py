"""Form bodies (``application/x-www-form-urlencoded``) as the dict a mapping reads."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from shared.mapping.limits import MAX_FORM_FIELDS


class FormError(ValueError):
    """A form body that cannot be read: ``code`` is ``too_many_fields`` or
    ``invalid_utf8``; the message never echoes the body."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def parse_form(body: bytes) -> dict[str, Any]:
    """An ``application/x-www-form-urlencoded`` body as a dict (a repeated key -> list).

    Raises :class:`FormError` (a ValueError) when it has more than
    :data:`MAX_FORM_FIELDS` fields, or when its bytes, or the bytes a ``%XX`` escape
    stands for, are not UTF-8 (nothing is guessed or replaced)."""
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(
            text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS, errors="strict"
        )
    except UnicodeDecodeError:
        raise FormError("invalid_utf8", "the form body is not valid UTF-8") from None
    except ValueError:
        raise FormError(
            "too_many_fields", f"a form body has at most {MAX_FORM_FIELDS} fields"
        ) from None
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
