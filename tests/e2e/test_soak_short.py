"""The soak, short: about a minute of leads from five webhooks while both processors are
killed (kill -9), the Kafka broker restarts and the SMTP server goes away for a while.

It runs a stack of its own (``python -m infra.launch up`` with a unique LEADWIRE_STACK and
its own ports), so it never touches the shared test stack, and stops it at the end (also
when it fails). The account printed is the same as ``make soak``'s; the service logs and
every request's record are kept in ``test-output/soak/``.
"""

from __future__ import annotations

import random
import uuid

import pytest

from bench.soak import run_soak

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SECONDS = 60.0
RATE = 12.0


@pytest.mark.timeout(1200)  # stack start, a minute of load, a generous drain, stack stop
async def test_short_soak_loses_nothing_duplicates_nothing_and_consumers_match() -> None:
    name = f"soak-{uuid.uuid4().hex[:6]}"
    result = await run_soak(
        seconds=SECONDS,
        rate=RATE,
        stack_name=name,
        short=True,
        drain_s=300.0,
        port_base=random.randrange(19000, 21000, 20),
        destroy_after=True,
    )
    print(result.text)
    totals = result.account.totals
    faults = result.meta["fault_records"]
    assert [f["error"] for f in faults] == [None] * len(faults), faults
    assert {"kill -9 both processors", "restart the Kafka broker"} <= {f["name"] for f in faults}
    assert totals["acked"] > 0.8 * totals["sent"] > 0, totals
    assert totals["lost"] == 0, result.text
    assert totals["unseen"] == 0, result.text
    assert totals["dup_leads"] == 0, result.text
    assert totals["dup_contacts"] == 0, result.text
    assert totals["bad_accepted"] == 0, result.text
    assert result.meta["drain"].get("drained"), result.text
    # Every consumer's figures match the database (outcomes, analytics, archive, notifications).
    assert result.account.broken == [], result.text
