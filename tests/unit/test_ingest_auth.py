"""Webhook authentication: known answers (S1, S2) and every way to get it wrong (S3)."""

from __future__ import annotations

import base64

import pytest
from multidict import CIMultiDict

from services.ingest import auth
from shared.secrets import hash_secret

pytestmark = pytest.mark.unit

# RELIABILITY S1: the Standard Webhooks reference vector.
S1_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
S1_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
S1_TS = 1614265330
S1_BODY = b'{"test": 2432232314}'
S1_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

# RELIABILITY S2: GitHub's documented example.
S2_SECRET = "It's a Secret to Everybody"
S2_BODY = b"Hello, World!"
S2_SIG = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def std_headers(**override: str | None) -> CIMultiDict[str]:
    values = {"webhook-id": S1_ID, "webhook-timestamp": str(S1_TS), "webhook-signature": S1_SIG}
    values.update(override)  # type: ignore[arg-type]
    return CIMultiDict({k: v for k, v in values.items() if v is not None})


def verify_std(
    headers: CIMultiDict[str],
    body: bytes = S1_BODY,
    now: float = S1_TS,
    secrets: list[auth.Secret] | None = None,
) -> auth.AuthFailure | None:
    return auth.verify(
        "standard",
        secrets=secrets or [auth.make_secret("standard", S1_SECRET)],
        headers=headers,
        body=body,
        now=now,
    )


def test_s1_standard_webhooks_known_answer() -> None:
    assert auth.sign_standard(auth.standard_key(S1_SECRET), S1_ID, S1_TS, S1_BODY) == S1_SIG
    assert verify_std(std_headers()) is None


def test_s2_github_known_answer() -> None:
    assert auth.sign_github(S2_SECRET.encode(), S2_BODY) == S2_SIG
    result = auth.verify(
        "github",
        secrets=[auth.make_secret("github", S2_SECRET)],
        headers=CIMultiDict({"X-Hub-Signature-256": S2_SIG}),
        body=S2_BODY,
        now=0,
    )
    assert result is None


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_s3_each_header_missing(missing: str) -> None:
    failure = verify_std(std_headers(**{missing: None}))
    assert failure is not None and failure.code == "missing_signature"


@pytest.mark.parametrize(
    "timestamp",
    [
        "abc",
        "-5",
        "1614265330.5",
        "",
        "\uff11\uff16\uff11\uff14\uff12\uff16\uff15\uff13\uff13\uff10",
        "9" * 20,
    ],
)
def test_s3_bad_timestamp(timestamp: str) -> None:
    failure = verify_std(std_headers(**{"webhook-timestamp": timestamp}))
    assert failure is not None
    assert failure.code in {"invalid_timestamp", "missing_signature"}


@pytest.mark.parametrize("skew", [301, -301, 3600, -86400])
def test_s3_clock_skew_beyond_tolerance(skew: int) -> None:
    # The signature is valid for its timestamp; the server's clock is off by > 300 s.
    failure = verify_std(std_headers(), now=S1_TS + skew)
    assert failure is not None and failure.code == "timestamp_out_of_tolerance"


@pytest.mark.parametrize("skew", [300, -300, 0])
def test_skew_within_tolerance_is_accepted(skew: int) -> None:
    assert verify_std(std_headers(), now=S1_TS + skew) is None


def test_s3_body_changed_by_one_byte() -> None:
    for i in range(len(S1_BODY)):
        changed = bytearray(S1_BODY)
        changed[i] ^= 0x01
        assert verify_std(std_headers(), body=bytes(changed)) is not None


def test_s3_wrong_secret() -> None:
    other = "whsec_" + base64.b64encode(b"x" * 24).decode()
    failure = verify_std(std_headers(), secrets=[auth.make_secret("standard", other)])
    assert failure is not None and failure.code == "invalid_signature"


def test_s3_several_signatures_one_valid() -> None:
    bad = "v1," + base64.b64encode(b"\0" * 32).decode()
    assert verify_std(std_headers(**{"webhook-signature": f"{bad} v2,abc {S1_SIG}"})) is None
    assert verify_std(std_headers(**{"webhook-signature": f"{bad} {bad}"})) is not None
    # Only v1 signatures count, even if the bytes match.
    assert (
        verify_std(std_headers(**{"webhook-signature": S1_SIG.replace("v1,", "v2,")})) is not None
    )


def test_rotation_previous_secret_until_it_expires() -> None:
    other = "whsec_" + base64.b64encode(b"y" * 24).decode()
    secrets = [
        auth.make_secret("standard", other),
        auth.make_secret("standard", S1_SECRET, expires_at=S1_TS + 10),
    ]
    assert verify_std(std_headers(), secrets=secrets, now=S1_TS) is None
    assert verify_std(std_headers(), secrets=secrets, now=S1_TS + 11) is not None


def test_github_wrong_and_missing() -> None:
    secrets = [auth.make_secret("github", S2_SECRET)]
    assert (
        auth.verify("github", secrets=secrets, headers=CIMultiDict(), body=S2_BODY, now=0)
        is not None
    )
    wrong = auth.sign_github(b"another secret", S2_BODY)
    assert (
        auth.verify(
            "github",
            secrets=secrets,
            headers=CIMultiDict({"X-Hub-Signature-256": wrong}),
            body=S2_BODY,
            now=0,
        )
        is not None
    )
    # Upper-case hex is the same signature.
    assert (
        auth.verify(
            "github",
            secrets=secrets,
            headers=CIMultiDict(
                {"X-Hub-Signature-256": S2_SIG.upper().replace("SHA256=", "sha256=")}
            ),
            body=S2_BODY,
            now=0,
        )
        is None
    )
    assert (
        auth.verify(
            "github",
            secrets=secrets,
            headers=CIMultiDict({"X-Hub-Signature-256": S2_SIG}),
            body=S2_BODY + b" ",
            now=0,
        )
        is not None
    )


def basic(user: str, password: str) -> CIMultiDict[str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return CIMultiDict({"Authorization": f"Basic {token}"})


def test_basic_auth() -> None:
    secrets = [auth.make_secret("basic", hash_secret("pa55word-long-enough"))]

    def check(headers: CIMultiDict[str]) -> auth.AuthFailure | None:
        return auth.verify(
            "basic", secrets=secrets, headers=headers, body=b"", now=0, basic_username="lw_1234"
        )

    assert check(basic("lw_1234", "pa55word-long-enough")) is None
    assert check(basic("lw_1234", "wrong")) is not None
    assert check(basic("someone", "pa55word-long-enough")) is not None
    assert check(CIMultiDict()) is not None
    assert check(CIMultiDict({"Authorization": "Basic !!!notbase64"})) is not None
    assert check(CIMultiDict({"Authorization": "Bearer abc"})) is not None


def test_api_key() -> None:
    secrets = [auth.make_secret("api-key", hash_secret("lwk_secret_value"))]

    def check(header: str, key: str) -> auth.AuthFailure | None:
        return auth.verify(
            "api-key",
            secrets=secrets,
            headers=CIMultiDict({header: key}),
            body=b"",
            now=0,
            api_key_header="X-Lead-Key",
        )

    assert check("X-Lead-Key", "lwk_secret_value") is None
    wrong = check("X-Lead-Key", "lwk_other")
    assert wrong is not None and wrong.code == "invalid_credentials"
    assert check("X-API-Key", "lwk_secret_value") is not None  # the webhook's header only


def test_none_accepts_and_unknown_mode_refuses() -> None:
    assert auth.verify("none", secrets=[], headers=CIMultiDict(), body=b"", now=0) is None
    assert auth.verify("magic", secrets=[], headers=CIMultiDict(), body=b"", now=0) is not None


def test_no_usable_secret_refuses() -> None:
    expired = [auth.make_secret("github", S2_SECRET, expires_at=5)]
    headers = CIMultiDict({"X-Hub-Signature-256": S2_SIG})
    assert auth.verify("github", secrets=expired, headers=headers, body=S2_BODY, now=10) is not None


def test_compare_is_constant_time() -> None:
    # The comparisons go through hmac.compare_digest (checked by reading the code path):
    # every candidate is compared against every secret, without an early exit.
    import inspect

    source = inspect.getsource(auth)
    assert "compare_digest" in source
    assert " == expected" not in source and "expected ==" not in source
