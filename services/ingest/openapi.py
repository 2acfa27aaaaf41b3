"""The gateway's OpenAPI 3.1 description and a plain HTML page that renders it (no CDN,
no scripts; :func:`shared.openapi.render_html`).

The response bodies' schemas are generated from the models the handlers answer with
(:mod:`services.ingest.bodies`), so they cannot drift from the code; what is written here
is which operation answers which status with which model. A test runs schemathesis
against the document.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from pydantic.json_schema import models_json_schema

from services.ingest.bodies import (
    BODIES,
    Accepted,
    Body,
    Duplicate,
    Error,
    Failed,
    Processed,
    Rejected,
    RequestStatus,
)
from services.ingest.steps import MAX_IDEMPOTENCY_KEY
from shared import openapi

_REF = "#/components/schemas/{model}"


def _schemas() -> dict[str, Any]:
    _, top = models_json_schema([(m, "serialization") for m in BODIES], ref_template=_REF)
    schemas: dict[str, Any] = top["$defs"]
    return schemas


def _json(*models: type[Body]) -> dict[str, Any]:
    refs = [{"$ref": _REF.format(model=m.__name__)} for m in models]
    return {"application/json": {"schema": refs[0] if len(refs) == 1 else {"oneOf": refs}}}


_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "string"}}}


def _resp(description: str, *models: type[Body], retry_after: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "content": _json(*(models or (Error,)))}
    if retry_after:
        out["headers"] = _RETRY_AFTER
    return out


def _plain(description: str, media_type: str = "application/json") -> dict[str, Any]:
    schema = {"type": "object"} if media_type == "application/json" else {"type": "string"}
    return {"description": description, "content": {media_type: {"schema": schema}}}


def _param(name: str, where: str, description: str = "", required: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": name,
        "in": where,
        "required": required,
        "schema": {"type": "string"},
    }
    if description:
        out["description"] = description
    return out


_WEBHOOK_ID = _param(
    "webhook_id", "path", "The webhook's id (its URL is the address vendors post to)."
)

# A vendor's payload as the vendor sends it: the webhook's mapping reads it.
_PAYLOAD = {
    "required": True,
    "description": (
        "The vendor's payload, free-form: any JSON object (nesting and field count bounded) "
        "or form fields. The webhook's mapping turns it into a lead."
    ),
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
}

_RECEIVE = {
    "operationId": "receiveLead",
    "summary": "Deliver a lead",
    "description": (
        "Authentication follows the webhook's mode: none; Standard Webhooks "
        "(`webhook-id`, `webhook-timestamp`, `webhook-signature`, or Svix's `svix-id`, "
        "`svix-timestamp`, `svix-signature`; 5-minute tolerance); GitHub "
        "(`X-Hub-Signature-256`); Basic; or an API key header. "
        "A lead that fails the webhook's acceptance criteria gets 400 with one "
        "`not_accepted` error per failed criterion. Facebook's own Graph webhook "
        "(`object: page`, leadgen changes) on a facebook webhook gets 200 with one "
        "request per change; the leads' fields are fetched afterwards. "
        "A retry carrying the same idempotency key (`webhook-id`, or the "
        "webhook's idempotency field in the body; at most "
        f"{MAX_IDEMPOTENCY_KEY} characters) gets the first request's id "
        "and status `duplicate`; the same key with another body gets 409. "
        "400 and 409 rejections are recorded (outcome event and status row); "
        "401/404/408/410/413/415/429/431/503 refusals are only counted."
    ),
    "parameters": [
        _WEBHOOK_ID,
        _param("Prefer", "header", "`wait=N` (N <= 30): wait up to N s for the outcome.", False),
    ],
    "requestBody": _PAYLOAD,
    "responses": {
        "200": _resp(
            "The outcome (after Prefer: wait), or a retry of a processed request",
            Processed,
            Duplicate,
        ),
        "202": _resp("Accepted: Kafka holds the lead (or a retry of one)", Accepted, Duplicate),
        "400": _resp("Invalid body or lead (field errors)", Rejected, Error),
        "401": _resp("Authentication failed"),
        "404": _resp("No such webhook"),
        "408": _resp("The body did not arrive in time"),
        "409": _resp("Idempotency key reused with a different body", Rejected),
        "410": _resp("Webhook or workspace disabled"),
        "413": _resp("Body too large"),
        "415": _resp("Unsupported content type"),
        "422": _resp("The lead was accepted but processing failed (after Prefer: wait)", Failed),
        "429": _resp("Rate limited", retry_after=True),
        "431": _resp("Header fields too large"),
        "503": _resp("Kafka or the config store unreachable; nothing accepted", retry_after=True),
    },
}

_VERIFY = {
    "operationId": "verifySubscription",
    "summary": "Facebook Lead Ads subscription check",
    "description": "Echoes `hub.challenge` when `hub.verify_token` matches (facebook webhooks).",
    "parameters": [
        _WEBHOOK_ID,
        _param("hub.mode", "query"),
        _param("hub.verify_token", "query"),
        _param("hub.challenge", "query"),
    ],
    "responses": {
        "200": _plain("The challenge", "text/plain"),
        "400": _resp("Missing or invalid parameters"),
        "403": _resp("Wrong verify token"),
        "404": _resp("No such facebook webhook"),
        "410": _resp("Webhook or workspace disabled"),
        "429": _resp("Rate limited", retry_after=True),
        "503": _resp("Config store unreachable", retry_after=True),
    },
}

_STATUS = {
    "operationId": "requestStatus",
    "summary": "Status of a request",
    "description": (
        "processed, failed, rejected or duplicate once the pipeline stored it; "
        "accepted while this gateway process remembers accepting it. The result "
        "is a summary (ids, codes, timings), never the lead's personal data."
    ),
    "parameters": [_WEBHOOK_ID, _param("request_id", "path")],
    "responses": {
        "200": _resp("The request's status", RequestStatus),
        "404": _resp("Unknown (or not processed yet and accepted elsewhere)"),
        "429": _resp("Rate limited", retry_after=True),
        "503": _resp("Status store unreachable", retry_after=True),
    },
}


def _get(operation_id: str, summary: str, responses: dict[str, Any]) -> dict[str, Any]:
    return {"get": {"operationId": operation_id, "summary": summary, "responses": responses}}


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
        "/webhooks/{webhook_id}": {"post": _RECEIVE, "get": _VERIFY},
        "/webhooks/{webhook_id}/requests/{request_id}": {"get": _STATUS},
        "/openapi.json": _get("openapi", "This document", {"200": _plain("OpenAPI 3.1")}),
        "/docs": _get("docs", "This document as a web page", {"200": _plain("HTML", "text/html")}),
    },
    "components": {"schemas": _schemas()},
}

_SPEC_BYTES = orjson.dumps(SPEC)


async def spec_handler(_request: web.Request) -> web.Response:
    return web.Response(body=_SPEC_BYTES, content_type="application/json")


def render_html(spec: dict[str, Any] = SPEC) -> str:
    return openapi.render_html(spec)


_HTML = render_html()


async def docs_handler(_request: web.Request) -> web.Response:
    return web.Response(text=_HTML, content_type="text/html")
