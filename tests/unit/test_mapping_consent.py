"""Consent evidence targets (shared/mapping/consent.py) through the mapping engine."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from shared.mapping import Mapping, MappingEntry, MappingError, compile_mapping, map_and_validate
from shared.mapping.consent import has_consent
from shared.templates import get_template

pytestmark = pytest.mark.unit

CERT = "https://cert.trustedform.com/0123456789abcdef0123456789abcdef01234567"
TOKEN = "0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d"
MAPPING = compile_mapping(
    Mapping(
        entries=(
            MappingEntry(source="email", target="email"),
            MappingEntry(source="cert", target="trustedform_cert_url"),
            MappingEntry(source="token", target="leadid_token"),
            MappingEntry(source="agreed", target="tcpa_consent"),
            MappingEntry(source="text", target="tcpa_consent_text"),
            MappingEntry(source="at", target="tcpa_consent_at"),
        )
    )
)


def run(**fields: Any) -> tuple[Any, list[tuple[str, str]]]:
    lead, errors = map_and_validate(
        {"email": "a@example.com", **fields}, MAPPING, default_region="US"
    )
    return lead, [(e.field, e.code) for e in errors]


def test_valid_evidence_is_typed() -> None:
    lead, errors = run(cert=CERT, token=TOKEN, agreed="Yes", text=" I  agree ", at=1764522245)
    assert errors == []
    consent = lead.consent
    assert consent.trustedform_cert_url == CERT
    assert consent.leadid_token == TOKEN.upper()
    assert consent.tcpa_consent is True and consent.tcpa_consent_text == "I agree"
    assert consent.tcpa_consent_at == datetime(2025, 11, 30, 17, 4, 5, tzinfo=UTC)
    assert has_consent(consent)


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        ("2026-11-30T17:04:05Z", datetime(2026, 11, 30, 17, 4, 5, tzinfo=UTC)),
        ("2026-11-30 17:04:05", datetime(2026, 11, 30, 17, 4, 5, tzinfo=UTC)),
        ("2026-11-30", datetime(2026, 11, 30, tzinfo=UTC)),
        ("1764522245", datetime(2025, 11, 30, 17, 4, 5, tzinfo=UTC)),
    ],
)
def test_consent_times_as_vendors_send_them(at: str, expected: datetime) -> None:
    lead, errors = run(at=at)
    assert errors == [] and lead.consent.tcpa_consent_at == expected


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"cert": "http://cert.trustedform.com/" + "a" * 40}, "invalid_trustedform_cert_url"),
        ({"cert": "https://cert.trustedform.com/" + "a" * 39}, "invalid_trustedform_cert_url"),
        ({"cert": "https://evil.example/" + "a" * 40}, "invalid_trustedform_cert_url"),
        ({"token": TOKEN[:-1]}, "invalid_leadid_token"),
        ({"token": TOKEN.replace("-", "x")}, "invalid_leadid_token"),
        ({"agreed": "maybe"}, "invalid_type"),
        ({"at": "yesterday"}, "invalid_date"),
        ({"text": "x" * 5001}, "too_long"),
        ({"cert": {"url": CERT}}, "invalid_type"),
    ],
)
def test_invalid_evidence_is_a_field_error_without_the_value(
    fields: dict[str, Any], error: str
) -> None:
    lead, errors = run(**fields)
    assert [code for _, code in errors] == [error]
    assert lead.consent is None


def test_no_evidence_no_consent_and_blank_is_none() -> None:
    lead, errors = run(cert="  ")
    assert errors == [] and lead.consent is None and not has_consent(None)


def test_unknown_targets_still_refused() -> None:
    with pytest.raises(MappingError, match="tcpa_consent"):
        compile_mapping(Mapping(entries=(MappingEntry(source="x", target="consent"),)))


def test_leadconduit_example_carries_its_evidence() -> None:
    template = get_template("leadconduit")
    lead, errors = map_and_validate(
        template.example_payload, compile_mapping(template.mapping), default_region="US"
    )
    assert errors == []
    assert lead.consent is not None and lead.consent.tcpa_consent is True
    assert lead.consent.trustedform_cert_url == CERT
    assert "trustedform_cert_url" not in lead.custom


def test_generic_reads_the_form_scripts_names() -> None:
    template = get_template("generic")
    body = {"email": "a@example.com", "xxTrustedFormCertUrl": CERT, "universal_leadid": TOKEN}
    lead, errors = map_and_validate(body, compile_mapping(template.mapping), default_region="US")
    assert errors == [] and lead.consent is not None
    assert lead.consent.trustedform_cert_url == CERT
    assert lead.consent.leadid_token == TOKEN.upper()
    assert not {"xxTrustedFormCertUrl", "universal_leadid"} & set(lead.custom)
