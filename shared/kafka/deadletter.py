"""The dead-letter entry: what a consumer could not handle, why, and how to send it back.

One JSON object per dead letter on ``<prefix>deadletter``, keyed like its source message::

    {"source_topic": "outcomes", "partition": 2, "offset": 1041, "key": "<workspace>",
     "reason": "permanent: CharacterNotInRepertoireError: ...", "reason_code": "permanent",
     "error_class": "CharacterNotInRepertoireError", "group_id": "leadwire-analytics",
     "failed_at": "2026-...", "request_id": "...", "workspace_id": "...", "webhook_id": "...",
     "payload_b64": "<the message's bytes>"}

The ids are read from the payload when it is JSON that carries them (an event), so dead
letters can be counted per webhook; ``payload_b64`` holds the message exactly as it was,
so ``leadwire deadletter retry`` can publish it back to ``source_topic`` unchanged.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

from shared.events import utcnow
from shared.kafka.failures import reason_code

_IDS = ("request_id", "workspace_id", "webhook_id")


def entry(
    *,
    source_topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    payload: bytes,
    reason: str,
    group_id: str,
    error_class: str | None = None,
) -> dict[str, Any]:
    """The dead-letter entry of one message (see the module docstring)."""
    record: dict[str, Any] = {
        "source_topic": source_topic,
        "partition": partition,
        "offset": offset,
        "key": key.decode(errors="replace") if key else None,
        "reason": reason[:2000],
        "reason_code": reason_code(reason),
        "error_class": error_class,
        "group_id": group_id,
        "failed_at": utcnow().isoformat(),
        **ids_of(payload),
        "payload_b64": base64.b64encode(payload).decode(),
    }
    return record


def ids_of(payload: bytes) -> dict[str, str]:
    """The request, workspace and webhook ids of an event payload, where it has them."""
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {k: v for k in _IDS if isinstance(v := value.get(k), str) and len(v) <= 64}


def payload_of(record: dict[str, Any]) -> bytes:
    """The original message bytes of a dead-letter entry."""
    return base64.b64decode(record.get("payload_b64") or b"")
