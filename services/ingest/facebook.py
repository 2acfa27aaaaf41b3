"""Facebook Lead Ads as Facebook sends them: the gateway's side of the notification.

Facebook posts ``{"object": "page", "entry": [{"id", "time", "changes": [{"field":
"leadgen", "value": {"leadgen_id", "page_id", "form_id", "ad_id", "created_time"}}]}]}``
signed with ``X-Hub-Signature-256`` (HMAC-SHA256 of the body with the app secret: the
webhook's secret in auth mode ``github``). It carries ids only; the lead's fields must be
fetched from the Graph API with the page's access token.

**Why the fetch is not on the request's path.** Facebook wants a quick 200 and retries a
slow or failed delivery; the Graph API may be slow, rate-limited or down for minutes. So a
notification is taken like any lead (authenticated, parsed), and each ``leadgen`` change
becomes its own request, published to the fetch topic (``<prefix>webhooks.fetch``,
acks=all) before the 200: nothing is acknowledged that is not durable. The gateway's
fetcher (:mod:`services.ingest.fetcher`, a consumer in every gateway worker) fetches the
fields with retries, maps, validates and checks the acceptance criteria, and puts the
lead on the raw topic under the same request id, where the processor takes it as any other.

Identity: ``leadgen_id`` is the idempotency key. A change's request id is
``request_id_for(webhook, leadgen_id)``, so Facebook's redelivery of a notification, or
a lead in two notifications, is one request: the processor keeps one lead per request id.
One entry with several changes makes several leads; changes of other fields are ignored.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import orjson
from aiohttp import web

from services.ingest.deps import Deps
from services.ingest.enqueue import KafkaDown
from services.ingest.intake import Answered, Intake
from services.ingest.responses import refusal
from shared import topics
from shared.events import LeadReceived, MappedLead, RawRequest, encode, request_id_for
from shared.kafka import KafkaUnavailable

SOURCE = "facebook"
MAX_CHANGES = 100
_IDS = ("leadgen_id", "page_id", "form_id", "ad_id", "adgroup_id", "created_time")


def is_notification(template: str, payload: dict[str, Any]) -> bool:
    """A Graph webhook body on a facebook webhook (a lead object, as relays send it, is
    not: it is mapped as it comes)."""
    return template == "facebook" and payload.get("object") == "page" and "entry" in payload


def _id_text(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value).strip()
    return text if text and len(text) <= 64 and text.isascii() and text.isdigit() else None


def leadgen_changes(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``leadgen`` changes' values (ids as text), in order, each leadgen id once."""
    entries = payload.get("entry")
    out: dict[str, dict[str, Any]] = {}
    for entry in entries if isinstance(entries, list) else []:
        changes = entry.get("changes") if isinstance(entry, dict) else None
        for change in changes if isinstance(changes, list) else []:
            if not isinstance(change, dict) or change.get("field") != "leadgen":
                continue
            value = change.get("value")
            if not isinstance(value, dict):
                continue
            leadgen_id = _id_text(value.get("leadgen_id"))
            if leadgen_id is None:
                continue
            kept = {k: value[k] for k in _IDS if k in value and value[k] is not None}
            out.setdefault(leadgen_id, {**kept, "leadgen_id": leadgen_id})
    return list(out.values())


def _event(intake: Intake, value: dict[str, Any]) -> LeadReceived:
    config = intake.config
    key = value["leadgen_id"]
    body = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    return LeadReceived(
        request_id=request_id_for(config.id, key),
        workspace_id=config.workspace_id,
        webhook_id=config.id,
        received_at=intake.received_at,
        idempotency_key=key,
        # The change's own hash: one leadgen id is one body, whichever notification held it.
        body_sha256=hashlib.sha256(body).hexdigest(),
        request=RawRequest(
            method="POST",
            path=intake.request.path,
            headers=intake.headers,
            content_type=intake.content_type,
            payload=value,
        ),
        lead=MappedLead(),
        steps=intake.timings.steps(),
        source=SOURCE,
    )


async def accept(intake: Intake, payload: dict[str, Any], deps: Deps) -> web.Response:
    """Publish each leadgen change to the fetch topic (acks=all), then answer 200 with
    the request ids; 503 when Kafka did not acknowledge them all (Facebook retries, and a
    retry maps to the same request ids)."""
    changes = leadgen_changes(payload)[:MAX_CHANGES]
    events = [_event(intake, value) for value in changes]
    settings = deps.settings
    try:
        await asyncio.gather(
            *(
                deps.kafka.publish(
                    topics.FETCH,
                    encode(event),
                    key=str(intake.config.workspace_id),
                    bound_s=settings.enqueue_timeout_s,
                )
                for event in events
            )
        )
    except (KafkaDown, KafkaUnavailable):
        raise Answered(
            refusal(
                "kafka_unavailable",
                503,
                "unavailable",
                "the leads could not be queued; retry later (a retry never makes a second lead)",
                headers={"Retry-After": str(settings.retry_after_s)},
            )
        ) from None
    answer = {
        "success": True,
        "status": "accepted",
        "webhook_id": str(intake.config.id),
        "requests": [
            {"leadgen_id": e.idempotency_key, "request_id": str(e.request_id)} for e in events
        ],
    }
    return web.Response(body=orjson.dumps(answer), content_type="application/json")


def change_of(event: LeadReceived) -> tuple[str, dict[str, Any]]:
    """The leadgen id and the change's values of a fetch-topic event."""
    value = event.request.payload if isinstance(event.request.payload, dict) else {}
    return str(event.idempotency_key or value.get("leadgen_id") or ""), value
