"""What this process accepted lately: answers vendor retries and status queries without
a database hit. Bounded (least recently used forgotten); per process, not shared."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class AcceptedRequest:
    webhook_id: uuid.UUID
    body_sha256: str
    received_at: datetime


class RecentRequests:
    def __init__(self, max_entries: int = 100_000) -> None:
        # A dict keeps insertion order: the first key is the oldest.
        self._entries: dict[uuid.UUID, AcceptedRequest] = {}
        self._max = max_entries

    def add(self, request_id: uuid.UUID, entry: AcceptedRequest) -> None:
        entries = self._entries
        if entries.pop(request_id, None) is None and len(entries) >= self._max:
            del entries[next(iter(entries))]
        entries[request_id] = entry

    def get(self, request_id: uuid.UUID) -> AcceptedRequest | None:
        return self._entries.get(request_id)
