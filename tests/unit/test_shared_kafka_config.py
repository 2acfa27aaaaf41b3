"""D1: the producer is idempotent with acks=all; a test fails if defaults creep back."""

from __future__ import annotations

import pytest

from shared.kafka import Publisher, producer_config
from shared.settings import CommonSettings

pytestmark = pytest.mark.unit


def test_producer_config_is_idempotent_acks_all() -> None:
    config = producer_config(CommonSettings())
    assert config["enable_idempotence"] is True
    assert config["acks"] == "all"


async def test_publisher_builds_an_idempotent_acks_all_producer() -> None:
    publisher = Publisher(CommonSettings())
    producer = publisher.producer
    try:
        # aiokafka keeps acks=all as -1 on its sender; idempotence creates a txn manager.
        assert producer._sender._acks == -1
        assert producer._txn_manager is not None
    finally:
        await producer.client.close()
