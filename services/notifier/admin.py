"""What the CLI (``leadwire notify``) and the management API may do to the notifier's
domain, and the one module of the notifier they import: a workspace's notification rules,
its high-priority SMS rule and its real-time (Socket.IO) token.

Settings are stored in ``notification_settings`` and read by the notifier for every
batch of events, so a change applies to the next events without a restart. Every change
reads the stored settings under a row lock, applies ``change`` and writes them back in
one transaction, so two concurrent changes do not lose one another.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg
import email_validator
import phonenumbers
from pydantic import ValidationError

from services.notifier import admin_repository as repository
from services.notifier.rules import (
    Channel,
    EventKind,
    HighPriority,
    NotificationSettings,
    Rule,
    parse_condition,
    parse_settings,
)

__all__ = [
    "TOKEN_PREFIX",
    "Change",
    "Channel",
    "EventKind",
    "HighPriority",
    "InvalidRecipient",
    "InvalidStoredSettings",
    "NotificationSettings",
    "Rule",
    "TokenExists",
    "check_email",
    "check_phone",
    "describe",
    "issue_token",
    "parse_condition",
    "requeue_dead_sends",
    "update",
]

TOKEN_PREFIX = "lwrt_"

Change = Callable[[NotificationSettings], NotificationSettings]


class InvalidStoredSettings(Exception):
    """The stored settings do not validate (written around the CLI)."""

    def __init__(self, errors: int) -> None:
        super().__init__(f"the stored notification settings are invalid ({errors} errors)")
        self.errors = errors


class InvalidRecipient(ValueError):
    """An email address or phone number that cannot be a recipient; ``hint`` says how to
    write one."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def check_email(address: str) -> str:
    """An email recipient, normalized (lower case)."""
    try:
        return email_validator.validate_email(
            address, check_deliverability=False, test_environment=True
        ).normalized.lower()
    except email_validator.EmailNotValidError as exc:
        raise InvalidRecipient(f"{address!r} is not a valid email address: {exc}") from None


def check_phone(number: str, region: str) -> str:
    """An SMS recipient in E.164 (a national number is read in ``region``)."""
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException:
        parsed = None
    if parsed is None or not phonenumbers.is_valid_number(parsed):
        raise InvalidRecipient(
            f"{number!r} is not a valid phone number",
            hint="give it in international form, e.g. +15551234567",
        )
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


class TokenExists(Exception):
    """The workspace already has a real-time token and no rotation was asked for."""


def _parse(stored: dict[str, Any] | None) -> tuple[NotificationSettings, bool]:
    try:
        return parse_settings(stored)
    except ValidationError as exc:
        raise InvalidStoredSettings(exc.error_count()) from None


async def describe(conn: asyncpg.Connection, workspace_id: uuid.UUID) -> dict[str, Any]:
    """The workspace's rules (the defaults if none are stored), its high-priority rule,
    whether it has a real-time token, and when they last changed."""
    row = await repository.stored_settings(conn, workspace_id)
    settings, defaults = _parse(row.settings if row else None)
    doc = settings.to_json()
    return {
        "rules": doc["rules"],
        "high_priority": doc["high_priority"],
        "defaults": defaults,
        "realtime_token": {"set": bool(row and row.realtime_token_hash)},
        "updated_at": row.updated_at if row else None,
    }


async def update(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, change: Change
) -> dict[str, Any]:
    """Apply ``change`` to the stored settings; returns :func:`describe` after it."""
    async with conn.transaction():
        row = await repository.settings_for_update(conn, workspace_id)
        current, _ = _parse(row.settings)
        await repository.save_settings(conn, workspace_id, change(current).to_json())
    return await describe(conn, workspace_id)


async def issue_token(
    conn: asyncpg.Connection, workspace_id: uuid.UUID, *, rotate: bool
) -> tuple[str, bool]:
    """Create the workspace's real-time token, or replace it if ``rotate`` (else
    :class:`TokenExists`). Returns the token (only its hash is stored, so this is the one
    time it can be shown) and whether an old one was replaced."""
    async with conn.transaction():
        row = await repository.settings_for_update(conn, workspace_id)
        rotated = bool(row.realtime_token_hash)
        if rotated and not rotate:
            raise TokenExists()
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        await repository.save_token(conn, workspace_id, token)
    return token, rotated


async def requeue_dead_sends(conn: asyncpg.Connection, send_ids: Sequence[uuid.UUID]) -> int:
    """``leadwire deadletter retry`` of a notifications dead letter: its sends that are
    still dead go back in the queue as new (no attempts yet, due now) and the dispatcher
    sends them. Sends re-queued already, sent since or pruned (past retention) are left
    alone; returns how many were re-queued. Runs in the caller's transaction, if any."""
    return await repository.requeue_dead(conn, send_ids)
