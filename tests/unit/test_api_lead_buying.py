"""The management API's lead-buying settings of a webhook (GET|PATCH
.../webhooks/{id}/lead-buying) on the in-memory repository."""

from __future__ import annotations

import pytest

from services.api import admin
from services.api.fake_repository import FakeRepository
from services.api.settings import ApiSettings
from tests.support.api import fake_api, make_key

pytestmark = pytest.mark.unit


async def test_read_change_and_refuse() -> None:
    repo = FakeRepository()
    ws = await admin.create_workspace(repo, "acme", "US")
    other = await admin.create_workspace(repo, "globex", "US")
    hook = await admin.create_webhook(
        repo, ws["id"], admin.WebhookSpec(name="fb", template="facebook"), public_url="http://gw"
    )
    manage = await make_key(repo, ws["id"], "manage")
    read = await make_key(repo, ws["id"], "read")
    stranger = await make_key(repo, other["id"], "manage")
    path = f"/v1/workspaces/{ws['id']}/webhooks/{hook['id']}/lead-buying"
    async with fake_api(repo, settings=ApiSettings(public_url="http://gw")) as api:
        body = await api.as_(read).ok("GET", path)
        assert body == {
            "webhook_id": str(hook["id"]),
            "acceptance": {"require": [], "allow": {}, "require_consent": False},
            "duplicate_window_s": None,
            "duplicate_key": ["phone", "email"],
            "has_page_token": False,
        }
        changed = await api.as_(manage).ok(
            "PATCH",
            path,
            {
                "require": ["product"],
                "allow": {"state": ["CA", "NV"]},
                "require_consent": True,
                "duplicate_window_s": 2592000,
                "duplicate_key": ["phone"],
                "facebook_page_token": "EAAGm0PX4ZCps",
            },
        )
        assert changed["acceptance"] == {
            "require": ["product"],
            "allow": {"state": ["CA", "NV"]},
            "require_consent": True,
        }
        assert changed["duplicate_window_s"] == 2592000 and changed["duplicate_key"] == ["phone"]
        assert changed["has_page_token"] is True and "EAAG" not in str(changed)
        assert repo.webhook_rows[hook["id"]]["facebook_page_token"] == "EAAGm0PX4ZCps"

        # Only what is given changes.
        again = await api.as_(manage).ok("PATCH", path, {"require_consent": False})
        assert again["acceptance"]["require"] == ["product"]

        bad = await api.as_(manage).call("PATCH", path, {"duplicate_key": ["zip"]})
        assert bad.status == 400
        bad = await api.as_(manage).call("PATCH", path, {"allow": {"state": []}})
        assert bad.status == 400
        assert (await api.as_(manage).call("PATCH", path, {})).status == 400
        assert (await api.as_(read).call("PATCH", path, {"require": []})).status == 403
        assert (await api.as_(stranger).call("GET", path)).status == 404
