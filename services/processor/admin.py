"""What a person asks of the processor's domain: the one module of the processor that the
CLI imports (``leadwire duplicates list``, ``leadwire contacts show``, ``leadwire
suppress``) and the management API calls.

A possible duplicate is a pair of contacts that share a person's keys: a lead's CRM id,
phone or email already belonged to another contact than the one the lead went to. The
processor never merges them by itself; these functions show the pairs to decide on.
"""

from __future__ import annotations

import uuid
from typing import Any

from services.processor import suppressions
from services.processor.repository import Connection, PostgresRepository
from shared.mapping import LEAD_FIELDS

# A contact holds its leads' fields, merged.
CONTACT_FIELDS = (
    "id",
    "workspace_id",
    *LEAD_FIELDS,
    "custom",
    "board_id",
    "board_name",
    "created_at",
    "updated_at",
)


def _contact(row: dict[str, Any], prefix: str) -> dict[str, Any]:
    names = (row[f"{prefix}first_name"], row[f"{prefix}last_name"])
    return {
        "id": row[f"{prefix}id"],
        "crm_id": row[f"{prefix}crm_id"],
        "phone": row[f"{prefix}phone"],
        "email": row[f"{prefix}email"],
        "name": " ".join(p for p in names if p) or None,
    }


async def possible_duplicates(
    conn: Connection, workspace_id: uuid.UUID, *, limit: int = 100
) -> list[dict[str, Any]]:
    """A workspace's pairs of contacts that share a CRM id, phone or email, newest first."""
    rows = await PostgresRepository(conn).possible_duplicates(workspace_id, limit=limit)
    return [
        {
            "pair_id": r["pair_id"],
            "key_type": r["key_type"],
            # The value the lead carried, which stays with the other contact.
            "shared_value": r[f"b_{r['key_type']}"],
            "request_id": r["request_id"],
            "created_at": r["created_at"],
            "contact": _contact(r, "a_"),
            "other_contact": _contact(r, "b_"),
        }
        for r in rows
    ]


async def contact(conn: Connection, contact_id: uuid.UUID) -> dict[str, Any] | None:
    """One contact (keys, fields, board), its latest leads and its possible duplicates;
    None when there is no such contact."""
    detail = await PostgresRepository(conn).contact_detail(contact_id)
    if detail is None:
        return None
    return {
        **{k: detail.contact[k] for k in CONTACT_FIELDS},
        "leads": detail.leads,
        "possible_duplicates": detail.possible_duplicates,
    }


# --- the suppression list (services/processor/suppressions.py) -----------------------

ImportResult = suppressions.ImportResult
suppress = suppressions.add
unsuppress = suppressions.remove
list_suppressions = suppressions.listing
set_suppressed_mode = suppressions.set_mode
