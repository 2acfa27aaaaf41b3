"""The management API on the in-memory repository: its document, keys and scopes, 404 for
every other workspace's object, the error shape, and a CRM's calls (webhook, mapping,
boards, rules, keys) answered as the document says."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import jsonschema_rs
import pytest
import schemathesis

from services.api import admin
from services.api.fake_repository import FakeRepository
from services.api.routes import ROUTES, openapi_document, scope_of
from services.api.settings import ApiSettings
from tests.support.api import Client, fake_api, make_key

pytestmark = pytest.mark.unit


@dataclass
class World:
    repo: FakeRepository
    api: Client
    a: dict[str, Any]  # workspace A, its webhook, board, rule and keys
    b: dict[str, Any]
    keys: dict[str, str]


async def _tenant(repo: FakeRepository, name: str) -> dict[str, Any]:
    ws = await admin.create_workspace(repo, name, "US")
    hook = await admin.create_webhook(
        repo, ws["id"], admin.WebhookSpec(name="hook", auth_mode="api-key"), public_url="http://gw"
    )
    board = await admin.create_board(repo, ws, "Solar")
    rule = await admin.add_rule(
        repo, ws["id"], board_id=board["id"], webhook_id=None, conditions=[], priority=1
    )
    key = await admin.create_api_key(repo, workspace_id=ws["id"], scope="read")
    return {
        "workspace_id": ws["id"],
        "webhook_id": hook["id"],
        "board_id": board["id"],
        "rule_id": rule["id"],
        "key_id": key["id"],
        "request_id": uuid.uuid4(),
        "contact_id": uuid.uuid4(),
        "deadletter_id": "deadletter:0:1",
        "name": "generic",
        "event": "lead_created",
        "channel": "email",
    }


@pytest.fixture
async def world() -> AsyncIterator[World]:
    repo = FakeRepository()
    a, b = await _tenant(repo, "acme"), await _tenant(repo, "globex")
    keys = {
        "a_read": await make_key(repo, a["workspace_id"], "read"),
        "a_manage": await make_key(repo, a["workspace_id"], "manage"),
        "b_manage": await make_key(repo, b["workspace_id"], "manage"),
        "operator": await make_key(repo, None, "manage"),
        "operator_read": await make_key(repo, None, "read"),
    }
    async with fake_api(repo, settings=ApiSettings(public_url="http://gw")) as api:
        yield World(repo, api, a, b, keys)


def _path(template: str, ids: dict[str, Any]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: str(ids[m.group(1)]), template)


def _validator(method: str, template: str, status: int) -> Any:
    doc = openapi_document()
    answer = doc["paths"][template][method]["responses"][str(status)]
    schema = answer["content"]["application/json"]["schema"]
    return jsonschema_rs.validator_for({**schema, "components": doc["components"]})


def test_the_document_is_valid_openapi_3_1_and_says_who_may_call() -> None:
    doc = openapi_document()
    assert doc["openapi"] == "3.1.0"
    schemathesis.openapi.from_dict(doc).validate()
    for name, schema in doc["components"]["schemas"].items():
        assert jsonschema_rs.meta.is_valid(schema), name
    for path, ops in doc["paths"].items():
        for op in ops.values():
            assert op["x-leadwire-scope"] in ("read", "manage", "operator"), path
            assert op["security"] == [{"apiKey": []}]
            assert {"401", "503"} <= set(op["responses"]), path
            if "{workspace_id}" in path:
                assert "404" in op["responses"], path


async def test_every_routed_path_is_documented(world: World) -> None:
    from services.api.app import Api, create_app
    from services.api.fake_repository import FakeKeyStore
    from services.api.handlers import Context
    from shared.apikeys import KeyChecker

    app = create_app(
        Api(world.repo, Context(ApiSettings())),
        KeyChecker(FakeKeyStore(world.repo)),
        max_body_bytes=1024,
    )
    routed = {
        (r.method.lower(), r.resource.canonical)
        for r in app.router.routes()
        if r.resource is not None and r.method != "HEAD"
    }
    documented = {(m, p) for p, ops in openapi_document()["paths"].items() for m in ops}
    assert routed - documented == {("get", "/openapi.json"), ("get", "/docs")}
    assert documented <= routed


async def test_no_route_answers_without_a_working_key(world: World) -> None:
    for route in ROUTES:
        path = _path(route.path, world.a)
        for key in (None, "lwk_unknown", "not-bearer"):
            client = world.api.as_(key)
            answer = await client.call(
                route.method.upper(), path, {} if route.method != "get" else None
            )
            assert answer.status == 401, (route.method, path, key, answer.body)
            assert answer.body["success"] is False
            assert answer.body["errors"][0]["field"] == "authorization"
            assert answer.headers["WWW-Authenticate"].startswith("Bearer")


async def test_another_workspaces_objects_answer_404_never_403(world: World) -> None:
    """A's keys, of either scope, on B's paths, and on A's paths with B's ids: 404."""
    mixed = {**world.a, **{k: v for k, v in world.b.items() if k != "workspace_id"}}
    for route in ROUTES:
        if "{workspace_id}" not in route.path:
            continue
        for key in ("a_read", "a_manage"):
            client = world.api.as_(world.keys[key])
            body = None if route.method == "get" else {}
            answer = await client.call(route.method.upper(), _path(route.path, world.b), body)
            assert answer.status == 404, (route.path, key, answer.body)
            ids = set(route.path_params) & {"webhook_id", "rule_id", "key_id"}
            if ids and route.method == "get":
                answer = await client.call("GET", _path(route.path, mixed))
                assert answer.status == 404, (route.path, "B's id under A", answer.body)
    manager = world.api.as_(world.keys["a_manage"])
    hook = _path("/v1/workspaces/{workspace_id}/webhooks/{webhook_id}", mixed)
    writes = [
        ("PATCH", hook, {"name": "mine"}),
        ("POST", f"{hook}/disable", {}),
        ("POST", f"{hook}/rotate-secret", {}),
        ("PUT", f"{hook}/mapping", {"template": "generic"}),
        ("POST", f"{hook}/mapping/test", {"sample": {}}),
        ("POST", f"{hook}/replays", {"since": "1h"}),
        ("DELETE", _path("/v1/workspaces/{workspace_id}/rules/{rule_id}", mixed), None),
        ("DELETE", _path("/v1/workspaces/{workspace_id}/api-keys/{key_id}", mixed), None),
    ]
    for method, path, body in writes:
        answer = await manager.call(method, path, body)
        assert answer.status == 404, (method, path, answer.body)
    unknown = await world.api.as_(world.keys["a_read"]).get(f"/v1/workspaces/{uuid.uuid4()}")
    foreign = await world.api.as_(world.keys["a_read"]).get(
        f"/v1/workspaces/{world.b['workspace_id']}"
    )
    assert unknown.body == foreign.body and unknown.status == foreign.status == 404


async def test_a_read_key_reads_and_may_not_write(world: World) -> None:
    reader = world.api.as_(world.keys["a_read"])
    for route in ROUTES:
        if "{workspace_id}" not in route.path or scope_of(route) == "read":
            continue
        body = None if route.method == "get" else {}
        answer = await reader.call(route.method.upper(), _path(route.path, world.a), body)
        assert answer.status == 403, (route.path, answer.body)
        assert answer.body["errors"][0]["code"] == "forbidden"
    listed = await reader.ok("GET", f"/v1/workspaces/{world.a['workspace_id']}/webhooks")
    assert [h["name"] for h in listed["items"]] == ["hook"]


async def test_scopes_of_workspace_and_operator_keys(world: World) -> None:
    ws = world.a["workspace_id"]
    manager = world.api.as_(world.keys["a_manage"])
    me = await manager.ok("GET", "/v1/whoami")
    assert me["workspace_id"] == str(ws) and me["scope"] == "manage"
    assert [w["name"] for w in (await manager.ok("GET", "/v1/workspaces"))["items"]] == ["acme"]
    made = await manager.call("POST", f"/v1/workspaces/{ws}/api-keys", {"scope": "read"})
    assert made.status == 201 and made.body["key"].startswith("lwk_")
    assert made.body["created_by"] == me["key_id"]
    escalate = await manager.call("POST", f"/v1/workspaces/{ws}/api-keys", {"scope": "manage"})
    assert escalate.status == 403
    assert (await manager.call("POST", "/v1/workspaces", {"name": "new"})).status == 403
    assert (await manager.post(f"/v1/workspaces/{ws}/disable")).status == 403

    operator = world.api.as_(world.keys["operator"])
    everyone = await operator.ok("GET", "/v1/workspaces")
    assert [w["name"] for w in everyone["items"]] == ["acme", "globex"]
    created = await operator.ok("POST", "/v1/workspaces", {"name": "initech"})
    assert created["status"] == "active"
    manage_key = await operator.ok(
        "POST", f"/v1/workspaces/{created['id']}/api-keys", {"scope": "manage"}
    )
    assert manage_key["scope"] == "manage" and manage_key["workspace_id"] == created["id"]
    reader = world.api.as_(world.keys["operator_read"])
    assert (await reader.ok("GET", f"/v1/workspaces/{world.b['workspace_id']}"))["name"] == "globex"
    assert (await reader.post(f"/v1/workspaces/{ws}/webhooks", {"name": "x"})).status == 403


async def test_disabling_a_workspace_stops_its_keys_not_the_operators(world: World) -> None:
    ws = world.b["workspace_id"]
    operator = world.api.as_(world.keys["operator"])
    await operator.ok("POST", f"/v1/workspaces/{ws}/disable")
    refused = await world.api.as_(world.keys["b_manage"]).get("/v1/whoami")
    assert refused.status == 401 and refused.error_codes() == ["workspace_disabled"]
    assert (await operator.ok("GET", f"/v1/workspaces/{ws}"))["status"] == "disabled"
    await operator.ok("POST", f"/v1/workspaces/{ws}/enable")
    assert (await world.api.as_(world.keys["b_manage"]).get("/v1/whoami")).status == 200


async def test_a_crm_manages_its_webhook(world: World) -> None:
    ws = world.a["workspace_id"]
    api = world.api.as_(world.keys["a_manage"])
    base = f"/v1/workspaces/{ws}"
    created = await api.call(
        "POST",
        f"{base}/webhooks",
        {"name": "vendor", "template": "leadconduit", "auth_mode": "basic"},
    )
    assert created.status == 201
    _validator("post", "/v1/workspaces/{workspace_id}/webhooks", 201).validate(created.body)
    hook = created.body
    assert (
        hook["secret"]
        and hook["basic_username"]
        and hook["url"] == f"http://gw/webhooks/{hook['id']}"
    )
    path = f"{base}/webhooks/{hook['id']}"
    shown = await api.ok("GET", path)
    assert "secret" not in shown and shown["has_secret"] is True

    taken = await api.call("PATCH", path, {"name": "hook"})
    assert taken.status == 409 and taken.error_codes() == ["name_taken"]
    updated = await api.ok("PATCH", path, {"rate_limit_per_minute": 600, "idempotency_field": ""})
    assert (updated["rate_limit_per_minute"], updated["idempotency_field"]) == (600, None)
    nothing = await api.call("PATCH", path, {})
    assert nothing.status == 400 and nothing.body["errors"][0]["message"] == "nothing to change"

    rotated = await api.ok("POST", f"{path}/rotate-secret", {"grace_seconds": 60})
    assert rotated["secret"] != hook["secret"] and rotated["previous_secret_valid_until"]
    assert (await api.ok("POST", f"{path}/disable"))["status"] == "disabled"
    assert (await api.ok("POST", f"{path}/enable"))["status"] == "active"

    mapping = {"entries": [{"source": "e", "target": "email"}], "keep_unmapped": False}
    stored = await api.ok("PUT", f"{path}/mapping", {"mapping": mapping})
    entries = [{k: v for k, v in e.items() if v is not None} for e in stored["mapping"]["entries"]]
    assert entries == [{"source": "e", "target": "email", "transform": "direct"}]
    bad = await api.call(
        "PUT", f"{path}/mapping", {"mapping": {"entries": [{"source": "x..y", "target": "phone"}]}}
    )
    assert bad.status == 400 and bad.body["errors"][0]["field"] == "mapping"
    assert "bad source path" in bad.body["errors"][0]["message"]
    tested = await api.ok("POST", f"{path}/mapping/test", {"sample": {"e": "Ann@Example.com"}})
    assert tested["lead"]["email"] == "ann@example.com"
    from_template = await api.ok("PUT", f"{path}/mapping", {"template": "generic"})
    assert len(from_template["mapping"]["entries"]) > 1

    board = await api.ok("POST", f"{base}/boards", {"name": "Roofing"})
    rule = await api.ok(
        "POST",
        f"{base}/rules",
        {
            "board_id": board["id"],
            "webhook_id": hook["id"],
            "conditions": [{"field": "product", "op": "in", "value": ["Roof", "Solar"]}],
            "priority": 5,
        },
    )
    assert rule["board"] == "Roofing" and rule["webhook"] == "vendor"
    foreign = await api.call(
        "POST", f"{base}/rules", {"board_id": board["id"], "webhook_id": str(world.b["webhook_id"])}
    )
    assert foreign.status == 404
    listed = await api.ok("GET", f"{base}/rules")
    assert [r["priority"] for r in listed["items"]] == [1, 5]
    await api.ok("DELETE", f"{base}/rules/{rule['id']}")
    assert (await api.call("DELETE", f"{base}/rules/{rule['id']}")).status == 404


async def test_keys_are_listed_without_the_key_and_revoked(world: World) -> None:
    ws = world.a["workspace_id"]
    api = world.api.as_(world.keys["a_manage"])
    made = await api.ok(
        "POST", f"/v1/workspaces/{ws}/api-keys", {"name": "crm", "expires_in_seconds": 3600}
    )
    listed = await api.ok("GET", f"/v1/workspaces/{ws}/api-keys")
    assert all("key" not in k and k["key_hint"].startswith("lwk_") for k in listed["items"])
    assert made["id"] in [k["id"] for k in listed["items"]] and made["expires_at"]
    assert (await world.api.as_(made["key"]).get("/v1/whoami")).status == 200
    revoked = await api.ok("DELETE", f"/v1/workspaces/{ws}/api-keys/{made['id']}")
    assert revoked["state"] == "revoked"
    gone = await world.api.as_(made["key"]).get("/v1/whoami")
    assert gone.status == 401 and gone.error_codes() == ["revoked_api_key"]


async def test_bad_requests_name_their_fields(world: World) -> None:
    ws = world.a["workspace_id"]
    api = world.api.as_(world.keys["a_manage"])
    base = f"/v1/workspaces/{ws}/webhooks"
    cases: list[tuple[Any, set[str]]] = [
        ({"name": ""}, {"name"}),
        ({"name": "x", "template": "hubspot"}, {"template"}),
        (
            {"name": "x", "rate_limit_per_minute": 0, "max_body_bytes": -1},
            {"rate_limit_per_minute", "max_body_bytes"},
        ),
        ({"name": "x", "api_key_header": "bad header"}, {"api_key_header"}),
        ({"name": "x", "surprise": 1}, {"surprise"}),
        ({"name": "x", "idempotency_field": "a..b"}, {"idempotency_field"}),
        ({"name": "x", "auth_mode": "github", "secret": "short"}, {"secret"}),
        ([], {"body"}),
    ]
    for body, fields in cases:
        answer = await api.call("POST", base, body)
        assert answer.status == 400, (body, answer.body)
        assert answer.body["success"] is False
        assert {e["field"] for e in answer.body["errors"]} == fields, (body, answer.body)
        assert all(set(e) == {"field", "code", "message"} for e in answer.body["errors"])
    broken = await api.call(
        "POST", base, raw=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert broken.status == 400 and broken.body["errors"][0]["code"] == "json_invalid"
    form = await api.call("POST", base, raw=b"name=x", headers={"Content-Type": "text/plain"})
    assert form.status == 415
    huge = await api.call("POST", base, {"name": "x" * 100_000})
    assert huge.status == 413
    nowhere = await api.get("/v1/nothing-here")
    assert nowhere.status == 404 and nowhere.body["success"] is False
    bad_id = await api.get(f"/v1/workspaces/{ws}/webhooks/not-an-id")
    assert bad_id.status == 404
