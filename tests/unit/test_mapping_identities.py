"""Spellings of one identity normalize to one value (H5): emails in compatibility forms
(full-width letters) are NFKC-normalized; phones given with an international prefix (``+``,
``00`` anywhere, the region's own such as ``011`` in the US) are the same E.164 number.
And control characters in a mapped value: refused in identity fields, removed elsewhere."""

from __future__ import annotations

from typing import Any

import phonenumbers
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.mapping import compile_mapping, map_and_validate, normalize_email, normalize_phone
from shared.templates import get_template

pytestmark = pytest.mark.unit

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def full_width(text: str) -> str:
    """ASCII letters, digits and punctuation as their full-width forms (U+FF01-U+FF5E)."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def test_a_full_width_email_is_the_ascii_one() -> None:
    ascii_email = normalize_email("benjie@example.com")
    # The issue's own spelling: full-width "benjie", ASCII domain.
    assert normalize_email(full_width("benjie") + "@example.com") == ascii_email
    assert normalize_email(full_width("Benjie@Example.com")) == ascii_email


@FAST
@given(email=st.emails())
def test_every_full_width_spelling_of_an_email_normalizes_alike(email: str) -> None:
    try:
        expected = normalize_email(email)
    except ValueError:
        return
    assert normalize_email(full_width(email)) == expected


@pytest.mark.parametrize(
    ("text", "region"),
    [
        ("0044 20 7946 0958", "US"),
        ("011 44 20 7946 0958", "US"),
        ("0044 20 7946 0958", "GB"),
        ("020 7946 0958", "GB"),
        ("0011 44 20 7946 0958", "AU"),
        ("+44 20 7946 0958", "JP"),
        ("010 44 20 7946 0958", "JP"),
        ("0044 20 7946 0958", ""),
        (
            "\uff10\uff10\uff14\uff14 \uff12\uff10 \uff17\uff19\uff14\uff16 \uff10\uff19\uff15\uff18",
            "US",
        ),
    ],
)
def test_international_prefixes_of_the_region_and_00_are_understood(text: str, region: str) -> None:
    assert normalize_phone(text, region) == "+442079460958"


def test_a_national_number_still_reads_in_the_region() -> None:
    assert normalize_phone("(415) 555-0100", "US") == "+14155550100"
    with pytest.raises(ValueError):
        normalize_phone("0415 555 0100", "US")


REGIONS = ["US", "GB", "JP", "DE", "FR", "AU", "IN", "BR", "CA", "MX"]


@FAST
@given(country=st.sampled_from(REGIONS), workspace=st.sampled_from(REGIONS))
def test_plus_and_00_spell_the_same_number_in_every_workspace(country: str, workspace: str) -> None:
    number = phonenumbers.example_number_for_type(country, phonenumbers.PhoneNumberType.MOBILE)
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(workspace)
    assert number is not None and metadata is not None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    assert normalize_phone(e164, workspace) == e164
    assert normalize_phone("00" + e164[1:], workspace) == e164
    prefix = metadata.preferred_international_prefix or metadata.international_prefix
    if prefix and prefix.isdigit():
        assert normalize_phone(prefix + " " + e164[1:], workspace) == e164


# --- control characters in mapped values ------------------------------------------------

GENERIC = compile_mapping(get_template("generic").mapping)
LEAD = {"phone_number": "+14155550100", "email": "ann@example.com", "crm_id": "A-1"}


def _map(body: dict[str, Any], *, controls: bool = True) -> tuple[Any, list[tuple[str, str]]]:
    lead, errors = map_and_validate(body, GENERIC, default_region="US", controls=controls)
    return lead, [(e.field, e.code) for e in errors]


@pytest.mark.parametrize(("source", "field"), [("phone_number", "phone"), ("email", "email")])
def test_control_characters_in_an_identity_field_are_refused(source: str, field: str) -> None:
    value = LEAD[source]
    _, errors = _map({**LEAD, source: value[:3] + "\x00" + value[3:]})
    assert (field, "control_character") in errors


def test_control_characters_elsewhere_are_removed_tab_cr_lf_kept() -> None:
    lead, errors = _map(
        {**LEAD, "firstname": "Ann\x00", "notes": "a\x1b[31mb\tc\r\n", "x": {"y": ["\x07z"]}}
    )
    assert errors == []
    assert lead.first_name == "Ann"
    assert lead.custom["notes"] == "a[31mb\tc\r\n"
    assert lead.custom["x"] == {"y": ["z"]}


def test_told_the_body_holds_none_the_mapping_does_not_look() -> None:
    lead, _ = _map({**LEAD, "notes": "a\x01"}, controls=False)
    assert lead.custom["notes"] == "a\x01"
