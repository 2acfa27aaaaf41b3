"""API keys: made, listed and revoked here (for ``leadwire apikey`` and the API's
``/v1/workspaces/{id}/api-keys``); checked by :mod:`shared.apikeys` in every service that
asks for one. A key is shown once, by :func:`create_api_key`; only its sha256 is stored.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from services.api.checks import MAX_KEY_LIFETIME, MAX_NAME
from services.api.errors import Invalid, NotFound
from services.api.repository import Repository, Row
from shared.apikeys import SCOPES, new_key


def key_view(row: Row, now: datetime | None = None) -> Row:
    """What is shown of a key: never the key, only how to recognise it."""
    now = now or datetime.now(UTC)
    if row["revoked_at"] is not None:
        state = "revoked"
    elif row["expires_at"] is not None and row["expires_at"] <= now:
        state = "expired"
    else:
        state = "active"
    return {
        "id": row["id"],
        "workspace_id": row["workspace_id"],
        "workspace": row["workspace"],
        "operator": row["workspace_id"] is None,
        "name": row["name"],
        "scope": row["scope"],
        "key_hint": f"{row['prefix']}...{row['last4']}",
        "state": state,
        "created_by": row["created_by"],
        "created_at": row["created_at"],
        "expires_at": row["expires_at"],
        "revoked_at": row["revoked_at"],
        "last_used_at": row["last_used_at"],
    }


async def create_api_key(
    repo: Repository,
    *,
    workspace_id: uuid.UUID | None,
    scope: str,
    name: str = "",
    expires_in: timedelta | None = None,
    created_by: str = "cli",
) -> Row:
    """Make a key for a workspace, or an operator key (``workspace_id`` None). The answer
    holds ``key``: shown this once (only its sha256 is stored)."""
    if scope not in SCOPES:
        raise Invalid(f"unknown scope {scope!r}", field="scope", hint="read or manage")
    name = name.strip()
    if len(name) > MAX_NAME:
        raise Invalid(f"a key name has at most {MAX_NAME} characters", field="name")
    if expires_in is not None and not timedelta(0) < expires_in <= MAX_KEY_LIFETIME:
        raise Invalid(
            f"a key expires after more than 0 s and at most {MAX_KEY_LIFETIME.days} days",
            field="expires_in",
        )
    made = new_key()
    row = await repo.insert_api_key(
        {
            "id": uuid.uuid4(),
            "workspace_id": workspace_id,
            "name": name,
            "scope": scope,
            "key_hash": made.digest,
            "prefix": made.prefix,
            "last4": made.last4,
            "created_by": created_by,
            "expires_in": expires_in,
        }
    )
    return {**key_view(row), "key": made.key}


async def list_api_keys(
    repo: Repository, workspace_id: uuid.UUID | None, *, operator_only: bool = False
) -> list[Row]:
    return [key_view(r) for r in await repo.api_keys(workspace_id, operator_only=operator_only)]


async def _key_row(repo: Repository, key_id: uuid.UUID, workspace_id: uuid.UUID | None) -> Row:
    row = await repo.api_key(key_id)
    if row is None or (workspace_id is not None and row["workspace_id"] != workspace_id):
        raise NotFound(
            f"no API key with id {key_id}", field="key_id", hint="see `leadwire apikey list`"
        )
    return row


async def get_api_key(
    repo: Repository, key_id: uuid.UUID, workspace_id: uuid.UUID | None = None
) -> Row:
    return key_view(await _key_row(repo, key_id, workspace_id))


async def revoke_api_key(
    repo: Repository, key_id: uuid.UUID, workspace_id: uuid.UUID | None = None
) -> Row:
    """Revoke a key (again: no change); services refuse it within a second."""
    await _key_row(repo, key_id, workspace_id)
    row = await repo.revoke_api_key(key_id)
    assert row is not None
    return key_view(row)
