"""Which contact a lead belongs to and what it changes: pure logic, no I/O.

Identity keys, in priority order: CRM id, then phone, then email, each unique per
workspace. A lead goes to the contact owning its highest-priority key; without one it makes
a new contact. The lead then updates the contact with every field it carries (a field it
lacks, or carries blank, is never blanked) and merges its custom fields.

A key is never moved between contacts: when one of the lead's keys already belongs to
*another* contact, that contact keeps it, the lead's contact keeps its own value, and the
pair is reported as a possible duplicate for a person to merge.

A CRM id is never replaced: a contact with another CRM id than the lead's is another
record in the CRM, so a phone or email match to it does not take the lead (the lead goes
to the next key's contact, or a new one, with the CRM id it was sent with) and the shared
phone or email is reported as a possible duplicate. A contact without a CRM id takes the
lead's.

:class:`IdentityIndex` holds the contacts a batch can touch, indexed by key, and is updated
as each lead applies, so the leads of one batch see each other (the second of two leads
with the same phone finds the contact the first one created).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from shared.events import ContactSummary, MappedLead

KeyType = Literal["crm_id", "phone", "email"]
MatchType = Literal["crm_id", "phone", "email", "new"]

KEY_TYPES: tuple[KeyType, ...] = ("crm_id", "phone", "email")
PROFILE_FIELDS = ("first_name", "last_name", "product", "lead_status")


def present(value: Any) -> Any:
    """The value, or None when it is missing or blank (blank never overwrites)."""
    if value is None:
        return None
    if isinstance(value, str) and not value.strip():
        return None
    return value


def identity_keys(lead: MappedLead) -> dict[KeyType, str]:
    """The lead's identity keys that are present, in priority order."""
    keys: dict[KeyType, str] = {}
    for kind in KEY_TYPES:
        value = present(getattr(lead, kind))
        if value is not None:
            keys[kind] = str(value)
    return keys


@dataclass(eq=False)
class ContactState:
    """A contact as the batch sees it; ``original_keys`` are its keys in Postgres."""

    id: uuid.UUID
    workspace_id: uuid.UUID
    crm_id: str | None = None
    phone: str | None = None
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    product: str | None = None
    lead_status: str | None = None
    custom: dict[str, Any] = field(default_factory=dict)
    board_id: uuid.UUID | None = None
    board_name: str | None = None
    is_new: bool = False
    dirty: bool = False
    original_keys: dict[str, str | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.is_new and not self.original_keys:
            self.original_keys = {k: getattr(self, k) for k in KEY_TYPES}

    def key(self, kind: KeyType) -> str | None:
        value: str | None = getattr(self, kind)
        return value

    def cleared_keys(self) -> list[KeyType]:
        """Keys it held in Postgres that now hold another value (or none)."""
        if self.is_new:
            return []
        return [
            k
            for k in KEY_TYPES
            if self.original_keys.get(k) is not None and self.original_keys.get(k) != self.key(k)
        ]

    def summary(self) -> ContactSummary:
        return ContactSummary.model_construct(
            id=self.id,
            crm_id=self.crm_id,
            phone=self.phone,
            email=self.email,
            first_name=self.first_name,
            last_name=self.last_name,
            product=self.product,
            lead_status=self.lead_status,
            board_id=self.board_id,
            board_name=self.board_name,
        )


@dataclass(frozen=True)
class Duplicate:
    """The lead's ``key_type`` value belongs to ``other_contact_id``, not its contact."""

    other_contact_id: uuid.UUID
    key_type: KeyType


@dataclass(frozen=True)
class Decision:
    contact: ContactState
    match_type: MatchType
    is_new_contact: bool
    duplicates: tuple[Duplicate, ...]


def _other_crm_record(contact: ContactState, crm_id: str | None) -> bool:
    """The contact stands for another CRM record than the lead's: a phone or email match
    never replaces a CRM id (the lead keeps its own; the shared key makes a pair)."""
    return crm_id is not None and contact.crm_id is not None and contact.crm_id != crm_id


class IdentityIndex:
    """The batch's contacts by (workspace, key type, value), kept current as leads apply."""

    def __init__(
        self, contacts: Iterable[ContactState] = (), *, new_id: Callable[[], uuid.UUID] = uuid.uuid4
    ) -> None:
        self._owners: dict[tuple[uuid.UUID, str, str], ContactState] = {}
        self._contacts: dict[uuid.UUID, ContactState] = {}
        self._new_id = new_id
        for contact in contacts:
            self._add(contact)

    def _add(self, contact: ContactState) -> None:
        self._contacts[contact.id] = contact
        for kind in KEY_TYPES:
            value = contact.key(kind)
            if value is not None:
                self._owners[(contact.workspace_id, kind, value)] = contact

    def owner(self, workspace_id: uuid.UUID, kind: KeyType, value: str) -> ContactState | None:
        return self._owners.get((workspace_id, kind, value))

    @property
    def contacts(self) -> list[ContactState]:
        return list(self._contacts.values())

    def apply(self, workspace_id: uuid.UUID, lead: MappedLead) -> Decision:
        """Find or create the lead's contact and apply the lead to it."""
        keys = identity_keys(lead)
        target: ContactState | None = None
        match_type: MatchType = "new"
        crm_id = keys.get("crm_id")
        for kind, value in keys.items():
            owner = self.owner(workspace_id, kind, value)
            if owner is not None and not _other_crm_record(owner, crm_id):
                target, match_type = owner, kind
                break
        is_new_contact = target is None
        if target is None:
            target = ContactState(id=self._new_id(), workspace_id=workspace_id, is_new=True)
            self._contacts[target.id] = target
            target.dirty = True

        duplicates: list[Duplicate] = []
        for kind, value in keys.items():
            if target.key(kind) == value:
                continue
            holder = self.owner(workspace_id, kind, value)
            if holder is not None and holder is not target:
                # Never move a key: the other contact keeps it; a person decides on a merge.
                duplicates.append(Duplicate(holder.id, kind))
                continue
            old = target.key(kind)
            if old is not None:
                self._owners.pop((workspace_id, kind, old), None)
            setattr(target, kind, value)
            self._owners[(workspace_id, kind, value)] = target
            target.dirty = True

        for name in PROFILE_FIELDS:
            value = present(getattr(lead, name))
            if value is not None and getattr(target, name) != value:
                setattr(target, name, value)
                target.dirty = True

        for name, value in lead.custom.items():
            if present(value) is None:
                continue
            if target.custom.get(name) != value:
                target.custom[name] = value
                target.dirty = True

        return Decision(
            contact=target,
            match_type=match_type,
            is_new_contact=is_new_contact,
            duplicates=tuple(duplicates),
        )
