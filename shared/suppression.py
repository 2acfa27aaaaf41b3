"""How a phone or email becomes a suppression-list entry: normalized, then hashed.

The same function serves the three places that compare them: the suppression list's
front-ends (the CLI, the management API) when a value is added, the processor when a lead
arrives (its phone and email are normalized by the mapping already, so hashing them as
they are gives the same digest), and the notifier before it sends to a recipient.

Why sha256 of the normalized value, unkeyed: the list never holds a value as given (a
database dump or a backup does not read as a contact list), lookups stay one index probe,
and a list hashed elsewhere the same way (sha256 of the lowercased email is the usual
exchange format for do-not-contact lists) compares with ours. A phone number's space is
small enough to enumerate, so the hash hides a number from a casual reader, not from
someone who sets out to reverse it; the table is guarded like the contacts it protects.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from shared.mapping.normalize import normalize_email, normalize_phone

Kind = Literal["phone", "email"]
KINDS: tuple[Kind, ...] = ("phone", "email")


def digest(value: str) -> bytes:
    """The sha256 of an already normalized value (32 bytes)."""
    return hashlib.sha256(value.encode()).digest()


def normalize(kind: Kind, value: str, region: str) -> str:
    """The value as the mapping stores it on a lead: E.164 (national numbers read in
    ``region``) or an NFKC-normalized, lowercased address. Raises ``ValueError(code)``
    (``invalid_phone``, ``invalid_email``, ...) for a value that is neither."""
    if kind == "phone":
        return normalize_phone(value, region)
    return normalize_email(value)


def entry_hash(kind: Kind, value: str, region: str) -> bytes:
    """The stored form of a suppression entry."""
    return digest(normalize(kind, value, region))


def recipient_hash(kind: Kind, recipient: str) -> bytes | None:
    """The stored form of a notification recipient (an E.164 phone or an address); None
    when it does not normalize (it cannot be on the list then)."""
    try:
        return entry_hash(kind, recipient, "US")
    except ValueError:
        return None
