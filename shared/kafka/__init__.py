"""Kafka plumbing (a package: ``producer``, ``admin``, ``consumer``): the one producer configuration, a publisher, and a consumer runner.

Delivery guarantees, stated next to the code that gives them:

- Clients: every producer, consumer and admin client connects as
  :func:`client_config` says (bootstrap servers, SASL/SCRAM, TLS).
- Producer: idempotent, ``acks=all`` (:func:`producer_config`; a test fails if these
  defaults creep back: aiokafka's own defaults are acks=1 without idempotence). Every
  await on Kafka is bounded by ``kafka_timeout_s`` (aiokafka can hang on a dead broker,
  aiokafka#1101), so a caller gets :class:`KafkaUnavailable`, never a hang.
- Consumer runner: at-least-once. Offsets are committed manually, only after the batch
  handler returned; a crash before that redelivers the batch, so **every handler must be
  idempotent**. A message that can never be handled (undecodable, or the handler raises
  :class:`PoisonMessage`) goes to the dead-letter topic with the reason and the runner
  moves on. Any other exception is treated as transient: the batch is retried with
  backoff and nothing is committed until it succeeds. On SIGTERM the runner finishes the
  batch in hand, commits it and stops. On a rebalance it commits what is done before
  giving partitions up (aiokafka#933/#848), and a failed commit is logged, not fatal.
"""

from __future__ import annotations

from shared.kafka.admin import ensure_topics
from shared.kafka.client import client_config
from shared.kafka.consumer import ConsumerRunner
from shared.kafka.errors import KafkaUnavailable
from shared.kafka.messages import (
    BatchHandler,
    Holding,
    Message,
    PoisonMessage,
    first_offsets,
    position_of,
)
from shared.kafka.producer import Publisher, producer_config

__all__ = [
    "BatchHandler",
    "ConsumerRunner",
    "Holding",
    "KafkaUnavailable",
    "Message",
    "PoisonMessage",
    "Publisher",
    "client_config",
    "ensure_topics",
    "first_offsets",
    "position_of",
    "producer_config",
]
