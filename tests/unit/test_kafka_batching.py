"""Produce batching (issue 15): the adaptive linger, the key partitioner, and the aiokafka
internals they rely on (a renamed attribute fails here, not silently in production)."""

from __future__ import annotations

import inspect
import os
from types import SimpleNamespace

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import TopicPartition

from shared.kafka.producer import AdaptiveLinger, KeyPartitioner, Publisher, _set_linger
from shared.settings import CommonSettings

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_lone_send_does_not_linger() -> None:
    clock = Clock()
    linger = AdaptiveLinger(0.004, clock=clock)
    for _ in range(50):
        clock.now += 0.05  # 20 sends per second
        assert linger.next() == 0.0


def test_sends_faster_than_the_bound_wait_a_few_gaps_for_company() -> None:
    clock = Clock()
    linger = AdaptiveLinger(0.004, batch=4, clock=clock)
    waits = []
    for _ in range(200):
        clock.now += 0.0005  # 2,000 sends per second
        waits.append(linger.next())
    assert waits[-1] == pytest.approx(0.002, rel=0.05)  # 4 gaps of 0.5 ms
    for _ in range(200):
        clock.now += 0.002  # 500 per second: 4 gaps would be 8 ms, capped
        wait = linger.next()
    assert wait == 0.004


def test_the_linger_drops_back_when_sends_thin_out() -> None:
    clock = Clock()
    linger = AdaptiveLinger(0.004, clock=clock)
    for _ in range(200):
        clock.now += 0.0005
        linger.next()
    waits = []
    for _ in range(60):
        clock.now += 0.1
        waits.append(linger.next())
    assert waits[-1] == 0.0


def test_the_key_partitioner_is_the_default_one() -> None:
    cached, default = KeyPartitioner(max_keys=16), DefaultPartitioner()
    for n in range(500):
        key = os.urandom(n % 40 + 1)
        for partitions in ([0], [0, 1, 2, 3], list(range(12))):
            expected = default(key, partitions, partitions)
            assert cached(key, partitions, partitions) == expected
            assert cached(key, partitions, partitions) == expected  # from the cache
    assert cached(None, [0, 1, 2, 3], [2]) == 2  # no key: an available partition


async def test_the_linger_reaches_the_batches_aiokafka_starts() -> None:
    publisher = Publisher(CommonSettings(kafka_bootstrap="127.0.0.1:1"))
    producer = publisher.producer
    try:
        _set_linger(producer, 0.003)
        accumulator = producer._message_accumulator
        assert accumulator._linger_time == 0.003

        batch = accumulator._append_batch(accumulator.create_builder(), TopicPartition("t", 0))
        assert batch._linger_time == 0.003
        assert isinstance(producer._partitioner, KeyPartitioner)
    finally:
        await producer.stop()


def test_a_consumer_fetches_every_partition_together() -> None:
    """The consumer runner sets aiokafka's prefetch backoff (how long fetched records wait
    to be taken before the node's other partitions are fetched without them); this fails
    if aiokafka stops reading the attribute the runner sets."""
    from aiokafka.consumer.fetcher import Fetcher

    from shared.kafka.consumer import PREFETCH_BACKOFF_S, _fetch_all_partitions_together

    assert inspect.signature(Fetcher).parameters["prefetch_backoff"].default == 0.1
    source = inspect.getsource(Fetcher)
    assert "self._prefetch_backoff = prefetch_backoff" in source
    assert "backoff=self._prefetch_backoff" in source  # each fetched result's backoff
    assert "record.calculate_backoff()" in source  # read before fetching the node again
    consumer = SimpleNamespace(_fetcher=SimpleNamespace(_prefetch_backoff=0.1))
    _fetch_all_partitions_together(consumer)
    assert consumer._fetcher._prefetch_backoff == PREFETCH_BACKOFF_S >= 30
