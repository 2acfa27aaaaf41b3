"""D1: the gateway's producer is idempotent with acks=all. aiokafka's own defaults are
acks=1 without idempotence; this fails if they creep back, in the config or in the
producer object the gateway actually builds."""

from __future__ import annotations

import pytest

from services.ingest.enqueue import KafkaLink
from services.ingest.settings import IngestSettings
from shared.kafka import producer_config

pytestmark = pytest.mark.unit


def test_d1_producer_config_is_idempotent_acks_all() -> None:
    config = producer_config(IngestSettings())
    assert config["enable_idempotence"] is True
    assert config["acks"] == "all"


async def test_d1_the_gateways_producer_object_is_idempotent_acks_all() -> None:
    link = KafkaLink(IngestSettings(kafka_bootstrap="127.0.0.1:1"))
    publisher = link._factory()  # what run() starts; built, never connected here
    producer = publisher.producer
    # acks=all is -1 on the wire; the transaction manager exists only with idempotence.
    assert producer._sender._acks == -1
    assert producer._txn_manager is not None
    await producer.stop()
