"""Logs never carry a phone, an email, a name or a secret."""

from __future__ import annotations

import io
import logging

import orjson
import pytest
import structlog

from shared.logs import REDACTED, configure_logging, get_logger, scrub

pytestmark = pytest.mark.unit

CANARY_PHONE = "+1 (626) 663-3444"
CANARY_EMAIL = "canary.person@example.com"
CANARY_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
CANARY_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


@pytest.fixture
def captured() -> io.StringIO:
    configure_logging("test", level="INFO", fmt="json")
    buf = io.StringIO()
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buf)
    yield buf
    structlog.reset_defaults()


def test_log_line_with_phone_email_and_secret_is_redacted(captured: io.StringIO) -> None:
    get_logger("t").info(
        "lead_received",
        phone=CANARY_PHONE,
        email=CANARY_EMAIL,
        first_name="Benjie",
        secret=CANARY_SECRET,
        note=f"call {CANARY_PHONE} or mail {CANARY_EMAIL}, sig {CANARY_SIG}",
        request_id="550e8400-e29b-41d4-a716-446655440000",
    )
    line = captured.getvalue()
    for canary in (
        CANARY_PHONE,
        "6266633444",
        "663-3444",
        CANARY_EMAIL,
        "Benjie",
        CANARY_SECRET,
        CANARY_SIG,
    ):
        assert canary not in line
    doc = orjson.loads(line.strip().splitlines()[-1])
    assert doc["phone"] == REDACTED and doc["email"] == REDACTED and doc["secret"] == REDACTED
    # ids stay readable: a request id is what follows a lead through the services
    assert doc["request_id"] == "550e8400-e29b-41d4-a716-446655440000"
    assert doc["event"] == "lead_received" and doc["service"] == "test"


def test_stdlib_logging_is_redacted_too(captured: io.StringIO) -> None:
    logging.getLogger("somelib").warning("failed for %s", CANARY_EMAIL)
    assert CANARY_EMAIL not in captured.getvalue()
    assert REDACTED in captured.getvalue()


@pytest.mark.parametrize(
    "text",
    [
        "+16266633444",
        "626.663.3444",
        "(626) 663-3444",
        "16266633444",
        "020 7946 0958",
        "Bearer abcdefghijklmnop",
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
    ],
)
def test_scrub_masks_phone_and_secret_shapes(text: str) -> None:
    assert scrub(f"x {text} y") == f"x {REDACTED} y"


def test_scrub_leaves_ids_and_small_numbers() -> None:
    text = "request 550e8400-e29b-41d4-a716-446655440000 took 45 ms, batch 500"
    assert scrub(text) == text


def test_fields_named_like_a_secret_header_are_masked_at_any_depth(captured: io.StringIO) -> None:
    get_logger("t").info(
        "vendor_call",
        x_auth_token="canary-a",
        upstream={"X-Access-Token": "canary-b", "content-type": "application/json"},
        key_id="k1",
    )
    line = captured.getvalue().strip().splitlines()[-1]
    assert "canary-" not in line
    doc = orjson.loads(line)
    assert doc["x_auth_token"] == REDACTED
    assert doc["upstream"] == {"X-Access-Token": REDACTED, "content-type": "application/json"}
    assert doc["key_id"] == "k1"  # ids stay readable
