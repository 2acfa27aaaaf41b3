"""Phone and email normalization."""

from __future__ import annotations

import pytest

from shared.mapping import (
    compile_mapping,
    map_and_validate,
    normalize_email,
    normalize_phone,
    parse_mapping,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "raw",
    [
        "(626) 663-3444",
        "626.663.3444",
        "+1 626-663-3444",
        "16266633444",
        "6266633444",
        "+16266633444",
        " 626 663 3444 ",
        "1-626-663-3444",
    ],
)
def test_us_numbers(raw: str) -> None:
    assert normalize_phone(raw, "US") == "+16266633444"


def test_uk_number_under_a_gb_workspace() -> None:
    assert normalize_phone("020 7946 0958", "GB") == "+442079460958"
    assert normalize_phone("+44 20 7946 0958", "GB") == "+442079460958"


def test_uk_number_under_a_us_workspace_needs_the_country_code() -> None:
    with pytest.raises(ValueError, match="invalid_phone"):
        normalize_phone("020 7946 0958", "US")
    assert normalize_phone("+44 20 7946 0958", "US") == "+442079460958"
    assert normalize_phone("+44 (0)20 7946 0958", "US") == "+442079460958"


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("12", "invalid_phone"),
        ("not a phone", "invalid_phone"),
        ("+1 555 555 0123", "invalid_phone"),  # no such US area code
        ("626-663-344", "invalid_phone"),  # too short
        ("", "required"),
        ("9" * 70, "too_long"),
    ],
)
def test_invalid_numbers(raw: str, code: str) -> None:
    with pytest.raises(ValueError) as info:
        normalize_phone(raw, "US")
    assert str(info.value) == code


def test_non_text_phone() -> None:
    with pytest.raises(ValueError, match="invalid_type"):
        normalize_phone(["626"], "US")  # type: ignore[arg-type]
    assert normalize_phone(16266633444, "US") == "+16266633444"  # type: ignore[arg-type]


def test_unknown_region_still_reads_international_numbers() -> None:
    assert normalize_phone("+16266633444", "ZZ") == "+16266633444"
    with pytest.raises(ValueError):
        normalize_phone("6266633444", "ZZ")


def _map_phone(raw: object, region: str = "US"):
    mapping = compile_mapping(
        parse_mapping([{"source": "p", "target": "phone", "transform": "e164"}])
    )
    return map_and_validate({"p": raw}, mapping, default_region=region)


@pytest.mark.parametrize(
    ("raw", "ext"),
    [
        ("626-663-3444 ext. 12", "12"),
        ("626-663-3444 x12", "12"),
        ("(626) 663-3444 extension 987", "987"),
        ("+1 626 663 3444;ext=5", "5"),
    ],
)
def test_extensions_are_kept_as_a_custom_field(raw: str, ext: str) -> None:
    lead, errors = _map_phone(raw)
    assert errors == []
    assert lead.phone == "+16266633444"
    assert lead.custom["phone_extension"] == ext


def test_mapping_uses_the_workspace_region() -> None:
    lead, errors = _map_phone("020 7946 0958", region="GB")
    assert (lead.phone, errors) == ("+442079460958", [])
    lead, errors = _map_phone("020 7946 0958", region="US")
    assert lead.phone is None
    assert [(e.field, e.code) for e in errors] == [("phone", "invalid_phone")]
    assert "0958" not in errors[0].message


def test_entry_format_overrides_the_workspace_region() -> None:
    mapping = compile_mapping(
        parse_mapping([{"source": "p", "target": "phone", "transform": "e164", "format": "GB"}])
    )
    lead, errors = map_and_validate({"p": "020 7946 0958"}, mapping, default_region="US")
    assert (lead.phone, errors) == ("+442079460958", [])


def test_json_number_phone() -> None:
    lead, errors = _map_phone(16266633444)
    assert (lead.phone, errors) == ("+16266633444", [])
    lead, errors = _map_phone(1.6266633444e10)
    assert (lead.phone, errors) == ("+16266633444", [])
    _, errors = _map_phone(True)
    assert [e.code for e in errors] == ["invalid_type"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("benjie@example.com", "benjie@example.com"),
        ("Benjie@Example.COM", "benjie@example.com"),
        ("  first.last+tag@sub.example.co.uk ", "first.last+tag@sub.example.co.uk"),
    ],
)
def test_valid_emails(raw: str, expected: str) -> None:
    assert normalize_email(raw) == expected


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("not-an-email", "invalid_email"),
        ("a@b", "invalid_email"),
        ("a@@b.com", "invalid_email"),
        ("a b@c.com", "invalid_email"),
        ("", "required"),
        ("a" * 250 + "@b.com", "too_long"),
        (42, "invalid_type"),
    ],
)
def test_invalid_emails(raw: object, code: str) -> None:
    with pytest.raises(ValueError) as info:
        normalize_email(raw)
    assert str(info.value) == code


def test_email_is_checked_without_dns() -> None:
    # A domain that cannot resolve is still well-formed.
    assert (
        normalize_email("lead@no-such-domain-leadwire.example")
        == "lead@no-such-domain-leadwire.example"
    )
