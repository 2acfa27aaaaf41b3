"""``leadwire_request_done``: the processor's word to the gateway that a request a client
waits for (``Prefer: wait``) is stored, carrying what the synchronous answer shows, so
the gateway answers without reading the row back.

The payload is ``<request id> <JSON>``: the stored row's ``status`` and ``error`` and the
part of its ``result`` (the outcome event) that the answer reads (:func:`answer_of`).
Postgres refuses a payload of 8,000 bytes or more: an answer that long (a lead with very
many field errors) is sent as the request id alone, and so is every notification from
before this format; for those the gateway reads the row, as it does after a reconnect.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

CHANNEL = "leadwire_request_done"
# Below Postgres' 8,000-byte cap on a notification's payload.
MAX_PAYLOAD_BYTES = 7900
# What services/ingest/responses.py (``outcome_body``) reads of a stored result.
RESULT_FIELDS = ("status", "is_new_contact", "match_type", "rule_applied", "error", "errors")


def answer_of(status: str, result: dict[str, Any], error: dict[str, Any] | None) -> dict[str, Any]:
    """The stored row as the synchronous answer needs it: ``status``, ``error`` and the
    answer's fields of ``result`` (the contact's id, not its data)."""
    kept = {k: result[k] for k in RESULT_FIELDS if k in result}
    contact = result.get("contact")
    if isinstance(contact, dict) and "id" in contact:
        kept["contact"] = {"id": contact["id"]}
    processing = result.get("processing")
    if isinstance(processing, dict) and "duration_ms" in processing:
        kept["processing"] = {"duration_ms": processing["duration_ms"]}
    return {"status": status, "result": kept, "error": error}


def encode(
    request_id: uuid.UUID, status: str, result_json: str, error: dict[str, Any] | None
) -> str:
    """The notification's payload for a request stored with this outcome."""
    answer = answer_of(status, orjson.loads(result_json), error)
    payload = f"{request_id} {orjson.dumps(answer).decode()}"
    return payload if len(payload.encode()) <= MAX_PAYLOAD_BYTES else str(request_id)


def decode(payload: str) -> tuple[uuid.UUID, dict[str, Any] | None]:
    """The request id and the answer's row (None: the id alone, or an answer that does not
    read as one: read the row). Raises ValueError for a payload without a request id."""
    head, _, rest = payload.partition(" ")
    request_id = uuid.UUID(head)
    if not rest:
        return request_id, None
    try:
        row = orjson.loads(rest)
    except orjson.JSONDecodeError:
        return request_id, None
    if (
        not isinstance(row, dict)
        or not isinstance(row.get("status"), str)
        or not isinstance(row.get("result"), dict)
        or not isinstance(row.get("error"), (dict, type(None)))
    ):
        return request_id, None
    return request_id, row
