"""What this process accepted lately: answers vendor retries and status queries without
a database hit. Bounded (least recently used forgotten); per process, not shared."""

from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class AcceptedRequest:
    webhook_id: uuid.UUID
    body_sha256: str
    received_at: datetime


class RecentRequests:
    def __init__(self, max_entries: int = 100_000) -> None:
        self._entries: OrderedDict[uuid.UUID, AcceptedRequest] = OrderedDict()
        self._max = max_entries

    def add(self, request_id: uuid.UUID, entry: AcceptedRequest) -> None:
        self._entries[request_id] = entry
        self._entries.move_to_end(request_id)
        if len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def get(self, request_id: uuid.UUID) -> AcceptedRequest | None:
        return self._entries.get(request_id)
