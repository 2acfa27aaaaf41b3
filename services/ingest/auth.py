"""Authenticating a webhook request: pure functions, no I/O, constant-time comparisons.

Modes (the webhook's ``auth_mode``):

- ``none``: every request is accepted.
- ``standard`` (Standard Webhooks): HMAC-SHA256 over ``{webhook-id}.{webhook-timestamp}.{body}``
  keyed by the base64-decoded part of ``whsec_...``; ``webhook-signature`` carries a
  space-separated list of ``v1,<base64>`` (several during a rotation: one valid is
  enough); the timestamp must be within 5 minutes of now. The same scheme under Svix's
  older header names (``svix-id``, ``svix-timestamp``, ``svix-signature``) verifies the
  same way: a request carrying any ``webhook-*`` header is read by those names, else by
  the ``svix-*`` ones (:data:`HEADER_SETS`).
- ``github``: ``X-Hub-Signature-256: sha256=<hex>`` = HMAC-SHA256 of the body keyed by the
  secret verbatim.
- ``basic``: ``Authorization: Basic`` with the webhook's username; the password is checked
  against its stored hash.
- ``api-key``: the header the webhook names (default ``X-API-Key``), checked against the
  stored hash.

During a rotation the previous secret is accepted too, until it expires.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from shared.secrets import verify_hashed

TOLERANCE_S = 300
# The Standard Webhooks header names, then the same scheme's older Svix names.
HEADER_SETS = (
    ("webhook-id", "webhook-timestamp", "webhook-signature"),
    ("svix-id", "svix-timestamp", "svix-signature"),
)
# More signatures than this in one header is not a rotation, it is someone fishing.
MAX_SIGNATURES = 8


@dataclass(frozen=True, slots=True)
class Secret:
    """One usable secret: the stored value, its decoded HMAC key, and when it expires."""

    value: str
    key: bytes
    expires_at: float | None = None  # epoch seconds; None: the current secret

    def valid_at(self, now: float) -> bool:
        return self.expires_at is None or now < self.expires_at


@dataclass(frozen=True, slots=True)
class AuthFailure:
    code: str
    message: str


class SecretFormatError(ValueError):
    """A stored secret that its mode cannot use (e.g. not ``whsec_`` + base64)."""


def standard_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret (``whsec_`` + base64)."""
    raw = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SecretFormatError("a standard secret is whsec_ followed by base64") from exc


def make_secret(mode: str, value: str, expires_at: float | None = None) -> Secret:
    """Pre-compute what verifying needs (done once per config load, not per request)."""
    key = standard_key(value) if mode == "standard" else value.encode()
    return Secret(value=value, key=key, expires_at=expires_at)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    return value.strip() if value is not None else None


def standard_headers(headers: Mapping[str, str]) -> tuple[str, str, str]:
    """The id, timestamp and signature header names a request uses: ``webhook-*`` when it
    carries any of them (or neither set), else ``svix-*`` when it carries one of those."""
    standard, svix = HEADER_SETS
    if any(name in headers for name in standard):
        return standard
    return svix if any(name in headers for name in svix) else standard


def message_id(headers: Mapping[str, str]) -> str | None:
    """The sender's message id (``webhook-id``, else ``svix-id``): an idempotency key."""
    return headers.get("webhook-id") or headers.get("svix-id")


def verify(
    mode: str,
    *,
    secrets: Sequence[Secret],
    headers: Mapping[str, str],
    body: bytes,
    now: float,
    basic_username: str | None = None,
    api_key_header: str = "X-API-Key",
) -> AuthFailure | None:
    """``None`` when the request is authentic, else why not. ``headers`` is case-insensitive."""
    if mode == "none":
        return None
    usable = [s for s in secrets if s.valid_at(now)]
    if mode == "standard":
        return verify_standard(usable, headers, body, now)
    if mode == "github":
        return verify_github(usable, headers, body)
    if mode == "basic":
        return verify_basic(usable, headers, basic_username)
    if mode == "api-key":
        return verify_api_key(usable, headers, api_key_header)
    return AuthFailure("unsupported_auth_mode", f"auth mode {mode!r} is not supported")


def sign_standard(key: bytes, msg_id: str, timestamp: str | int, body: bytes) -> str:
    """The ``v1,<base64>`` signature of a Standard Webhooks message."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.digest(key, signed, hashlib.sha256)).decode()


def verify_standard(
    secrets: Sequence[Secret], headers: Mapping[str, str], body: bytes, now: float
) -> AuthFailure | None:
    names = standard_headers(headers)
    id_name, timestamp_name, signature_name = names
    msg_id = _header(headers, id_name)
    timestamp = _header(headers, timestamp_name)
    signature = _header(headers, signature_name)
    missing = [
        name for name, value in zip(names, (msg_id, timestamp, signature), strict=True) if not value
    ]
    if missing:
        return AuthFailure("missing_signature", f"missing header(s): {', '.join(missing)}")
    assert msg_id is not None and timestamp is not None and signature is not None
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        return AuthFailure("invalid_timestamp", f"{timestamp_name} must be Unix seconds")
    if abs(now - int(timestamp)) > TOLERANCE_S:
        return AuthFailure(
            "timestamp_out_of_tolerance",
            f"{timestamp_name} is more than {TOLERANCE_S} s away from the server's clock",
        )
    offered = [
        part.encode() for part in signature.split(" ")[:MAX_SIGNATURES] if part.startswith("v1,")
    ]
    matched = False
    for secret in secrets:
        expected = sign_standard(secret.key, msg_id, timestamp, body).encode()
        for candidate in offered:
            # Compare every candidate (no early exit): the time does not tell which matched.
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        return AuthFailure("invalid_signature", f"no {signature_name} matches")
    return None


def sign_github(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_github(
    secrets: Sequence[Secret], headers: Mapping[str, str], body: bytes
) -> AuthFailure | None:
    offered = _header(headers, "x-hub-signature-256")
    if not offered:
        return AuthFailure("missing_signature", "missing header X-Hub-Signature-256")
    candidate = offered.lower().encode()
    matched = False
    for secret in secrets:
        matched |= hmac.compare_digest(sign_github(secret.key, body).encode(), candidate)
    if not matched:
        return AuthFailure("invalid_signature", "X-Hub-Signature-256 does not match")
    return None


def verify_basic(
    secrets: Sequence[Secret], headers: Mapping[str, str], username: str | None
) -> AuthFailure | None:
    value = _header(headers, "authorization")
    if not value or not value[:6].lower() == "basic ":
        return AuthFailure("missing_credentials", "missing Authorization: Basic header")
    try:
        decoded = base64.b64decode(value[6:].strip(), validate=True).decode()
    except (binascii.Error, ValueError):
        return AuthFailure("invalid_credentials", "malformed Basic credentials")
    user, sep, password = decoded.partition(":")
    user_ok = (
        bool(sep) and username is not None and hmac.compare_digest(user.encode(), username.encode())
    )
    password_ok = False
    for secret in secrets:
        password_ok |= verify_hashed(password, secret.value)
    if not (user_ok and password_ok):
        return AuthFailure("invalid_credentials", "wrong username or password")
    return None


def verify_api_key(
    secrets: Sequence[Secret], headers: Mapping[str, str], header: str
) -> AuthFailure | None:
    offered = _header(headers, header)
    if not offered:
        return AuthFailure("missing_credentials", f"missing header {header}")
    ok = False
    for secret in secrets:
        ok |= verify_hashed(offered, secret.value)
    if not ok:
        return AuthFailure("invalid_credentials", f"wrong {header}")
    return None
