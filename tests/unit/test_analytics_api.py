"""The analytics API on the in-memory repository: its OpenAPI document is valid OpenAPI
3.1, documents every route of the router (and no other), and every answer matches it.
Requests send an operator's key unless a test says otherwise (tests/unit/
test_analytics_access.py holds who may read what)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema_rs
import pytest
import schemathesis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.analytics import handlers
from services.analytics.alerts import Thresholds
from services.analytics.api import Api, create_app, openapi_document
from services.analytics.deadletters import DeadLetterRow
from services.analytics.fake_repository import FakeAnalytics
from services.analytics.queries import ReadConfig
from services.analytics.stream import Hub
from tests.support.analytics import memory_access
from tests.support.events import failed, processed, rejected

pytestmark = pytest.mark.unit

NOW = datetime(2025, 3, 1, 12, 0, 30, tzinfo=UTC)
WS, WH, IDLE = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
CONFIG = handlers.Config(accuracy=0.01, dedupe_days=30, thresholds=Thresholds(10.0, 1000.0, 20, 5))


ACCESS, KEYS = memory_access(lambda: NOW)
OPERATOR = {"Authorization": f"Bearer {KEYS.add(None)}"}


def served_app(repo: FakeAnalytics) -> web.Application:
    """The app as the service serves it on its public port (the ops routes are on the ops
    listener)."""
    return create_app(
        Api(repo=repo, read=ReadConfig(accuracy=0.01), hub=Hub(), clock=lambda: NOW), ACCESS
    )


@pytest.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    repo = FakeAnalytics()
    repo.configure(WS, "Acme Solar", {WH: "LeadConduit", IDLE: "Facebook"})
    at = NOW - timedelta(minutes=2)
    events = [processed(WS, WH, received_at=at, match_type="phone") for _ in range(20)]
    events += [failed(WS, WH, received_at=at) for _ in range(4)] + [
        rejected(WS, WH, received_at=at)
    ]
    await handlers.count_outcomes(events, repo=repo, config=CONFIG, now=NOW)
    for offset in range(3):  # three dead letters of WH's messages
        repo.add_deadletter(
            DeadLetterRow("deadletter", 0, offset, "outcomes", "permanent", "g", WS, WH, NOW)
        )
    async with TestClient(TestServer(served_app(repo)), headers=OPERATOR) as c:
        yield c


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = openapi_document()
    assert doc["openapi"] == "3.1.0"
    schemathesis.openapi.from_dict(doc).validate()  # the OpenAPI 3.1 meta-schema
    for name, schema in doc["components"]["schemas"].items():
        assert jsonschema_rs.meta.is_valid(schema), name  # JSON Schema 2020-12


def test_every_route_of_the_router_is_documented_and_nothing_else() -> None:
    routed = set()
    for resource in served_app(FakeAnalytics()).router.resources():
        info = resource.get_info()
        routed.add(info["prefix"] + "/{filename}" if "prefix" in info else resource.canonical)
    documented = set(openapi_document()["paths"])
    assert routed == documented
    methods = {
        (path, method.lower())
        for resource in served_app(FakeAnalytics()).router.resources()
        for route in resource
        if route.method != "HEAD"
        for path in [resource.canonical if "prefix" not in resource.get_info() else ""]
        for method in [route.method]
        if path
    }
    assert methods == {
        (path, method)
        for path, ops in openapi_document()["paths"].items()
        if path != "/static/{filename}"
        for method in ops
    }


def body_validator(status: int, path: str, media_type: str = "application/json") -> Any:
    doc = openapi_document()
    answer = doc["paths"][path]["get"]["responses"][str(status)]
    schema = answer["content"][media_type]["schema"]
    return jsonschema_rs.validator_for({**schema, "components": doc["components"]})


@pytest.mark.parametrize(
    ("path", "template", "params"),
    [
        (f"/analytics/webhooks/{WH}", "/analytics/webhooks/{webhook_id}", {}),
        (f"/analytics/webhooks/{IDLE}", "/analytics/webhooks/{webhook_id}", {}),
        (
            f"/analytics/webhooks/{WH}/timeseries",
            "/analytics/webhooks/{webhook_id}/timeseries",
            {"from": "2025-03-01T11:50:00Z", "to": "2025-03-01 12:00:00 00:00"},
        ),
        ("/analytics/workspaces", "/analytics/workspaces", {}),
        (f"/analytics/workspaces/{WS}", "/analytics/workspaces/{workspace_id}", {}),
        (f"/analytics/workspaces/{WS}/vendors", "/analytics/workspaces/{workspace_id}/vendors", {}),
    ],
)
async def test_answers_match_the_document(
    client: TestClient[web.Request, web.Application],
    path: str,
    template: str,
    params: dict[str, str],
) -> None:
    resp = await client.get(path, params=params)
    assert resp.status == 200, await resp.text()
    body_validator(200, template).validate(await resp.json())


async def test_figures_come_from_the_repository(
    client: TestClient[web.Request, web.Application],
) -> None:
    body = await (await client.get(f"/analytics/webhooks/{WH}")).json()
    m = body["metrics"]
    assert (m["total_requests"], m["failed_requests"], m["rejected_requests"]) == (25, 4, 1)
    assert m["error_rate"] == 20.0 and m["by_match_type"] == {"phone": 20}
    assert body["name"] == "LeadConduit" and len(body["recent_errors"]) == 5
    assert [a["metric"] for a in body["alerts"] if a["firing"]] == ["error_rate"]
    series = await (await client.get(f"/analytics/webhooks/{WH}/timeseries")).json()
    assert len(series["buckets"]) == 60 and sum(b["requests"] for b in series["buckets"]) == 25
    assert body["deadletters"] == 3
    workspace = await (await client.get(f"/analytics/workspaces/{WS}")).json()
    assert [w["webhook_id"] for w in workspace["webhooks"]] == [str(WH), str(IDLE)]
    assert [w["deadletters"] for w in workspace["webhooks"]] == [3, 0]
    assert workspace["deadletters"] == 3
    listing = await (await client.get("/analytics/workspaces")).json()
    assert listing["workspaces"][0]["total_requests"] == 25


WEBHOOK = "/analytics/webhooks/{webhook_id}"
SERIES = "/analytics/webhooks/{webhook_id}/timeseries"
WORKSPACE = "/analytics/workspaces/{workspace_id}"


@pytest.mark.parametrize(
    ("path", "template", "params", "status", "error"),
    [
        ("/analytics/webhooks/not-a-uuid", WEBHOOK, {}, 400, "invalid webhook_id"),
        (f"/analytics/webhooks/{uuid.uuid4()}", WEBHOOK, {}, 404, "webhook not found"),
        (f"/analytics/workspaces/{uuid.uuid4()}", WORKSPACE, {}, 404, "workspace not found"),
        (
            f"/analytics/webhooks/{WH}/timeseries",
            SERIES,
            {"from": "yesterday"},
            400,
            "invalid from",
        ),
        # Far enough from datetime's limits that no arithmetic overflows (a 400, not a 500).
        (
            f"/analytics/webhooks/{WH}/timeseries",
            SERIES,
            {"to": "0001-01-01T00:00+14:00"},
            400,
            "invalid to",
        ),
        (
            f"/analytics/webhooks/{WH}/timeseries",
            SERIES,
            {"from": "2025-03-01T12:00:00Z", "to": "2025-03-01T11:00:00Z"},
            400,
            "invalid range",
        ),
        (
            f"/analytics/webhooks/{WH}/timeseries",
            SERIES,
            {"from": "2025-02-01T12:00:00Z", "to": "2025-03-01T11:00:00Z"},
            400,
            "range too long",
        ),
        (
            f"/analytics/workspaces/{uuid.uuid4()}/stream",
            WORKSPACE + "/stream",
            {},
            404,
            "workspace not found",
        ),
    ],
)
async def test_problems_match_the_document(
    client: TestClient[web.Request, web.Application],
    path: str,
    template: str,
    params: dict[str, str],
    status: int,
    error: str,
) -> None:
    resp = await client.get(path, params=params)
    assert resp.status == status
    body = await resp.json()
    assert body["error"] == error
    body_validator(status, template).validate(body)


async def test_postgres_away_answers_503_with_retry_after() -> None:
    class Away(FakeAnalytics):
        async def workspaces(self) -> Any:
            raise ConnectionRefusedError("test: Postgres away")

    async with TestClient(TestServer(served_app(Away())), headers=OPERATOR) as c:
        resp = await c.get("/analytics/workspaces")
        assert resp.status == 503 and resp.headers["Retry-After"] == "2"
        body_validator(503, "/analytics/workspaces").validate(await resp.json())


async def test_the_stream_starts_with_a_snapshot(
    client: TestClient[web.Request, web.Application],
) -> None:
    resp = await client.get(f"/analytics/workspaces/{WS}/stream")
    assert resp.status == 200 and resp.content_type == "text/event-stream"
    first = await resp.content.readuntil(b"\n\n")
    assert first.startswith(b"event: snapshot\ndata: {")
    resp.close()


async def test_the_dashboard_and_its_files_are_served(
    client: TestClient[web.Request, web.Application],
) -> None:
    for path in ("/login", "/static/dashboard.js", "/static/dashboard.css"):
        resp = await client.get(path)
        assert resp.status == 200, path
    assert (await client.get("/static/missing.js")).status == 404
    for path in ("/", "/dashboard", f"/dashboard/{WS}"):  # a key is not a session
        resp = await client.get(path)
        assert resp.status == 401 and 'action="/login"' in await resp.text(), path
