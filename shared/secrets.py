"""Webhook secrets: generated with plenty of entropy, stored hashed where the mode allows.

- ``standard`` (Standard Webhooks): ``whsec_`` + base64 of 32 random bytes. The HMAC key
  is needed verbatim to verify signatures, so it is stored as issued.
- ``github`` (``X-Hub-Signature-256``): ``token_urlsafe(32)``, stored verbatim (same reason).
- ``basic``: a generated username ``lw_<8 hex>`` and a ``token_urlsafe(32)`` password;
  only ``sha256:<hex>`` of the password is stored.
- ``api-key``: ``lwk_`` + ``token_urlsafe(32)``; only ``sha256:<hex>`` is stored.
- ``none``: the unguessable webhook URL is the credential; no secret.

A plain sha256 is enough for the hashed modes because the secrets are 256-bit random
values, not passwords people chose: there is nothing to brute-force or look up.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import UTC, datetime
from typing import Any

AUTH_MODES = ("none", "standard", "github", "basic", "api-key")
HASHED_MODES = frozenset({"basic", "api-key"})
HMAC_MODES = frozenset({"standard", "github"})
HASH_PREFIX = "sha256:"


def hash_secret(plain: str) -> str:
    """``sha256:<hex>`` of a secret."""
    return HASH_PREFIX + hashlib.sha256(plain.encode("utf-8")).hexdigest()


def verify_hashed(plain: str, stored: str | None) -> bool:
    """Whether ``plain`` is the secret behind ``stored`` (constant-time compare)."""
    if not stored or not isinstance(plain, str):
        return False
    return hmac.compare_digest(hash_secret(plain).encode(), stored.encode())


def generate_secret(auth_mode: str) -> tuple[str, str, dict[str, Any]]:
    """(shown once to the operator, stored in ``webhooks.secret``, extra columns).

    For ``none`` both strings are empty. Raises ValueError for an unknown mode."""
    if auth_mode == "standard":
        plain = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        return plain, plain, {}
    if auth_mode == "github":
        plain = secrets.token_urlsafe(32)
        return plain, plain, {}
    if auth_mode == "basic":
        plain = secrets.token_urlsafe(32)
        return plain, hash_secret(plain), {"basic_username": f"lw_{secrets.token_hex(4)}"}
    if auth_mode == "api-key":
        plain = "lwk_" + secrets.token_urlsafe(32)
        return plain, hash_secret(plain), {}
    if auth_mode == "none":
        return "", "", {}
    raise ValueError(f"unknown auth mode {auth_mode!r} (valid: {', '.join(AUTH_MODES)})")


def stored_form(auth_mode: str, plain: str) -> str:
    """How an operator-supplied secret is stored for ``auth_mode`` (hashed or verbatim)."""
    if auth_mode in HASHED_MODES:
        return hash_secret(plain)
    if auth_mode in HMAC_MODES:
        return plain
    raise ValueError(f"auth mode {auth_mode!r} has no secret")


def check_imported_secret(auth_mode: str, plain: str) -> str | None:
    """Why an operator-supplied secret is unacceptable, or None when it is fine."""
    if auth_mode not in HASHED_MODES | HMAC_MODES:
        return f"auth mode {auth_mode!r} takes no secret"
    if any(ch.isspace() for ch in plain) or not plain.isprintable():
        return "a secret must be printable and contain no whitespace"
    if auth_mode == "standard":
        if not plain.startswith("whsec_"):
            return "a Standard Webhooks secret starts with 'whsec_'"
        try:
            key = base64.b64decode(plain.removeprefix("whsec_"), validate=True)
        except ValueError:
            return "a Standard Webhooks secret is 'whsec_' + base64"
        if not 24 <= len(key) <= 64:
            return "a Standard Webhooks secret holds 24 to 64 random bytes"
        return None
    if len(plain) < 16:
        return "a secret must be at least 16 characters long"
    if len(plain) > 512:
        return "a secret must be at most 512 characters long"
    return None


def generate_verify_token() -> str:
    """A Facebook Lead Ads subscription verify token (echoed in ``hub.verify_token``)."""
    return secrets.token_urlsafe(24)


def current_secrets(
    secret: str | None,
    previous: str | None,
    previous_expires_at: datetime | None,
    now: datetime | None = None,
) -> list[str]:
    """The stored secrets that verify at ``now``: the current one, and the one before the
    last rotation until its grace period ends (``webhook rotate-secret --grace``)."""
    out = [secret] if secret else []
    if previous and previous_expires_at is not None:
        if (now or datetime.now(UTC)) < previous_expires_at:
            out.append(previous)
    return out
