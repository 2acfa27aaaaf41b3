"""The soak on a three-broker Kafka cluster, short (make soak with KAFKA_BROKERS=3 is the
long one): leads from five webhooks while the broker leading the raw topic's busiest
partition is killed (kill -9) and restarted, then the active controller, then a processor
while its group's partitions move, then two brokers are stopped at once.

It runs a stack of its own (its own name, Kafka, Postgres and S3 ports, three Kafka nodes),
never the shared test stack, and destroys it at the end. The account is make soak's: lost
0, duplicate leads 0, duplicate contacts 0, every consumer matching the database; the
gateway answered no 503 while two brokers were up (after each kill's failover) and no 202
while one was.
"""

from __future__ import annotations

import random
import uuid

import pytest

from bench.soak import run_soak

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.mark.timeout(600)
async def test_a_cluster_loses_nothing_when_brokers_and_processors_die() -> None:
    result = await run_soak(
        seconds=20.0,
        rate=8.0,
        stack_name=f"cluster-{uuid.uuid4().hex[:6]}",
        short=True,
        drain_s=120.0,
        port_base=random.randrange(21000, 23000, 20),
        destroy_after=True,
        brokers=3,
    )
    print(result.text)
    totals = result.account.totals
    faults = result.meta["fault_records"]
    assert [f["error"] for f in faults] == [None] * len(faults), faults
    assert len(faults) == 4, faults
    assert totals["acked"] > 0, totals
    assert totals["lost"] == 0, result.text
    assert totals["dup_leads"] == 0, result.text
    assert totals["dup_contacts"] == 0, result.text
    assert totals["unseen"] == 0, result.text
    windows = result.meta["gateway_windows"]
    assert any("only node 1 up" in w for w in windows), windows
    # Every promise, the gateway's answers in each window included.
    assert result.account.broken == [], result.text
