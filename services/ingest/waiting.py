"""``Prefer: wait=N`` (RFC 7240): after the enqueue, wait up to N seconds for the
processor's result and answer it (200, or 422 for a failed lead) instead of 202.

The waiter is registered before the publish, so the processor's notification
(``leadwire_request_done``, see listener.py) cannot be missed. It carries the answer's
fields of the stored row (shared/done.py), so the waiter answers without a read; one that
does not (the id alone) has the waiter read the row. The table is re-read every
``WAIT_RECHECK_S`` anyway (a reconnect of the listener, a result stored by another worker).
The processor notifies only for requests published as ``awaited``; a keyed retry that waits
for a first request sent without ``Prefer: wait`` gets no notification, so it re-reads the
table every ``DUPLICATE_RECHECK_S`` instead.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from typing import Any

from aiohttp import web

from services.ingest.bodies import Accepted, Duplicate
from services.ingest.deps import Deps
from services.ingest.intake import Intake
from services.ingest.listener import Waiter
from services.ingest.responses import json_response, outcome_body, status_url
from shared.logs import get_logger

log = get_logger(__name__)

FINAL_STATUSES = frozenset({"processed", "failed", "rejected", "duplicate"})
# How often a waiting request re-reads the table even without a notification.
WAIT_RECHECK_S = 2.0
# ... and how often a waiting keyed retry does (its first request may not be awaited).
DUPLICATE_RECHECK_S = 0.2


def wait_preference(value: str | None, max_wait: float) -> float:
    """Seconds asked for by ``Prefer: wait=N`` (RFC 7240), clamped to ``max_wait``; 0: none."""
    if not value:
        return 0.0
    for part in value.split(","):
        token = part.split(";", 1)[0].strip()
        name, _, raw = token.partition("=")
        if name.strip().lower() != "wait":
            continue
        try:
            seconds = float(raw.strip().strip('"'))
        except ValueError:
            return 0.0
        if not math.isfinite(seconds) or seconds <= 0:
            return 0.0
        return min(seconds, max_wait)
    return 0.0


async def wait_for_outcome(
    deps: Deps,
    webhook_id: uuid.UUID,
    request_id: uuid.UUID,
    waiter: Waiter,
    wait_s: float,
    accepted: Accepted | Duplicate,
    *,
    duplicate: bool,
) -> web.Response:
    """200 with the outcome once the processor stored it, or 202 when ``wait_s`` runs out.

    A lead just enqueued (not ``duplicate``) cannot have been stored before its waiter was
    registered: the first read waits for the processor's notification (or the recheck)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    applied = {"Preference-Applied": f"wait={wait_s:g}"}
    read = duplicate
    while True:
        row = None
        if read:
            waiter.clear()
            # The processor's notification carries the stored row's answer (shared/done.py).
            row = waiter.take_row()
        if read and row is None and deps.repo is not None:
            try:
                # Woken together (one processor batch, one burst of notifications), the
                # waiters read their rows in one query.
                row = await deps.lookup.get(request_id)
            except Exception as exc:
                log.warning("outcome_read_failed", error=type(exc).__name__)
        if row is not None and row["status"] in FINAL_STATUSES:
            status, body = outcome_body(
                row, webhook_id=webhook_id, request_id=request_id, duplicate=duplicate
            )
            return json_response(body, status, applied)
        remaining = deadline - loop.time()
        if remaining <= 0:
            return json_response(accepted, 202, applied)
        try:
            recheck = DUPLICATE_RECHECK_S if duplicate else WAIT_RECHECK_S
            await asyncio.wait_for(waiter.wait(), min(remaining, recheck))
        except TimeoutError:
            pass
        read = True


async def answer_duplicate(
    intake: Intake, request_id: uuid.UUID, row: dict[str, Any] | None, deps: Deps
) -> web.Response:
    """A keyed retry of an accepted request: 200 when the first request is stored as
    finished (its outcome with ``Prefer: wait``), else 202 (or wait for its outcome)."""
    webhook_id = intake.config.id
    body = Duplicate(
        success=True,
        request_id=request_id,
        webhook_id=webhook_id,
        status="duplicate",
        original_status=row["status"] if row is not None else "accepted",
        status_url=status_url(deps.settings, webhook_id, request_id),
    )
    if row is not None and row["status"] in FINAL_STATUSES:
        if intake.wait_s:
            status, outcome = outcome_body(
                row, webhook_id=webhook_id, request_id=request_id, duplicate=True
            )
            return json_response(outcome, status)
        return json_response(body, 200)
    if not intake.wait_s:
        return json_response(body, 202)
    waiter = deps.waiters.register(request_id)
    try:
        return await wait_for_outcome(
            deps, webhook_id, request_id, waiter, intake.wait_s, body, duplicate=True
        )
    finally:
        deps.waiters.release(request_id, waiter)
