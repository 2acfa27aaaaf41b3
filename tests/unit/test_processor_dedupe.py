"""Dedupe rules as pure logic: key priority, never moving a key, never blanking a field."""

from __future__ import annotations

import uuid

import pytest

from services.processor.dedupe import ContactState, IdentityIndex, identity_keys
from shared.events import MappedLead

pytestmark = pytest.mark.unit

WS = uuid.uuid4()


def contact(**fields: object) -> ContactState:
    return ContactState(id=uuid.uuid4(), workspace_id=WS, **fields)  # type: ignore[arg-type]


def test_new_contact_takes_every_key() -> None:
    index = IdentityIndex()
    d = index.apply(
        WS, MappedLead(crm_id="c1", phone="+15550000001", email="a@x.io", first_name="Ann")
    )
    assert d.match_type == "new" and d.is_new_contact
    assert (d.contact.crm_id, d.contact.phone, d.contact.email) == ("c1", "+15550000001", "a@x.io")
    assert d.contact.is_new and d.contact.dirty
    assert index.owner(WS, "phone", "+15550000001") is d.contact


@pytest.mark.parametrize(
    ("lead", "expected"),
    [
        (MappedLead(crm_id="c1", phone="+15550000002", email="b@x.io"), "crm_id"),
        (MappedLead(crm_id="zz", phone="+15550000002", email="a@x.io"), "phone"),
        (MappedLead(phone="+15559999999", email="c@x.io"), "email"),
    ],
)
def test_priority_crm_then_phone_then_email(lead: MappedLead, expected: str) -> None:
    by_crm = contact(crm_id="c1")
    by_phone = contact(phone="+15550000002")
    by_email = contact(email="c@x.io")
    index = IdentityIndex([by_crm, by_phone, by_email])
    d = index.apply(WS, lead)
    assert d.match_type == expected
    assert d.contact is {"crm_id": by_crm, "phone": by_phone, "email": by_email}[expected]
    assert not d.is_new_contact


def test_keys_on_two_contacts_go_to_the_higher_priority_one_and_are_not_moved() -> None:
    a = contact(crm_id="c1", phone="+15550000001")
    b = contact(phone="+15550000002", email="b@x.io")
    index = IdentityIndex([a, b])
    d = index.apply(WS, MappedLead(crm_id="c1", phone="+15550000002", email="b@x.io"))
    assert d.contact is a and d.match_type == "crm_id"
    # a keeps its own phone; b keeps the phone and the email the lead also carried.
    assert a.phone == "+15550000001" and a.email is None
    assert b.phone == "+15550000002" and b.email == "b@x.io"
    assert {(x.other_contact_id, x.key_type) for x in d.duplicates} == {
        (b.id, "phone"),
        (b.id, "email"),
    }


def test_free_key_is_added_and_replaces_an_old_value() -> None:
    a = contact(phone="+15550000001", email="old@x.io")
    index = IdentityIndex([a])
    d = index.apply(WS, MappedLead(phone="+15550000001", email="new@x.io"))
    assert d.contact is a and a.email == "new@x.io" and not d.duplicates
    assert index.owner(WS, "email", "old@x.io") is None
    assert index.owner(WS, "email", "new@x.io") is a
    assert a.cleared_keys() == ["email"]


def test_update_never_blanks_and_custom_fields_merge() -> None:
    a = contact(
        phone="+15550000001",
        first_name="Ann",
        last_name="Lee",
        product="Bath",
        custom={"source": "fb", "score": 5},
    )
    index = IdentityIndex([a])
    index.apply(
        WS,
        MappedLead(
            phone="+15550000001",
            first_name="",
            last_name=None,
            product="Kitchen",
            custom={"score": 7, "utm": "x", "empty": ""},
        ),
    )
    assert (a.first_name, a.last_name, a.product) == ("Ann", "Lee", "Kitchen")
    assert a.custom == {"source": "fb", "score": 7, "utm": "x"}


def test_unchanged_contact_is_not_dirty() -> None:
    a = contact(phone="+15550000001", first_name="Ann")
    index = IdentityIndex([a])
    d = index.apply(WS, MappedLead(phone="+15550000001", first_name="Ann"))
    assert d.match_type == "phone" and not a.dirty


def test_leads_in_one_batch_see_each_other() -> None:
    index = IdentityIndex()
    first = index.apply(WS, MappedLead(phone="+15550000001"))
    second = index.apply(WS, MappedLead(phone="+15550000001", email="a@x.io"))
    third = index.apply(WS, MappedLead(email="a@x.io", crm_id="c9"))
    assert first.is_new_contact and not second.is_new_contact and not third.is_new_contact
    assert first.contact is second.contact is third.contact
    assert (second.match_type, third.match_type) == ("phone", "email")
    assert third.contact.crm_id == "c9"
    assert len(index.contacts) == 1


def test_workspaces_are_separate() -> None:
    other_ws = uuid.uuid4()
    index = IdentityIndex([contact(phone="+15550000001")])
    d = index.apply(other_ws, MappedLead(phone="+15550000001"))
    assert d.is_new_contact and d.contact.workspace_id == other_ws


def test_blank_keys_are_not_identities() -> None:
    assert identity_keys(MappedLead(crm_id=" ", phone="", email="a@x.io")) == {"email": "a@x.io"}


def test_key_moving_between_contacts_in_a_batch_is_cleared_first() -> None:
    a = contact(phone="+15550000001", email="a@x.io")
    index = IdentityIndex([a])
    index.apply(WS, MappedLead(email="a@x.io", phone="+15550000002"))  # a changes its phone
    d = index.apply(WS, MappedLead(phone="+15550000001"))  # the old phone is free again
    assert d.is_new_contact and d.contact.phone == "+15550000001"
    assert a.cleared_keys() == ["phone"]
