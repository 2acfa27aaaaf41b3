"""One list of secret headers (shared.redact), applied alike where a request's headers go:
the gateway's event (Kafka, webhook_requests), the archive's records and the logs."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import orjson
import pytest
import structlog

from services.archiver.records import clean_headers
from shared.logs import REDACTED, configure_logging, get_logger
from shared.redact import SECRET_HEADERS, is_secret_header, strip_secret_headers

pytestmark = pytest.mark.unit

# What a vendor may send: secrets under well-known and made-up names, and plain headers.
SENT = {
    "Content-Type": "application/json",
    "User-Agent": "vendor/1.0",
    "Webhook-Id": "msg_1",
    "X-Request-Id": "abc",
    "Authorization": "Bearer canary-1",
    "X-Auth-Token": "canary-2",
    "X-Access-Token": "canary-3",
    "X-Hub-Signature-256": "sha256=canary-4",
    "Cookie": "sid=canary-5",
    "X-Partner-Auth": "canary-6",
    "X-My-Apikey": "canary-7",
    "X-Vendor-Session": "canary-8",
    "X-Client-Password": "canary-9",
    "X-Credential": "canary-10",
}
KEPT = {
    "content-type": "application/json",
    "user-agent": "vendor/1.0",
    "webhook-id": "msg_1",
    "x-request-id": "abc",
}


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    configure_logging("test", level="INFO", fmt="json")
    buf = io.StringIO()
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buf)
    yield buf
    structlog.reset_defaults()


def test_the_list_names_the_tokens_the_gateway_used_to_let_through() -> None:
    assert {"x-auth-token", "x-access-token"} <= SECRET_HEADERS
    assert all(is_secret_header(name) for name in SECRET_HEADERS)
    assert is_secret_header("X-AUTH-TOKEN") and not is_secret_header("Content-Type")


def test_the_gateway_strips_every_secret_header() -> None:
    assert strip_secret_headers(SENT) == KEPT
    # A webhook's own API-key header is dropped too, whatever its name.
    assert "x-lead-key" not in strip_secret_headers({**SENT, "X-Lead-Key": "k"}, ("X-Lead-Key",))


def test_the_archive_keeps_what_the_gateway_keeps() -> None:
    assert clean_headers(SENT) == KEPT


def test_the_logs_mask_the_same_names_at_any_depth(captured: io.StringIO) -> None:
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
