"""Vendor templates: a mapping plus auth defaults, so a source is set up with one flag.

Field names come from the vendors' public documentation where there is any (see
``docs/templates.md``): LeadConduit's standard fields (``first_name``, ``phone_1``, ...),
Facebook Lead Ads' lead object (``field_data``) and webhook (``entry[].changes[].value``).
QuinStreet and BuyerLink do not publish the format they deliver leads to buyers in (it is
agreed per buyer), so their templates are conservative: common spellings of the contact
fields, everything else kept as custom fields.

Entries are ordered: the first entry that yields a value for a target wins, so aliases
are listed in order of preference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.mapping import Mapping, MappingEntry


@dataclass(frozen=True)
class Template:
    name: str
    description: str
    mapping: Mapping
    auth_mode: str
    idempotency_field: str | None
    example_payload: dict[str, Any]
    content_type: str = "application/json"
    # The public document the field names come from ("" when the format is not public).
    reference: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)


def _e(source: str | None, target: str, transform: str = "direct", **kw: Any) -> MappingEntry:
    return MappingEntry(source=source, target=target, transform=transform, **kw)


def _aliases(target: str, transform: str, *sources: str) -> list[MappingEntry]:
    return [_e(s, target, transform) for s in sources]


def _mapping(*groups: list[MappingEntry] | MappingEntry) -> Mapping:
    entries: list[MappingEntry] = []
    for group in groups:
        entries.extend(group if isinstance(group, list) else [group])
    return Mapping(entries=tuple(entries))


# Consent evidence under the names vendors and form scripts use: TrustedForm's script
# posts xxTrustedFormCertUrl, Jornaya's universal_leadid; LeadConduit's standard fields
# are trustedform_cert_url, leadid_token and tcpa_consent. Typed targets
# (shared.mapping.consent): a value that is not valid evidence is a field error.
_CONSENT = [
    *_aliases(
        "trustedform_cert_url",
        "trim",
        "trustedform_cert_url",
        "xxTrustedFormCertUrl",
        "trusted_form_cert_url",
    ),
    *_aliases("leadid_token", "trim", "leadid_token", "universal_leadid", "jornaya_leadid"),
    *_aliases("tcpa_consent", "direct", "tcpa_consent", "tcpa_opt_in"),
    *_aliases("tcpa_consent_text", "direct", "tcpa_consent_text", "tcpa_language"),
    *_aliases("tcpa_consent_at", "direct", "tcpa_consent_at", "tcpa_consent_timestamp"),
]

_GENERIC = _mapping(
    _aliases("crm_id", "trim", "crm_id", "external_crm_id", "external_id"),
    _aliases("phone", "e164", "phone", "phone_number", "mobile", "mobile_phone", "telephone"),
    _aliases("email", "trim", "email", "email_address"),
    _aliases("first_name", "trim", "first_name", "firstname", "firstName"),
    _aliases("last_name", "trim", "last_name", "lastname", "lastName"),
    _aliases("name", "split_name", "name", "full_name", "fullName"),
    _aliases("product", "trim", "product", "product_interest", "service"),
    _aliases("lead_status", "trim", "lead_status", "status"),
    _CONSENT,
)

GENERIC = Template(
    name="generic",
    description="Your own forms or code: common field names, signed with Standard Webhooks",
    mapping=_GENERIC,
    auth_mode="standard",
    idempotency_field=None,
    example_payload={
        "firstname": "Benjie",
        "lastname": "Malinao",
        "phone_number": "+16266633444",
        "email": "benjie@example.com",
        "external_crm_id": "crm_12345",
        "product": "Bath Remodel",
        "lead_status": "new",
    },
)

LEADCONDUIT = Template(
    name="leadconduit",
    description="ActiveProspect LeadConduit delivery (standard field ids: first_name, phone_1, ...)",
    mapping=_mapping(
        _e("lead.id", "custom.leadconduit_lead_id"),
        _aliases("phone", "e164", "phone_1", "phone_2", "phone_3"),
        _e("email", "email", "trim"),
        _e("first_name", "first_name", "trim"),
        _e("last_name", "last_name", "trim"),
        _aliases("product", "trim", "product", "product_interest"),
        _CONSENT,
        _e(None, "custom.lead_source", "constant", value="leadconduit"),
    ),
    auth_mode="api-key",
    # LeadConduit's own lead id: a redelivery of the same lead carries it again.
    idempotency_field="lead.id",
    example_payload={
        "lead": {"id": "5fd4b3f2e4b0a1c2d3e4f5a6"},
        "first_name": "Benjie",
        "last_name": "Malinao",
        "email": "Benjie@Example.com",
        "phone_1": "(626) 663-3444",
        "address_1": "100 N Lake Ave",
        "city": "Pasadena",
        "state": "CA",
        "postal_code": "91101",
        "product": "Bath Remodel",
        "trustedform_cert_url": "https://cert.trustedform.com/0123456789abcdef0123456789abcdef01234567",
        "leadid_token": "0A1B2C3D-4E5F-6A7B-8C9D-0E1F2A3B4C5D",
        "tcpa_consent": True,
    },
    reference="https://support.activeprospect.com/hc/en-us/articles/38134183226132-Fields",
)

QUINSTREET = Template(
    name="quinstreet",
    description="QuinStreet lead delivery (format agreed per buyer, not public: conservative)",
    mapping=_mapping(
        _aliases(
            "phone",
            "e164",
            "phone",
            "homePhone",
            "primaryPhone",
            "phone_number",
            "workPhone",
            "work_phone",
        ),
        _aliases("email", "trim", "email", "emailAddress", "email_address"),
        _aliases("first_name", "trim", "firstName", "first_name"),
        _aliases("last_name", "trim", "lastName", "last_name"),
        _aliases("product", "trim", "service", "product"),
        _CONSENT,
        _e(None, "custom.lead_source", "constant", value="quinstreet"),
    ),
    auth_mode="basic",
    idempotency_field=None,
    example_payload={
        "leadKey": "QS-20240501-000123",
        "firstName": "Benjie",
        "lastName": "Malinao",
        "email": "benjie@example.com",
        "homePhone": "626.663.3444",
        "address": "100 N Lake Ave",
        "city": "Pasadena",
        "state": "CA",
        "postalCode": "91101",
        "service": "BATHROOM_REMODEL",
        "ownHome": "Yes",
        "bestTimeToCall": "Morning",
    },
    notes=(
        "QuinStreet's buyer delivery format is not public; its public Modernize ping/post "
        "API (for lead sellers) uses camelCase names (postalCode, service, ownHome), so the "
        "template reads those and the snake_case spellings. Check a real delivery and "
        "adjust with `leadwire mapping set`.",
    ),
)

BUYERLINK = Template(
    name="buyerlink",
    description="BuyerLink lead delivery (format not public: conservative)",
    mapping=_mapping(
        _aliases("crm_id", "trim", "crm_id", "external_id"),
        _aliases(
            "phone", "e164", "phone", "phone_number", "primary_phone", "home_phone", "mobile_phone"
        ),
        _aliases("email", "trim", "email", "email_address"),
        _aliases("first_name", "trim", "first_name", "firstName"),
        _aliases("last_name", "trim", "last_name", "lastName"),
        _aliases("name", "split_name", "full_name", "name"),
        _aliases("product", "trim", "service", "product", "category"),
        _CONSENT,
        _e(None, "custom.lead_source", "constant", value="buyerlink"),
    ),
    auth_mode="basic",
    idempotency_field=None,
    example_payload={
        "lead_id": "BL-7734211",
        "first_name": "Benjie",
        "last_name": "Malinao",
        "email": "benjie@example.com",
        "phone": "+1 626-663-3444",
        "address": "100 N Lake Ave",
        "city": "Pasadena",
        "state": "CA",
        "zip": "91101",
        "service": "Bath Remodel",
    },
    notes=(
        "BuyerLink does not publish its delivery format; the template reads the usual "
        "spellings of the contact fields and keeps everything else as custom fields.",
    ),
)


def _field_data(name: str) -> str:
    return f"field_data[name={name}].values.0"


FACEBOOK = Template(
    name="facebook",
    description="Facebook Lead Ads: Facebook's own webhook (leads fetched), or the lead object",
    mapping=_mapping(
        _aliases(
            "custom.leadgen_id", "direct", "id", "leadgen_id", "entry.0.changes.0.value.leadgen_id"
        ),
        _aliases(
            "phone",
            "e164",
            _field_data("phone_number"),
            _field_data("phone"),
            "phone_number",
            "phone",
        ),
        _aliases("email", "trim", _field_data("email"), "email"),
        _aliases("first_name", "trim", _field_data("first_name"), "first_name"),
        _aliases("last_name", "trim", _field_data("last_name"), "last_name"),
        _aliases("name", "split_name", _field_data("full_name"), "full_name"),
        _e(None, "custom.lead_source", "constant", value="facebook"),
    ),
    auth_mode="api-key",
    # The lead object's id is the leadgen id: a redelivery of the same lead carries it again.
    idempotency_field="id",
    example_payload={
        "id": "1234567890123456",
        "created_time": "2024-05-01T12:00:00+0000",
        "ad_id": "23850000000000001",
        "form_id": "987654321098765",
        "field_data": [
            {"name": "full_name", "values": ["Benjie Malinao"]},
            {"name": "email", "values": ["benjie@example.com"]},
            {"name": "phone_number", "values": ["+16266633444"]},
            {"name": "what_service_do_you_need?", "values": ["Bath remodel"]},
        ],
    },
    reference="https://developers.facebook.com/docs/marketing-api/guides/lead-ads/retrieving",
    notes=(
        "Point Facebook at the webhook itself: create it with --app-secret (Facebook's "
        "X-Hub-Signature-256, auth github) and --page-token, and subscribe with its "
        "verify_token. A Graph webhook body (object=page, entry[].changes[].value) carries "
        "ids only: the gateway answers at once and fetches each lead's field_data from the "
        "Graph API (LEADWIRE_FACEBOOK_GRAPH_URL), then maps the lead object with this "
        "mapping; leadgen_id is the idempotency key. A lead object sent by Zapier, Make or "
        "a relay is mapped as it comes.",
    ),
)

ZAPIER = Template(
    name="zapier",
    description="Webhooks by Zapier (POST, form or JSON): common field names",
    mapping=_GENERIC,
    auth_mode="api-key",
    idempotency_field=None,
    example_payload={
        "first_name": "Benjie",
        "last_name": "Malinao",
        "email": "benjie@example.com",
        "phone": "626-663-3444",
        "product": "Bath Remodel",
        "zip": "91101",
    },
    content_type="application/x-www-form-urlencoded",
    reference="https://help.zapier.com/hc/en-us/articles/8496326446989",
    notes=(
        "Webhooks by Zapier sends form fields by default (Payload Type: form); JSON works too.",
    ),
)

TEMPLATES: dict[str, Template] = {
    t.name: t for t in (GENERIC, LEADCONDUIT, QUINSTREET, BUYERLINK, FACEBOOK, ZAPIER)
}


def get_template(name: str) -> Template:
    """The template called ``name``; KeyError naming the valid ones otherwise."""
    try:
        return TEMPLATES[name]
    except KeyError:
        raise KeyError(f"no template named {name!r} (valid: {', '.join(TEMPLATES)})") from None
