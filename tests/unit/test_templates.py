"""Vendor templates: each example payload maps to a valid lead with the expected fields."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest

from shared.mapping import compile_mapping, map_and_validate, parse_form, resolve_path
from shared.secrets import AUTH_MODES
from shared.templates import TEMPLATES, get_template

pytestmark = pytest.mark.unit

EXPECTED: dict[str, dict[str, Any]] = {
    "generic": {
        "crm_id": "crm_12345",
        "phone": "+16266633444",
        "email": "benjie@example.com",
        "first_name": "Benjie",
        "last_name": "Malinao",
        "product": "Bath Remodel",
        "lead_status": "new",
    },
    "leadconduit": {
        "phone": "+16266633444",
        "email": "benjie@example.com",
        "first_name": "Benjie",
        "last_name": "Malinao",
        "product": "Bath Remodel",
        "custom": {
            "postal_code": "91101",
            "lead_source": "leadconduit",
            "leadconduit_lead_id": "5fd4b3f2e4b0a1c2d3e4f5a6",
        },
    },
    "quinstreet": {
        "phone": "+16266633444",
        "email": "benjie@example.com",
        "first_name": "Benjie",
        "last_name": "Malinao",
        "product": "BATHROOM_REMODEL",
        "custom": {
            "postalCode": "91101",
            "leadKey": "QS-20240501-000123",
            "lead_source": "quinstreet",
        },
    },
    "buyerlink": {
        "phone": "+16266633444",
        "email": "benjie@example.com",
        "first_name": "Benjie",
        "last_name": "Malinao",
        "product": "Bath Remodel",
        "custom": {"lead_id": "BL-7734211", "zip": "91101", "lead_source": "buyerlink"},
    },
    "facebook": {
        "phone": "+16266633444",
        "email": "benjie@example.com",
        "first_name": "Benjie",
        "last_name": "Malinao",
        "custom": {
            "leadgen_id": "1234567890123456",
            "form_id": "987654321098765",
            "lead_source": "facebook",
            "field_data": [{"name": "what_service_do_you_need?", "values": ["Bath remodel"]}],
        },
    },
    "zapier": {
        "phone": "+16266633444",
        "email": "benjie@example.com",
        "first_name": "Benjie",
        "last_name": "Malinao",
        "product": "Bath Remodel",
        "custom": {"zip": "91101"},
    },
}


def test_all_templates_are_present() -> None:
    assert set(TEMPLATES) == {
        "generic",
        "leadconduit",
        "quinstreet",
        "buyerlink",
        "facebook",
        "zapier",
    }
    assert set(EXPECTED) == set(TEMPLATES)


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_example_payload_maps_to_a_valid_lead(name: str) -> None:
    template = get_template(name)
    body: Any = template.example_payload
    if template.content_type == "application/x-www-form-urlencoded":
        body = parse_form(urlencode(body).encode())
    lead, errors = map_and_validate(body, compile_mapping(template.mapping), default_region="US")
    assert errors == []
    expected = dict(EXPECTED[name])
    custom = expected.pop("custom", {})
    for field, value in expected.items():
        assert getattr(lead, field) == value, field
    for key, value in custom.items():
        assert lead.custom[key] == value, key


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_template_defaults_are_sound(name: str) -> None:
    template = TEMPLATES[name]
    assert template.name == name
    assert template.auth_mode in AUTH_MODES
    assert template.description
    if template.idempotency_field:
        assert resolve_path(template.example_payload, template.idempotency_field) is not None


def test_get_template_lists_valid_names() -> None:
    with pytest.raises(KeyError, match="generic, leadconduit"):
        get_template("hubspot")


def test_facebook_graph_webhook_maps_ids_but_has_no_contact() -> None:
    """Meta's own webhook carries only ids: mapped honestly, rejected for lack of a contact."""
    body = {
        "object": "page",
        "entry": [
            {
                "id": "112233",
                "time": 1714564800,
                "changes": [
                    {
                        "field": "leadgen",
                        "value": {
                            "leadgen_id": "444555666",
                            "page_id": "112233",
                            "form_id": "777888",
                            "created_time": 1714564800,
                            "ad_id": "999",
                        },
                    }
                ],
            }
        ],
    }
    lead, errors = map_and_validate(
        body, compile_mapping(get_template("facebook").mapping), default_region="US"
    )
    assert lead.custom["leadgen_id"] == "444555666"
    assert [(e.field, e.code) for e in errors] == [("phone", "required")]


def test_facebook_flattened_zapier_shape() -> None:
    body = {
        "id": "1",
        "full_name": "Benjie Malinao",
        "email": "benjie@example.com",
        "phone_number": "6266633444",
    }
    lead, errors = map_and_validate(
        body, compile_mapping(get_template("facebook").mapping), default_region="US"
    )
    assert errors == []
    assert (lead.first_name, lead.last_name, lead.phone) == ("Benjie", "Malinao", "+16266633444")


def test_leadconduit_falls_back_to_phone_2() -> None:
    body = {"email": "a@b.co", "phone_1": "", "phone_2": "(626) 663-3444"}
    lead, errors = map_and_validate(
        body, compile_mapping(get_template("leadconduit").mapping), default_region="US"
    )
    assert (lead.phone, errors) == ("+16266633444", [])
