"""Acceptance criteria (services/ingest/acceptance.py) on plain leads."""

from __future__ import annotations

import pytest

from services.ingest.acceptance import (
    NO_CRITERIA,
    AcceptanceError,
    build,
    check,
    from_stored,
    parse_allow,
)
from shared.events import Consent, MappedLead

pytestmark = pytest.mark.unit

LEAD = MappedLead(email="a@example.com", product="Bath", custom={"state": "CA", "units": 4})


def codes(criteria: object, lead: MappedLead = LEAD) -> list[tuple[str, str]]:
    return [(e.field, e.code) for e in check(criteria, lead)]  # type: ignore[arg-type]


def test_no_criteria_accept_everything() -> None:
    assert check(NO_CRITERIA, MappedLead()) == []
    assert from_stored({}) == (NO_CRITERIA, None)


def test_required_fields_lead_custom_and_consent() -> None:
    criteria = build(["product", "custom.state", "phone", "leadid_token", "units"])
    assert codes(criteria) == [("phone", "not_accepted"), ("leadid_token", "not_accepted")]


def test_allowed_values_fold_case_space_and_numbers() -> None:
    criteria = build(allow=parse_allow(["state= ca ,NV", "units=4,8", "product=bath"]))
    assert codes(criteria) == []
    lead = LEAD.model_copy(update={"custom": {"state": "TX", "units": 4.0}})
    errors = check(criteria, lead)
    assert [(e.field, e.code) for e in errors] == [("state", "not_accepted")]
    assert "TX" not in errors[0].message and "ca, NV" in errors[0].message
    missing = LEAD.model_copy(update={"custom": {"units": 4}})
    assert "is missing" in check(criteria, missing)[0].message


def test_require_consent_wants_evidence_not_a_refusal() -> None:
    criteria = build(require_consent=True)
    assert codes(criteria) == [("consent", "not_accepted")]
    refused = LEAD.model_copy(update={"consent": Consent(tcpa_consent=False)})
    assert codes(criteria, refused) == [("consent", "not_accepted")]
    given = LEAD.model_copy(update={"consent": Consent(tcpa_consent=True)})
    assert codes(criteria, given) == []


def test_stored_round_trip_and_unusable_documents() -> None:
    criteria = build(["product"], {"state": ["CA"]}, require_consent=True)
    assert from_stored(criteria.to_stored()) == (criteria, None)
    assert from_stored({"require": "product"}) == (NO_CRITERIA, "acceptance_invalid")
    assert from_stored({"allow": {"state": "CA"}}) == (NO_CRITERIA, "acceptance_invalid")
    assert from_stored({"require": ["bad name!"]}) == (NO_CRITERIA, "acceptance_invalid")
    assert from_stored([1, 2]) == (NO_CRITERIA, "acceptance_invalid")


@pytest.mark.parametrize("item", ["state", "=CA", "st ate=CA", "state="])
def test_bad_allow_items_are_refused(item: str) -> None:
    with pytest.raises(AcceptanceError):
        build(allow=parse_allow([item]))
