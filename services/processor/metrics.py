"""The processor's Prometheus metrics (consumer lag and batch counts come from the runner:
``leadwire_consumer_lag``, ``leadwire_consumer_batch_size``)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
)

RECEIVED = Counter(
    "leadwire_processor_messages_received_total",
    "Raw messages handed to the processor (a redelivered message counts again)",
)
OUTCOMES = Counter(
    "leadwire_processor_outcomes_total", "Requests finished, by outcome status", ["status"]
)
MATCHES = Counter(
    "leadwire_processor_matches_total",
    "Processed leads by how their contact was found",
    ["match_type"],
)
REPUBLISHED = Counter(
    "leadwire_processor_republished_total",
    "Redelivered requests whose stored outcome was published again",
)
POSSIBLE_DUPLICATES = Counter(
    "leadwire_processor_possible_duplicates_total", "Possible duplicate contact pairs recorded"
)
POISON = Counter(
    "leadwire_processor_poison_total",
    "Messages recorded as failed and dead-lettered",
    ["error_type"],
)
TX_RETRIES = Counter(
    "leadwire_processor_tx_retries_total",
    "Transactions retried after a lock conflict (never surfaced)",
    ["reason"],
)
FALLBACKS = Counter(
    "leadwire_processor_batch_fallbacks_total",
    "Batches re-run one message per transaction after an unwritable message",
)
BATCH_LEADS = Histogram(
    "leadwire_processor_batch_size",
    "Messages per processed batch",
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000),
)
STEP_SECONDS = Histogram(
    "leadwire_processor_step_seconds",
    "Time per processing step of a batch (lookup, rules, write, record, commit, publish, batch)",
    ["step"],
    buckets=_LATENCY_BUCKETS,
)
ACCEPT_TO_COMMIT = Histogram(
    "leadwire_processor_accept_to_commit_seconds",
    "From the gateway accepting a request to its lead being committed",
    buckets=_LATENCY_BUCKETS,
)
