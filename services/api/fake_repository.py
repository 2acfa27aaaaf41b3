"""An in-memory :class:`~services.api.repository.Repository` for unit tests: the same
rows, orders and refusals as the Postgres one (tests/integration/test_api_repository.py
holds the two to the same answers)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from services.api.errors import Conflict
from services.api.repository import WEBHOOK_COLUMNS, Row, webhook_name_taken
from shared.apikeys import StoredKey

_WEBHOOK_DEFAULTS: Row = {
    "template": "generic",
    "auth_mode": "none",
    "secret": None,
    "basic_username": None,
    "api_key_header": "X-API-Key",
    "rate_limit_per_minute": None,
    "max_body_bytes": None,
    "idempotency_field": None,
    "mapping": [],
    "verify_token": None,
    "status": "active",
    "acceptance": {},
    "duplicate_window_s": None,
    "duplicate_key": ["phone", "email"],
    "facebook_page_token": None,
}


class FakeRepository:
    def __init__(self, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._now = now
        self.workspace_rows: dict[uuid.UUID, Row] = {}
        self.webhook_rows: dict[uuid.UUID, Row] = {}
        self.board_rows: dict[uuid.UUID, Row] = {}
        self.rule_rows: dict[uuid.UUID, Row] = {}
        self.key_rows: dict[uuid.UUID, Row] = {}

    # --- workspaces -------------------------------------------------------------------

    async def insert_workspace(self, ident: uuid.UUID, name: str, region: str) -> Row:
        if any(w["name"] == name for w in self.workspace_rows.values()):
            raise Conflict(f"a workspace named {name!r} already exists", code="name_taken")
        now = self._now()
        row = {
            "id": ident,
            "name": name,
            "default_region": region,
            "status": "active",
            "suppressed_mode": "reject",
            "created_at": now,
            "updated_at": now,
        }
        self.workspace_rows[ident] = row
        return dict(row)

    async def workspaces(self, only: uuid.UUID | None = None) -> list[Row]:
        rows = [w for w in self.workspace_rows.values() if only is None or w["id"] == only]
        return [
            {
                **w,
                "webhooks": sum(h["workspace_id"] == w["id"] for h in self.webhook_rows.values()),
                "boards": sum(b["workspace_id"] == w["id"] for b in self.board_rows.values()),
            }
            for w in sorted(rows, key=lambda w: w["name"])
        ]

    async def workspace(self, ident: uuid.UUID) -> Row | None:
        row = self.workspace_rows.get(ident)
        return dict(row) if row else None

    async def workspace_named(self, name: str) -> Row | None:
        return next((dict(w) for w in self.workspace_rows.values() if w["name"] == name), None)

    async def set_workspace_status(self, ident: uuid.UUID, status: str) -> Row | None:
        row = self.workspace_rows.get(ident)
        if row is None:
            return None
        row.update(status=status, updated_at=self._now())
        return dict(row)

    async def workspace_counts(self, ident: uuid.UUID) -> dict[str, int]:
        def count(rows: dict[uuid.UUID, Row]) -> int:
            return sum(r["workspace_id"] == ident for r in rows.values())

        return {
            "webhooks": count(self.webhook_rows),
            "boards": count(self.board_rows),
            "rules": count(self.rule_rows),
        }

    # --- webhooks ---------------------------------------------------------------------

    def _webhook_view(self, w: Row) -> Row:
        ws = self.workspace_rows[w["workspace_id"]]
        expires: datetime | None = w.get("secret_previous_expires_at")
        if w.get("secret_previous") is None or expires is None or expires <= self._now():
            expires = None
        return {
            "id": w["id"],
            "workspace_id": w["workspace_id"],
            "workspace": ws["name"],
            **{k: w[k] for k in _WEBHOOK_DEFAULTS if k not in ("secret", "facebook_page_token")},
            "has_page_token": w["facebook_page_token"] is not None,
            "name": w["name"],
            "has_secret": w["secret"] is not None,
            "previous_secret_valid_until": expires,
            "created_at": w["created_at"],
            "updated_at": w["updated_at"],
            "workspace_status": ws["status"],
            "default_region": ws["default_region"],
        }

    def _check_name_free(self, workspace_id: uuid.UUID, name: str, ident: uuid.UUID) -> None:
        for other in self.webhook_rows.values():
            if (other["workspace_id"], other["name"]) == (workspace_id, name) and (
                other["id"] != ident
            ):
                raise webhook_name_taken(name)

    async def insert_webhook(self, values: Row) -> Row:
        self._check_name_free(values["workspace_id"], values["name"], values["id"])
        now = self._now()
        row = {**_WEBHOOK_DEFAULTS, "created_at": now, "updated_at": now}
        row.update({k: v for k, v in values.items() if k in WEBHOOK_COLUMNS})
        self.webhook_rows[values["id"]] = row
        return self._webhook_view(row)

    async def webhook(self, ident: uuid.UUID) -> Row | None:
        row = self.webhook_rows.get(ident)
        return self._webhook_view(row) if row else None

    async def webhooks_named(self, name: str, workspace_id: uuid.UUID | None) -> list[Row]:
        rows = [
            self._webhook_view(w)
            for w in self.webhook_rows.values()
            if w["name"] == name and workspace_id in (None, w["workspace_id"])
        ]
        return sorted(rows, key=lambda r: r["workspace"])

    async def webhooks(self, workspace_id: uuid.UUID | None) -> list[Row]:
        rows = [
            self._webhook_view(w)
            for w in self.webhook_rows.values()
            if workspace_id in (None, w["workspace_id"])
        ]
        return sorted(rows, key=lambda r: (r["workspace"], r["name"]))

    async def update_webhook(self, ident: uuid.UUID, changes: Row) -> Row:
        row = self.webhook_rows[ident]
        columns = {k: v for k, v in changes.items() if k in WEBHOOK_COLUMNS}
        if columns:
            if "name" in columns:
                self._check_name_free(row["workspace_id"], columns["name"], ident)
            row.update(columns, updated_at=self._now())
        return self._webhook_view(row)

    async def rotate_secret(
        self, ident: uuid.UUID, *, stored: str, grace: timedelta, basic_username: str | None
    ) -> Row:
        row = self.webhook_rows[ident]
        keep = grace > timedelta(0)
        row["secret_previous_expires_at"] = (
            self._now() + grace if keep and row["secret"] is not None else None
        )
        row["secret_previous"] = row["secret"] if keep else None
        row["secret"] = stored
        row["basic_username"] = basic_username or row["basic_username"]
        row["updated_at"] = self._now()
        return self._webhook_view(row)

    # --- boards and rules -------------------------------------------------------------

    async def insert_board(self, ident: uuid.UUID, workspace_id: uuid.UUID, name: str) -> Row:
        if any(
            (b["workspace_id"], b["name"]) == (workspace_id, name) for b in self.board_rows.values()
        ):
            raise Conflict(f"this workspace already has a board named {name!r}", code="name_taken")
        row = {"id": ident, "workspace_id": workspace_id, "name": name, "created_at": self._now()}
        self.board_rows[ident] = row
        return dict(row)

    async def boards(self, workspace_id: uuid.UUID | None) -> list[Row]:
        rows = [
            {
                "id": b["id"],
                "workspace_id": b["workspace_id"],
                "workspace": self.workspace_rows[b["workspace_id"]]["name"],
                "name": b["name"],
                "created_at": b["created_at"],
                "rules": sum(r["board_id"] == b["id"] for r in self.rule_rows.values()),
            }
            for b in self.board_rows.values()
            if workspace_id in (None, b["workspace_id"])
        ]
        return sorted(rows, key=lambda r: (r["workspace"], r["name"]))

    async def board(self, workspace_id: uuid.UUID, ident: uuid.UUID) -> Row | None:
        row = self.board_rows.get(ident)
        return dict(row) if row and row["workspace_id"] == workspace_id else None

    async def board_named(self, workspace_id: uuid.UUID, name: str) -> Row | None:
        return next(
            (
                dict(b)
                for b in self.board_rows.values()
                if (b["workspace_id"], b["name"]) == (workspace_id, name)
            ),
            None,
        )

    def _rule_view(self, r: Row) -> Row:
        hook = self.webhook_rows.get(r["webhook_id"]) if r["webhook_id"] else None
        return {
            "id": r["id"],
            "workspace_id": r["workspace_id"],
            "workspace": self.workspace_rows[r["workspace_id"]]["name"],
            "board_id": r["board_id"],
            "board": self.board_rows[r["board_id"]]["name"],
            "webhook_id": r["webhook_id"],
            "webhook": hook["name"] if hook else None,
            "conditions": r["conditions"],
            "priority": r["priority"],
            "created_at": r["created_at"],
        }

    async def insert_rule(self, values: Row) -> Row:
        row = {**values, "created_at": self._now()}
        self.rule_rows[values["id"]] = row
        return self._rule_view(row)

    async def rules(self, workspace_id: uuid.UUID | None) -> list[Row]:
        rows = [
            self._rule_view(r)
            for r in self.rule_rows.values()
            if workspace_id in (None, r["workspace_id"])
        ]
        return sorted(
            rows, key=lambda r: (r["workspace"], r["priority"], r["created_at"], str(r["id"]))
        )

    async def rule(self, ident: uuid.UUID) -> Row | None:
        row = self.rule_rows.get(ident)
        return self._rule_view(row) if row else None

    async def delete_rule(self, ident: uuid.UUID) -> None:
        self.rule_rows.pop(ident, None)

    # --- API keys ---------------------------------------------------------------------

    def _key_view(self, k: Row) -> Row:
        ws = self.workspace_rows.get(k["workspace_id"]) if k["workspace_id"] else None
        keys = (
            "id",
            "workspace_id",
            "name",
            "scope",
            "prefix",
            "last4",
            "created_by",
            "created_at",
            "expires_at",
            "revoked_at",
            "last_used_at",
        )
        return {**{key: k[key] for key in keys}, "workspace": ws["name"] if ws else None}

    async def insert_api_key(self, values: Row) -> Row:
        now = self._now()
        expires_in: timedelta | None = values["expires_in"]
        row: dict[str, Any] = {
            **{k: v for k, v in values.items() if k != "expires_in"},
            "created_at": now,
            "expires_at": now + expires_in if expires_in is not None else None,
            "revoked_at": None,
            "last_used_at": None,
        }
        self.key_rows[values["id"]] = row
        return self._key_view(row)

    async def api_keys(
        self, workspace_id: uuid.UUID | None, *, operator_only: bool = False
    ) -> list[Row]:
        rows = [
            self._key_view(k)
            for k in self.key_rows.values()
            if workspace_id in (None, k["workspace_id"])
            and (not operator_only or k["workspace_id"] is None)
        ]
        return sorted(rows, key=lambda r: (r["created_at"], str(r["id"])))

    async def api_key(self, ident: uuid.UUID) -> Row | None:
        row = self.key_rows.get(ident)
        return self._key_view(row) if row else None

    async def revoke_api_key(self, ident: uuid.UUID) -> Row | None:
        row = self.key_rows.get(ident)
        if row is None:
            return None
        if row["revoked_at"] is None:
            row["revoked_at"] = self._now()
        return self._key_view(row)


class FakeKeyStore:
    """:class:`shared.apikeys.KeyStore` over a :class:`FakeRepository`'s key rows."""

    def __init__(self, repo: FakeRepository) -> None:
        self._repo = repo

    async def find(self, digest: bytes) -> StoredKey | None:
        for row in self._repo.key_rows.values():
            if row["key_hash"] == digest:
                ws = (
                    self._repo.workspace_rows.get(row["workspace_id"])
                    if row["workspace_id"]
                    else None
                )
                return StoredKey(
                    id=row["id"],
                    workspace_id=row["workspace_id"],
                    scope=row["scope"],
                    expires_at=row["expires_at"],
                    revoked_at=row["revoked_at"],
                    workspace_active=ws is None or ws["status"] == "active",
                )
        return None

    async def touch(self, key_id: uuid.UUID, at: datetime) -> None:
        self._repo.key_rows[key_id]["last_used_at"] = at
