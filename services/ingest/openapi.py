"""The gateway's OpenAPI 3.1 description (kept next to the code it describes; a test runs
schemathesis against it) and a plain HTML page that renders it (no CDN, no scripts)."""

from __future__ import annotations

import html
from typing import Any

import orjson
from aiohttp import web

_UUID = {"type": "string", "format": "uuid"}

_FIELD_ERROR = {
    "type": "object",
    "required": ["field", "code", "message"],
    "properties": {
        "field": {"type": "string"},
        "code": {"type": "string"},
        "message": {"type": "string"},
    },
}

_ERROR = {
    "type": "object",
    "required": ["success", "errors"],
    "properties": {
        "success": {"const": False},
        "errors": {"type": "array", "items": {"$ref": "#/components/schemas/FieldError"}},
        "request_id": _UUID,
        "webhook_id": _UUID,
        "status": {"type": "string"},
    },
}

_ACCEPTED = {
    "type": "object",
    "required": ["success", "request_id", "webhook_id", "status", "status_url"],
    "properties": {
        "success": {"const": True},
        "request_id": _UUID,
        "webhook_id": _UUID,
        "status": {"enum": ["accepted", "duplicate"]},
        "original_status": {"type": "string"},
        "status_url": {"type": "string"},
    },
}

_SYNC = {
    "type": "object",
    "description": "The outcome, when the request asked to wait (Prefer: wait=N) and it came in time.",
    "required": ["success", "request_id", "webhook_id"],
    "properties": {
        "success": {"type": "boolean"},
        "message": {"type": "string"},
        "contact_id": {"type": ["string", "null"]},
        "webhook_id": _UUID,
        "rule_applied": {"type": "boolean"},
        "match_type": {
            "type": ["string", "null"],
            "enum": ["crm_id", "phone", "email", "new", None],
        },
        "is_new_contact": {"type": "boolean"},
        "processing_time": {"type": ["string", "null"], "examples": ["12ms"]},
        "request_id": _UUID,
        "status": {"type": "string"},
    },
}

_FAILED = {
    "type": "object",
    "required": ["success", "request_id", "webhook_id", "status", "error"],
    "properties": {
        "success": {"const": False},
        "request_id": _UUID,
        "webhook_id": _UUID,
        "status": {"type": "string"},
        "original_status": {"type": "string"},
        "error": {
            "type": "object",
            "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
        },
        "errors": {"type": "array", "items": {"$ref": "#/components/schemas/FieldError"}},
    },
}

_STATUS = {
    "type": "object",
    "required": ["request_id", "webhook_id", "status"],
    "properties": {
        "request_id": _UUID,
        "webhook_id": _UUID,
        "status": {"enum": ["accepted", "processed", "failed", "rejected", "duplicate"]},
        "received_at": {"type": ["string", "null"], "format": "date-time"},
        "processed_at": {"type": ["string", "null"], "format": "date-time"},
        "result": {"type": ["object", "null"]},
    },
}


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}


def _resp(
    description: str, ref: str = "Error", headers: dict[str, Any] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "content": _json(ref)}
    if headers:
        out["headers"] = headers
    return out


_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "string"}}}
_WEBHOOK_ID = {
    "name": "webhook_id",
    "in": "path",
    "required": True,
    "description": "The webhook's id (its URL is the address vendors post to).",
    "schema": {"type": "string"},
}

SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "leadwire ingest gateway",
        "version": "1.0.0",
        "description": (
            "Vendors POST leads to a webhook's URL. The gateway authenticates the source, "
            "applies limits, maps and validates the lead, and answers 202 once Kafka holds "
            "it (acks=all), or 200 with the outcome when asked to wait (`Prefer: wait=N`)."
        ),
    },
    "paths": {
        "/webhooks/{webhook_id}": {
            "post": {
                "operationId": "receiveLead",
                "summary": "Deliver a lead",
                "description": (
                    "Authentication follows the webhook's mode: none; Standard Webhooks "
                    "(`webhook-id`, `webhook-timestamp`, `webhook-signature`, 5-minute "
                    "tolerance); GitHub (`X-Hub-Signature-256`); Basic; or an API key header. "
                    "A retry carrying the same idempotency key (`webhook-id`, or the "
                    "webhook's idempotency field in the body) gets the first request's id "
                    "and status `duplicate`; the same key with another body gets 409. "
                    "400 and 409 rejections are recorded (outcome event and status row); "
                    "401/404/408/410/413/415/429/431/503 refusals are only counted."
                ),
                "parameters": [
                    _WEBHOOK_ID,
                    {
                        "name": "Prefer",
                        "in": "header",
                        "required": False,
                        "description": "`wait=N` (N <= 30): wait up to N s for the outcome.",
                        "schema": {"type": "string"},
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"type": "object"},
                            "example": {
                                "firstname": "Benjie",
                                "lastname": "Malinao",
                                "phone_number": "+16266633444",
                                "email": "benjie@example.com",
                                "product": "Bath Remodel",
                            },
                        },
                        "application/x-www-form-urlencoded": {
                            "schema": {"type": "object"},
                            "example": {"first_name": "Ann", "phone": "626-663-3444"},
                        },
                    },
                },
                "responses": {
                    "200": {
                        "description": "The outcome (after Prefer: wait), or a retry of a processed request",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        {"$ref": "#/components/schemas/SyncResult"},
                                        {"$ref": "#/components/schemas/Accepted"},
                                    ]
                                }
                            }
                        },
                    },
                    "202": _resp("Accepted: Kafka holds the lead", "Accepted"),
                    "400": _resp("Invalid body or lead (field errors)"),
                    "401": _resp("Authentication failed"),
                    "404": _resp("No such webhook"),
                    "408": _resp("The body did not arrive in time"),
                    "409": _resp("Idempotency key reused with a different body"),
                    "410": _resp("Webhook or workspace disabled"),
                    "413": _resp("Body too large"),
                    "415": _resp("Unsupported content type"),
                    "422": _resp(
                        "The lead was accepted but processing failed (after Prefer: wait)", "Failed"
                    ),
                    "429": _resp("Rate limited", headers=_RETRY_AFTER),
                    "431": _resp("Header fields too large"),
                    "503": _resp(
                        "Kafka or the config store unreachable; nothing accepted",
                        headers=_RETRY_AFTER,
                    ),
                },
            },
            "get": {
                "operationId": "verifySubscription",
                "summary": "Facebook Lead Ads subscription check",
                "description": "Echoes `hub.challenge` when `hub.verify_token` matches (facebook webhooks).",
                "parameters": [
                    _WEBHOOK_ID,
                    {
                        "name": "hub.mode",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "hub.verify_token",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "hub.challenge",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "The challenge",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    "400": _resp("Missing or invalid parameters"),
                    "403": _resp("Wrong verify token"),
                    "404": _resp("No such facebook webhook"),
                    "410": _resp("Webhook or workspace disabled"),
                    "429": _resp("Rate limited", headers=_RETRY_AFTER),
                    "503": _resp("Config store unreachable", headers=_RETRY_AFTER),
                },
            },
        },
        "/webhooks/{webhook_id}/requests/{request_id}": {
            "get": {
                "operationId": "requestStatus",
                "summary": "Status of a request",
                "description": (
                    "processed, failed, rejected or duplicate once the pipeline stored it; "
                    "accepted while this gateway process remembers accepting it. The result "
                    "is a summary (ids, codes, timings), never the lead's personal data."
                ),
                "parameters": [
                    _WEBHOOK_ID,
                    {
                        "name": "request_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": _resp("The request's status", "RequestStatus"),
                    "404": _resp("Unknown (or not processed yet and accepted elsewhere)"),
                    "429": _resp("Rate limited", headers=_RETRY_AFTER),
                    "503": _resp("Status store unreachable", headers=_RETRY_AFTER),
                },
            }
        },
        "/healthz": {
            "get": {
                "operationId": "health",
                "summary": "Liveness",
                "responses": {
                    "200": {
                        "description": "Alive",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
        "/readyz": {
            "get": {
                "operationId": "ready",
                "summary": "Readiness: Kafka reachable and config store connected",
                "responses": {
                    "200": {
                        "description": "Ready",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "503": {
                        "description": "Not ready",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {
                        "description": "Prometheus text format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
        "/docs": {
            "get": {
                "operationId": "docs",
                "summary": "This document as a web page",
                "responses": {
                    "200": {
                        "description": "HTML",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
    },
    "components": {
        "schemas": {
            "FieldError": _FIELD_ERROR,
            "Error": _ERROR,
            "Accepted": _ACCEPTED,
            "SyncResult": _SYNC,
            "Failed": _FAILED,
            "RequestStatus": _STATUS,
        }
    },
}

_SPEC_BYTES = orjson.dumps(SPEC)


async def spec_handler(_request: web.Request) -> web.Response:
    return web.Response(body=_SPEC_BYTES, content_type="application/json")


def _schema_text(schema: Any) -> str:
    return orjson.dumps(schema, option=orjson.OPT_INDENT_2).decode()


def render_html(spec: dict[str, Any] = SPEC) -> str:
    e = html.escape
    info = spec["info"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{e(info['title'])}</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;"
        "line-height:1.45}code,pre{background:#f4f4f4;padding:.1rem .3rem}pre{padding:.6rem;overflow:auto}"
        "h2{border-top:1px solid #ddd;padding-top:1rem}table{border-collapse:collapse}"
        "td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:left;vertical-align:top}</style>",
        "</head><body>",
        f"<h1>{e(info['title'])} <small>{e(info['version'])}</small></h1>",
        f"<p>{e(info.get('description', ''))}</p>",
        "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a> (OpenAPI 3.1)</p>",
    ]
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            parts.append(
                f"<h2><code>{e(method.upper())} {e(path)}</code> — {e(op.get('summary', ''))}</h2>"
            )
            if op.get("description"):
                parts.append(f"<p>{e(op['description'])}</p>")
            params = op.get("parameters", [])
            if params:
                parts.append(
                    "<table><tr><th>parameter</th><th>in</th><th>required</th><th>description</th></tr>"
                )
                for p in params:
                    parts.append(
                        f"<tr><td><code>{e(p['name'])}</code></td><td>{e(p['in'])}</td>"
                        f"<td>{'yes' if p.get('required') else 'no'}</td><td>{e(p.get('description', ''))}</td></tr>"
                    )
                parts.append("</table>")
            body = op.get("requestBody")
            if body:
                types = ", ".join(e(t) for t in body["content"])
                parts.append(f"<p>Request body: {types}</p>")
            parts.append("<table><tr><th>status</th><th>meaning</th></tr>")
            for code, resp in op["responses"].items():
                parts.append(f"<tr><td>{e(code)}</td><td>{e(resp['description'])}</td></tr>")
            parts.append("</table>")
    parts.append("<h2>Schemas</h2>")
    for name, schema in spec["components"]["schemas"].items():
        parts.append(f"<h3 id='{e(name)}'>{e(name)}</h3><pre>{e(_schema_text(schema))}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


_HTML = render_html()


async def docs_handler(_request: web.Request) -> web.Response:
    return web.Response(text=_HTML, content_type="text/html")
