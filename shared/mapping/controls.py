"""Control characters in what a vendor sends: which ones, and taking them out.

The control characters here are C0 (U+0000-U+001F) except tab, CR and LF: nothing a
person types into a form, and NUL is refused outright by Postgres text and jsonb. The
gateway's input policy (``services/ingest/policy.py``, ``docs/ingest.md``) refuses them in
field names and in identity values (phone, email, CRM id: what a contact is matched on,
never edited behind the sender's back) and removes them from every other value.
"""

from __future__ import annotations

import re
from typing import Any

# C0 without tab (09), LF (0A), CR (0D).
CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")

# The lead fields a contact is matched on: a control character in one is refused.
IDENTITY_FIELDS = frozenset({"phone", "email", "crm_id"})


def has_control(text: str) -> bool:
    return CONTROL.search(text) is not None


def strip_controls(value: Any) -> Any:
    """``value`` (text, or lists and objects of it, at any depth) without control
    characters in its text; object keys are left as they are (the gateway refuses keys
    that hold one before anything is mapped)."""
    if isinstance(value, str):
        return CONTROL.sub("", value)
    if isinstance(value, dict):
        return {k: strip_controls(v) for k, v in value.items()}
    if isinstance(value, list):
        return [strip_controls(v) for v in value]
    return value


def escape_controls(text: str, limit: int = 60) -> str:
    """``text`` as a field label: control characters shown as ``\\uXXXX`` (never stored
    or logged raw), cut to about ``limit`` characters."""
    shown = CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."
