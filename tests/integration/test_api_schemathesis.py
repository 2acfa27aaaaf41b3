"""schemathesis against the management API's own /openapi.json, with a key: 0 answers
>= 500.

The API runs in this process on real Postgres and S3; schemathesis runs as its CLI in a
subprocess with an operator's manage key (it reaches every route) and, in a second run,
a workspace's read key (every write is a 403 or a 404, never a 500). Path ids are pinned
to real objects of a seeded workspace, an unknown id and a malformed one, so the runs
reach the real reads and writes rather than only 404s.
"""

from __future__ import annotations

import copy
import uuid
from pathlib import Path
from typing import Any

import pytest

from services.api import admin
from services.api.repository import PostgresRepository
from shared.db import connect
from shared.settings import CommonSettings
from tests.support.api import api_settings, make_key, running_api
from tests.support.schemathesis import pin_path_ids, run_schemathesis

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def _seed(database_url: str) -> dict[str, Any]:
    conn = await connect(database_url)
    try:
        repo = PostgresRepository(conn)
        ws = await admin.create_workspace(repo, "acme", "US")
        hook = await admin.create_webhook(
            repo, ws["id"], admin.WebhookSpec(name="form", auth_mode="basic"), public_url="u"
        )
        board = await admin.create_board(repo, ws, "Solar")
        rule = await admin.add_rule(
            repo, ws["id"], board_id=board["id"], webhook_id=None, conditions=[], priority=1
        )
        reader = await admin.create_api_key(repo, workspace_id=ws["id"], scope="read")
        return {
            "workspace_id": ws["id"],
            "webhook_id": hook["id"],
            "rule_id": rule["id"],
            "key_id": reader["id"],
            "read_key": reader["key"],
            "operator_key": await make_key(repo, None, "manage"),
        }
    finally:
        await conn.close()


def _pinned(spec: dict[str, Any], seeded: dict[str, Any]) -> dict[str, Any]:
    pinned = copy.deepcopy(spec)
    unknown, malformed = str(uuid.uuid4()), "not-a-uuid"
    ids = ("workspace_id", "webhook_id", "rule_id", "key_id", "request_id", "contact_id")
    pin_path_ids(
        pinned,
        {
            name: [str(seeded[name]), unknown, malformed]
            if name in seeded
            else [unknown, malformed]
            for name in ids
        },
    )
    pin_path_ids(
        pinned, {"deadletter_id": ["deadletter:0:0", "notifications.deadletter:0:0", malformed]}
    )
    return pinned


async def test_schemathesis_finds_no_server_errors(
    settings: CommonSettings, tmp_path: Path
) -> None:
    seeded = await _seed(settings.database_url)
    async with running_api(api_settings(settings)) as api:
        answer = await api.client(None).get("/openapi.json")
        assert answer.status == 200
        spec = _pinned(answer.body, seeded)
        for key in ("read_key", "operator_key"):
            workdir = tmp_path / key
            workdir.mkdir()
            await run_schemathesis(
                spec,
                api.url,
                workdir,
                max_examples=25,
                headers={"Authorization": f"Bearer {seeded[key]}"},
                workers=1,
            )
