"""The analytics API's OpenAPI 3.1 document (schemas generated from :mod:`schemas`)."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic.json_schema import models_json_schema

from services.analytics.schemas import (
    Problem,
    Timeseries,
    WebhookAnalytics,
    WorkspaceAnalytics,
    WorkspaceList,
)


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(name)}}}


_PROBLEMS = {
    "400": _json("Problem", "Malformed id or parameter"),
    "404": _json("Problem", "Unknown webhook or workspace"),
}


def _uuid_param(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string", "format": "uuid"},
    }


@cache
def openapi_document() -> dict[str, Any]:
    _, top = models_json_schema(
        [
            (m, "serialization")
            for m in (WebhookAnalytics, WorkspaceAnalytics, WorkspaceList, Timeseries, Problem)
        ],
        ref_template="#/components/schemas/{model}",
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "leadwire analytics",
            "version": "1",
            "description": (
                "Per-webhook and per-workspace request metrics, counted exactly once from "
                "the outcome topic. Rates are percentages, times milliseconds; percentiles "
                "come from DDSketch within `percentile_relative_accuracy`."
            ),
        },
        "paths": {
            "/analytics/webhooks/{webhook_id}": {
                "get": {
                    "summary": "A webhook's metrics",
                    "operationId": "getWebhookAnalytics",
                    "parameters": [_uuid_param("webhook_id")],
                    "responses": {
                        "200": _json("WebhookAnalytics", "The webhook's metrics"),
                        **_PROBLEMS,
                    },
                }
            },
            "/analytics/webhooks/{webhook_id}/timeseries": {
                "get": {
                    "summary": "A webhook's per-minute buckets over a range",
                    "operationId": "getWebhookTimeseries",
                    "parameters": [
                        _uuid_param("webhook_id"),
                        {
                            "name": "from",
                            "in": "query",
                            "required": False,
                            "description": "ISO 8601 start (default: 60 minutes before `to`)",
                            "schema": {"type": "string", "format": "date-time"},
                        },
                        {
                            "name": "to",
                            "in": "query",
                            "required": False,
                            "description": "ISO 8601 end, inclusive (default: now); at most 7 days after `from`",
                            "schema": {"type": "string", "format": "date-time"},
                        },
                    ],
                    "responses": {
                        "200": _json("Timeseries", "Per-minute buckets, empty minutes included"),
                        **_PROBLEMS,
                    },
                }
            },
            "/analytics/workspaces": {
                "get": {
                    "summary": "Workspaces with their request totals",
                    "operationId": "listWorkspaces",
                    "responses": {
                        "200": _json("WorkspaceList", "Workspaces, most recently active first")
                    },
                }
            },
            "/analytics/workspaces/{workspace_id}": {
                "get": {
                    "summary": "A workspace's metrics and each of its webhooks'",
                    "operationId": "getWorkspaceAnalytics",
                    "parameters": [_uuid_param("workspace_id")],
                    "responses": {
                        "200": _json("WorkspaceAnalytics", "The workspace's metrics"),
                        **_PROBLEMS,
                    },
                }
            },
            "/analytics/workspaces/{workspace_id}/stream": {
                "get": {
                    "summary": "Server-sent events: a `snapshot` event on every change",
                    "operationId": "streamWorkspaceAnalytics",
                    "parameters": [_uuid_param("workspace_id")],
                    "responses": {
                        "200": {
                            "description": (
                                "`event: snapshot` with `data:` a JSON object {generated_at, "
                                "series_start, series_minutes, workspace (WorkspaceAnalytics), "
                                "series {webhook_id: {processed, failed, rejected: [per minute]}}}"
                            ),
                            "content": {"text/event-stream": {"schema": {"type": "string"}}},
                        },
                        **_PROBLEMS,
                    },
                }
            },
        },
        "components": {"schemas": top["$defs"]},
    }
