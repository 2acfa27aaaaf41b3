"""Transforms: what an entry does to the value at its source (one value in, one out).

Each raises :class:`TransformError` (a code and a message that never echoes the value)
when the value cannot be transformed; the caller turns it into a field error.
"""

from __future__ import annotations

import math
import string
from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any

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


def describe_transforms() -> Iterable[tuple[str, str]]:
    """(name, one-line description) of each transform, for help texts."""
    return _TRANSFORM_HELP.items()


class TransformError(Exception):
    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message


def as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    raise TransformError("invalid_type", "must be text or a number, not an object or a list")


_TRUE = frozenset({"true", "t", "yes", "y", "1", "on", "checked"})
_FALSE = frozenset({"false", "f", "no", "n", "0", "off", "unchecked", ""})


def to_boolean(value: Any) -> bool:
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
    raise TransformError("invalid_boolean", "is not a yes/no value (true/false, yes/no, 1/0)")


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


def _from_epoch(value: int | float, fmt: str | None) -> str:
    if fmt is not None or not math.isfinite(value):
        raise TransformError("invalid_date", "is not a date")
    seconds = value / 1000 if abs(value) >= 1e11 else value  # epoch ms vs seconds
    try:
        return _date_out(datetime.fromtimestamp(seconds, UTC))
    except (OverflowError, OSError, ValueError):
        raise TransformError("invalid_date", "is out of the range of dates") from None


def _with_format(text: str, fmt: str) -> str:
    try:
        parsed = datetime.strptime(text, fmt)
    except ValueError:
        raise TransformError("invalid_date", f"does not match the date format {fmt!r}") from None
    has_time = any(d in fmt for d in ("%H", "%I", "%M", "%S", "%p", "%z", "%f"))
    return _date_out(parsed if has_time else parsed.date())


def _guessed(text: str) -> str:
    """ISO 8601, epoch digits, or one of the common US and written-out forms."""
    if text.isascii() and text.isdigit() and len(text) >= 9:
        return _from_epoch(int(text), None)
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
    raise TransformError(
        "invalid_date",
        "is not a date this mapping understands (ISO 8601, MM/DD/YYYY, epoch); "
        "set the entry's format",
    )


def to_date(value: Any, fmt: str | None) -> str:
    if isinstance(value, bool):
        raise TransformError("invalid_date", "is not a date")
    if isinstance(value, (int, float)):
        return _from_epoch(value, fmt)
    if not isinstance(value, str):
        raise TransformError("invalid_date", "is not a date")
    text = value.strip()
    if not text or len(text) > 64:
        raise TransformError("invalid_date", "is not a date")
    if fmt is not None:
        return _with_format(text, fmt)
    return _guessed(text)


def split_name(value: Any) -> tuple[str | None, str | None]:
    text = " ".join(as_text(value).split())
    if not text:
        return None, None
    if "," in text:  # "Last, First"
        last, _, first = text.partition(",")
        return (first.strip() or None), (last.strip() or None)
    first, _, last = text.partition(" ")
    return first, (last or None)


def digits(value: Any) -> str:
    return "".join(ch for ch in as_text(value) if ch in string.digits)
