"""Webhook secrets: entropy, storage form per mode, constant-time verification, rotation."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta

import pytest

from shared.secrets import (
    AUTH_MODES,
    check_imported_secret,
    current_secrets,
    generate_secret,
    hash_secret,
    stored_form,
    verify_hashed,
)

pytestmark = pytest.mark.unit


def test_standard_secret() -> None:
    plain, stored, extra = generate_secret("standard")
    assert plain.startswith("whsec_")
    assert len(base64.b64decode(plain.removeprefix("whsec_"))) == 32
    assert stored == plain  # the HMAC key is needed verbatim
    assert extra == {}
    assert check_imported_secret("standard", plain) is None


def test_github_secret() -> None:
    plain, stored, _ = generate_secret("github")
    assert stored == plain
    assert len(plain) >= 43


def test_basic_secret_is_stored_hashed_with_a_username() -> None:
    plain, stored, extra = generate_secret("basic")
    assert stored == hash_secret(plain) and stored.startswith("sha256:")
    assert plain not in stored
    assert re.fullmatch(r"lw_[0-9a-f]{8}", extra["basic_username"])
    assert verify_hashed(plain, stored)
    assert not verify_hashed(plain + "x", stored)


def test_api_key_is_stored_hashed() -> None:
    plain, stored, extra = generate_secret("api-key")
    assert plain.startswith("lwk_")
    assert stored == hash_secret(plain)
    assert extra == {}
    assert verify_hashed(plain, stored)


def test_none_has_no_secret() -> None:
    assert generate_secret("none") == ("", "", {})


def test_unknown_mode() -> None:
    with pytest.raises(ValueError, match="unknown auth mode"):
        generate_secret("oauth")
    assert set(AUTH_MODES) == {"none", "standard", "github", "basic", "api-key"}


def test_secrets_are_unique() -> None:
    assert len({generate_secret("standard")[0] for _ in range(50)}) == 50


def test_verify_hashed_edge_cases() -> None:
    assert not verify_hashed("x", None)
    assert not verify_hashed("x", "")
    assert not verify_hashed(None, hash_secret("x"))  # type: ignore[arg-type]


def test_stored_form_and_imported_secrets() -> None:
    assert stored_form("api-key", "k" * 20) == hash_secret("k" * 20)
    assert stored_form("github", "k" * 20) == "k" * 20
    with pytest.raises(ValueError):
        stored_form("none", "x")
    assert check_imported_secret("github", "short") is not None
    assert check_imported_secret("standard", "nope" * 8) is not None
    assert (
        check_imported_secret("standard", "whsec_" + base64.b64encode(b"x" * 8).decode())
        is not None
    )
    assert check_imported_secret("basic", "has space in it 123") is not None
    assert check_imported_secret("none", "x" * 20) is not None
    assert check_imported_secret("api-key", "x" * 20) is None


def test_current_secrets_during_and_after_grace() -> None:
    now = datetime(2024, 5, 1, tzinfo=UTC)
    later = now + timedelta(hours=1)
    assert current_secrets("new", "old", later, now) == ["new", "old"]
    assert current_secrets("new", "old", now, now) == ["new"]
    assert current_secrets("new", "old", None, now) == ["new"]
    assert current_secrets("new", None, later, now) == ["new"]
    assert current_secrets(None, None, None) == []
