"""The gateway's input policy (services/ingest/policy.py) on the POST path, without Kafka
or Postgres: control characters in names and values, bytes that are not UTF-8, lone
surrogates, header bytes read as Latin-1, and a rejection that is recordable whatever its
body held (and not retried when a target refuses it for what it holds)."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode

import asyncpg
import orjson
import pytest
from aiohttp.test_utils import make_mocked_request
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from services.ingest import policy
from services.ingest.bodies import Accepted, Rejected
from services.ingest.metrics import PAYLOAD_DROPPED, REJECTION_PUBLISH_FAILED
from services.ingest.repository import FakeRepository
from shared import topics
from shared.events import LeadRejected, decode_outcome, decode_raw
from shared.mapping import has_control
from tests.unit.test_ingest_steps import Gateway

pytestmark = pytest.mark.unit

PHONE = "+14155550100"
FORM = "application/x-www-form-urlencoded"


async def _rejected(gw: Gateway, body: bytes, **kw: Any) -> tuple[Rejected, LeadRejected]:
    status, answer = await gw.post(gw.webhook(), body, **kw)
    assert status == 400, answer
    await gw.deps.background.drain(5)
    [event] = [decode_outcome(m) for m in gw.publisher.on(topics.OUTCOMES)]
    assert isinstance(event, LeadRejected)
    return Rejected.model_validate_json(answer), event


async def _accepted(gw: Gateway, body: bytes, **kw: Any) -> Any:
    status, answer = await gw.post(gw.webhook(), body, **kw)
    assert status == 202, answer
    Accepted.model_validate_json(answer)
    [raw] = [decode_raw(m) for m in gw.publisher.on(topics.RAW)]
    return raw


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_nul(v) for v in value)
    return False


# --- names and values -------------------------------------------------------------------


async def test_a_control_character_in_a_name_is_refused_and_the_rejection_is_storable() -> None:
    gw = Gateway()
    body = orjson.dumps({"phone_number": PHONE, "k\x00": "x" * 10_001})
    answer, event = await _rejected(gw, body)
    [error] = answer.errors
    assert (error.field, error.code) == ("k\\u0000", "control_character")
    # Recorded with NUL shown as U+FFFD: Postgres jsonb and text hold that.
    assert not _holds_nul(event.model_dump(mode="json"))
    assert event.request.payload == {"phone_number": PHONE, "k\ufffd": "x" * 10_001}
    assert gw.repo.rows[answer.request_id]["status"] == "rejected"


@pytest.mark.parametrize(
    "name", ["\x01", "a\x1fb", "\x0b", "\x0c", "\x7f\x00"], ids=["SOH", "US", "VT", "FF", "NUL"]
)
async def test_every_c0_control_but_tab_cr_lf_is_refused_in_a_nested_name(name: str) -> None:
    answer, _ = await _rejected(
        Gateway(), orjson.dumps({"phone_number": PHONE, "lead": [{name: 1}]})
    )
    assert answer.errors[0].code == "control_character"
    assert answer.errors[0].field.startswith("lead.0.")


async def test_control_characters_are_taken_out_of_values_tab_cr_lf_kept() -> None:
    gw = Gateway()
    body = orjson.dumps(
        {
            "phone_number": PHONE,
            "firstname": "Ann\x00",
            "notes": "line\x01one\r\nline\ttwo",
            "deep": {"list": ["a\x1bb", 1]},
            "tab\tkey": "ok",
        }
    )
    raw = await _accepted(gw, body)
    assert raw.lead.first_name == "Ann" and raw.lead.phone == PHONE
    assert raw.lead.custom["notes"] == "lineone\r\nline\ttwo"
    assert raw.lead.custom["deep"] == {"list": ["ab", 1]}
    assert raw.lead.custom["tab\tkey"] == "ok"
    # The payload carried (stored, archived) is without them too; the body hash is the
    # body's own.
    assert raw.request.payload["firstname"] == "Ann"
    assert not _holds_nul(raw.model_dump(mode="json"))


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"phone_number": "+1415555\x000100"}, "phone"),
        ({"phone_number": PHONE, "email": "ann\x01@example.com"}, "email"),
        ({"phone_number": PHONE, "crm_id": "A-1\x00"}, "crm_id"),
    ],
    ids=["phone", "email", "crm_id"],
)
async def test_a_control_character_in_an_identity_field_is_refused(
    body: dict[str, Any], field: str
) -> None:
    answer, event = await _rejected(Gateway(), orjson.dumps(body))
    assert (field, "control_character") in [(e.field, e.code) for e in answer.errors]
    assert not _holds_nul(event.model_dump(mode="json"))


async def test_form_bodies_follow_the_same_policy() -> None:
    answer, _ = await _rejected(Gateway(), b"phone_number=%2B14155550100&k%00=1", content_type=FORM)
    assert (answer.errors[0].field, answer.errors[0].code) == ("k\\u0000", "control_character")
    raw = await _accepted(
        Gateway(), b"phone_number=%2B14155550100&firstname=Ann%00&notes=a%0Ab", content_type=FORM
    )
    assert raw.lead.first_name == "Ann" and raw.lead.custom["notes"] == "a\nb"
    for body in (b"phone_number=%2B14155550100&n=%FF", b"phone_number=1&n=\xe9"):
        answer, _ = await _rejected(Gateway(), body, content_type=FORM)
        assert answer.errors[0].code == "invalid_utf8"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"phone_number": "+14155550100", "n": "\\ud800"}', "invalid_unicode"),
        (b'{"phone_number": "+14155550100", "n": "\\udc00"}', "invalid_unicode"),
        (b'{"phone_number": "+14155550100", "n": "\xe9"}', "invalid_utf8"),
        (b'{"phone_number": "+14155550100", "n": "\x00"}', "invalid_json"),
        (b'{"phone_number": "+14155550100", "n": 1e400}', "invalid_json"),
    ],
    ids=["high surrogate", "low surrogate", "latin-1 byte", "raw NUL", "infinite"],
)
async def test_bodies_that_are_not_unicode_json_are_refused(body: bytes, code: str) -> None:
    answer, event = await _rejected(Gateway(), body)
    assert answer.errors[0].code == code
    assert isinstance(event.request.payload, str) and "\x00" not in event.request.payload


async def test_a_surrogate_pair_emoji_rtl_marks_and_big_numbers_are_fine() -> None:
    body = (
        b'{"phone_number": "+14155550100", "n": "\\ud83d\\ude00 \xe2\x80\x8fabc",'
        b' "big": 123456789012345678901234567890, "u64": 18446744073709551615}'
    )
    raw = await _accepted(Gateway(), body)
    assert raw.lead.custom["n"] == "\U0001f600 \u200fabc"
    assert raw.lead.custom["u64"] == 2**64 - 1


# --- the policy's pieces ------------------------------------------------------------------


def test_only_a_suspect_body_is_walked() -> None:
    assert not policy.suspect(b'{"a": "plain \\" text"}', is_json=True)
    assert policy.suspect(b'{"a": "\\u0001"}', is_json=True)
    assert policy.suspect(b'{"a": "\\u000a"}', is_json=True)  # the walk lets it through
    assert policy.suspect(b'{"a": "\\b"}', is_json=True)  # short escapes: \b, \f
    assert policy.suspect(b'{"a": "\\f"}', is_json=True)
    assert not policy.suspect(b"a=b+c&d=%20", is_json=False)
    assert policy.suspect(b"a=%1F", is_json=False) and policy.suspect(b"a=\x02", is_json=False)
    found = policy.inspect({"a": "x\ny", "b": ["\tz"]})
    assert not found.errors and not found.cleaned


def test_at_most_ten_name_errors_and_labels_are_bounded() -> None:
    found = policy.inspect({f"k{i}\x00" + "y" * 200: 1 for i in range(30)})
    assert len(found.errors) == policy.MAX_KEY_ERRORS
    assert all(len(e.field) <= 60 and "\x00" not in e.field for e in found.errors)


def test_storable_replaces_nul_only() -> None:
    assert policy.storable({"a\x00": ["b\x00", 1, {"c": "\x01"}], "t": None}) == {
        "a\ufffd": ["b\ufffd", 1, {"c": "\x01"}],
        "t": None,
    }
    assert policy.storable("x\x00y") == "x\ufffdy"


def test_headers_in_ascii_or_utf8_are_left_alone() -> None:
    # (Bytes that are not UTF-8 need a real socket: tests/integration/test_hostile_input.py.)
    for value in ("curl/8", "Caf\xe9Client"):
        request = make_mocked_request("POST", "/", headers=CIMultiDict({"User-Agent": value}))
        assert policy.latin1_headers(request) is request


# --- recording a rejection ---------------------------------------------------------------


class RefusingRepository(FakeRepository):
    """Refuses a rejection row with a payload the way Postgres refuses what it cannot hold."""

    def __init__(self, *, always: bool = False) -> None:
        super().__init__()
        self.always = always
        self.attempts = 0

    async def insert_rejected(self, event: LeadRejected, **kw: Any) -> None:
        self.attempts += 1
        if self.always or event.request.payload is not None:
            raise asyncpg.exceptions.CharacterNotInRepertoireError("invalid byte sequence")
        await super().insert_rejected(event, **kw)


def _count(metric: Any, target: str) -> float:
    return float(metric.labels(target)._value.get())


async def test_a_data_error_is_permanent_recorded_without_the_payload_at_once() -> None:
    gw = Gateway(rejection_retry_s=900)
    refusing = RefusingRepository()
    refusing.webhooks = gw.repo.webhooks
    gw.deps.connected(refusing)
    dropped = _count(PAYLOAD_DROPPED, "database")
    started = time.monotonic()
    status, answer = await gw.post(gw.webhook(), orjson.dumps({"firstname": "no contact"}))
    assert status == 400
    await gw.deps.background.drain(10)
    assert time.monotonic() - started < 5, "not retried for the retry window"
    request_id = Rejected.model_validate_json(answer).request_id
    assert refusing.attempts == 2
    assert refusing.rows[request_id]["result"]["request"]["payload"] is None
    assert _count(PAYLOAD_DROPPED, "database") == dropped + 1


async def test_a_record_refused_even_without_payload_is_given_up_with_a_metric() -> None:
    gw = Gateway(rejection_retry_s=900)
    refusing = RefusingRepository(always=True)
    refusing.webhooks = gw.repo.webhooks
    gw.deps.connected(refusing)
    failed = _count(REJECTION_PUBLISH_FAILED, "database")
    status, _ = await gw.post(gw.webhook(), orjson.dumps({"firstname": "no contact"}))
    assert status == 400
    await gw.deps.background.drain(10)
    assert not len(gw.deps.background) and refusing.attempts == 2
    assert _count(REJECTION_PUBLISH_FAILED, "database") == failed + 1
    # The outcome event was published (with its payload): analytics counts it.
    assert len(gw.publisher.on(topics.OUTCOMES)) == 1


# --- the cheap scan misses nothing ------------------------------------------------------

TEXT = st.text(alphabet=st.characters(max_codepoint=0x7F) | st.sampled_from("\u200f😀é"))


def _holds_control(value: Any) -> bool:
    if isinstance(value, str):
        return has_control(value)
    if isinstance(value, dict):
        return any(_holds_control(k) or _holds_control(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_control(v) for v in value)
    return False


@settings(max_examples=300, deadline=None)
@given(
    payload=st.recursive(
        TEXT | st.integers(-(2**63), 2**63 - 1) | st.none(),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
        max_leaves=10,
    )
)
def test_a_body_holding_a_control_character_is_always_suspect(payload: Any) -> None:
    if _holds_control(payload):
        # However the vendor's encoder escapes them (\u0001, \b, \f; ASCII-only or not).
        for body in (orjson.dumps({"p": payload}), json.dumps({"p": payload}).encode()):
            assert policy.suspect(body, is_json=True)
        assert policy.inspect({"p": payload}).errors or policy.inspect({"p": payload}).cleaned


@settings(max_examples=300, deadline=None)
@given(pairs=st.lists(st.tuples(TEXT, TEXT), max_size=5))
def test_a_form_holding_a_control_character_is_always_suspect(pairs: list[tuple[str, str]]) -> None:
    body = urlencode(pairs).encode()
    if any(has_control(k) or has_control(v) for k, v in pairs):
        assert policy.suspect(body, is_json=False)
