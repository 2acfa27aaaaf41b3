"""Raw-topic messages in: a :class:`LeadReceived`, or :class:`Undecodable` with what could be
read of it. Decoding never raises, so a message that breaks the schema can still be
recorded as a failed request (when its ids are readable) before it is dead-lettered."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from shared.events import LeadReceived, decode_raw


@dataclass(frozen=True)
class Undecodable:
    """A raw message that is not a valid LeadReceived, with what could be read of it."""

    error: str
    fields: dict[str, Any]

    @property
    def request_id(self) -> uuid.UUID | None:
        """Its request id, when one is readable."""
        return parse_uuid(self.fields.get("request_id"))


Incoming = LeadReceived | Undecodable


def decode_message(data: bytes) -> Incoming:
    """Decode a raw-topic message (the consumer runner's ``decode``)."""
    try:
        return decode_raw(data)
    except ValidationError as exc:
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError:
            parsed = None
        return Undecodable(
            error=schema_error(exc), fields=parsed if isinstance(parsed, dict) else {}
        )


def schema_error(exc: ValidationError) -> str:
    """Where and how the event breaks the schema, never the values (they may be PII)."""
    parts = [
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['type']}"
        for err in exc.errors(include_input=False, include_url=False)[:10]
    ]
    return "schema: " + "; ".join(parts)


def parse_uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except (TypeError, ValueError):
        return None
