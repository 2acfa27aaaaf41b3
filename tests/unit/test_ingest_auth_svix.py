"""Standard Webhooks under both header sets (``webhook-*`` and Svix's ``svix-*``), signed
by the official ``standardwebhooks`` library."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from multidict import CIMultiDict
from standardwebhooks.webhooks import Webhook

from services.ingest import auth

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
BODY = b'{"email":"benjie@example.com"}'


def headers(prefix: str, msg_id: str = "msg_p5jXN8AQM9LWM0D4loKWxJek") -> CIMultiDict[str]:
    now = datetime.now(UTC)
    return CIMultiDict(
        {
            f"{prefix}-id": msg_id,
            f"{prefix}-timestamp": str(int(now.timestamp())),
            f"{prefix}-signature": Webhook(SECRET).sign(msg_id, now, BODY.decode()),
        }
    )


def check(h: CIMultiDict[str], body: bytes = BODY) -> auth.AuthFailure | None:
    secret = auth.make_secret("standard", SECRET)
    now = datetime.now(UTC).timestamp()
    return auth.verify("standard", secrets=[secret], headers=h, body=body, now=now)


@pytest.mark.parametrize("prefix", ["webhook", "svix", "Svix", "WEBHOOK"])
def test_the_official_signature_verifies_under_either_name(prefix: str) -> None:
    assert check(headers(prefix)) is None
    assert auth.message_id(headers(prefix, "msg_1")) == "msg_1"


@pytest.mark.parametrize("prefix", ["webhook", "svix"])
def test_another_body_or_a_missing_header_is_refused_by_its_own_names(prefix: str) -> None:
    failure = check(headers(prefix), body=BODY + b" ")
    assert failure is not None and failure.code == "invalid_signature"
    assert failure.message == f"no {prefix}-signature matches"
    h = headers(prefix)
    del h[f"{prefix}-timestamp"]
    failure = check(h)
    assert failure is not None and failure.code == "missing_signature"
    assert f"{prefix}-timestamp" in failure.message


def test_a_webhook_header_makes_the_request_read_by_webhook_names() -> None:
    # A request mixing the sets is read by the Standard Webhooks names, never half of each.
    h = headers("svix")
    h["webhook-id"] = "other"
    failure = check(h)
    assert failure is not None and failure.code == "missing_signature"
    assert auth.message_id(h) == "other"
    assert auth.message_id(CIMultiDict()) is None
