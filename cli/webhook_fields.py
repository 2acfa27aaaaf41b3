"""Reading what ``leadwire webhook ...`` and ``leadwire mapping ...`` are given: the
management admin's checks (:mod:`services.api.checks`), named by their flags in the
messages. A malformed value is a usage error (exit 2)."""

from __future__ import annotations

from services.api.admin import checks

basic_username = checks.basic_username
check_auth_mode = checks.check_auth_mode
check_header = checks.check_header
read_mapping = checks.read_mapping
template_named = checks.template_named
parse_duration = checks.parse_duration


def parse_size(text: str) -> int:
    return checks.parse_size(text, label="--max-body")


def check_rate_limit(value: int) -> int:
    return checks.check_rate_limit(value, label="--rate-limit")


def check_idempotency_field(path: str) -> str:
    return checks.check_idempotency_field(path, label="--idempotency-field")


def check_secret(mode: str, imported: str | None) -> None:
    """Raise if ``imported`` (``--secret``) does not suit ``mode``."""
    if imported is not None:
        checks.issue_secret(mode, imported, label="--secret")
