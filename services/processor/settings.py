"""Processor settings (env prefix ``LEADWIRE_``), read once in ``__main__``."""

from __future__ import annotations

from pydantic import Field

from shared.settings import CommonSettings


class ProcessorSettings(CommonSettings):
    # Consumer group of the raw topic; every processor replica uses the same one.
    processor_group: str = "leadwire-processor"
    # Most messages handed to one batch (one poll).
    processor_batch_max: int = Field(default=500, ge=1, le=5000)
    # Most leads written in one Postgres transaction; a larger batch is split. Each lead
    # takes up to three advisory locks, so this also bounds locks per transaction.
    processor_tx_max_leads: int = Field(default=500, ge=1)
    # Longest a Kafka fetch waits at the broker while no partition has new data (it answers
    # as soon as one has): the idle polling rate (shared/kafka/consumer.py).
    processor_fetch_max_wait_ms: int = Field(default=500, ge=1, le=500)
    # Immediate attempts of one transaction on a lock conflict (unique violation,
    # serialization failure, deadlock) before the batch goes back to the runner's backoff.
    processor_tx_attempts: int = Field(default=6, ge=1)
