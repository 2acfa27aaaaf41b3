"""Bounds of a mapping and of what it writes.

Text lead fields and custom keys stay short; custom values may be longer (notes, consent
text) but not unbounded; the body itself is bounded by the gateway.
"""

from __future__ import annotations

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
