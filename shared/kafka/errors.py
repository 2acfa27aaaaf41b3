"""Errors the Kafka plumbing raises."""

from __future__ import annotations


class KafkaUnavailable(Exception):
    """Kafka did not acknowledge within the bound; the caller must not claim success."""
