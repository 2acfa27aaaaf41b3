"""One list of secret headers (shared.redact), applied alike where a request's headers go:
the gateway's event (Kafka, webhook_requests), the archive's records and the logs (the
logs' side: tests/unit/test_shared_logs.py)."""

from __future__ import annotations

import pytest

from services.archiver.records import clean_headers
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
