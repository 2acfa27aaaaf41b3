"""What the consumer runner does when the group moves partitions (aiokafka's listener).

Revoked: let the batch in hand finish (its handling and commit hold the runner's lock),
commit what is done while the partitions are still ours (aiokafka#933/#848), then give
them up (:meth:`ConsumerRunner.give_up`): a holding handler drops what it holds of them
and the runner forgets their progress, so nothing handled before the rebalance is
committed after it. Whoever gets a partition next, this runner too, starts from its
committed offset.

Assigned: read each partition's committed offset, so lag counts from it at once.

A background task of the membership died (:func:`rejoin_after_task_error`): rejoin.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from shared.logs import get_logger

if TYPE_CHECKING:
    from shared.kafka.consumer import ConsumerRunner

log = get_logger(__name__)


class Rebalance(ConsumerRebalanceListener):
    def __init__(self, runner: ConsumerRunner[Any]) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        runner = self._runner
        try:
            await asyncio.wait_for(runner._lock.acquire(), runner.revoke_wait_s)
        except TimeoutError:
            # The batch keeps what it holds; commits of partitions not ours are skipped.
            log.warning("rebalance_batch_still_running", partitions=len(revoked))
            return
        try:
            await runner._commit_pending()
        finally:
            runner.give_up(revoked)
            runner._lock.release()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("partitions_assigned", count=len(assigned))
        runner = self._runner
        for tp in assigned:
            runner._uncommitted.pop(tp, None)  # fetched before: read again from the commit
            try:
                committed = await asyncio.wait_for(runner.consumer.committed(tp), 5)
            except (TimeoutError, KafkaError):
                continue
            runner._committed[tp] = committed if committed is not None else 0


def rejoin_after_task_error(consumer: AIOKafkaConsumer) -> None:
    """After ``getmany`` raised the error of one of aiokafka's background tasks of the
    group membership (heartbeat, offset refresh), e.g. the RuntimeError uvloop raises for a
    write to a connection closed under a broker failover: that task stays dead, and its
    error comes back at every poll, until the member rejoins the group, which starts the
    tasks again. Ask for the rejoin (the runner's listener sees the revoke and assign)."""
    coordinator = getattr(consumer, "_coordinator", None)
    if coordinator is not None:
        log.warning("kafka_group_rejoin_after_task_error")
        coordinator.request_rejoin()
