"""Processor throughput and latency, next to a naive baseline and the machine's ceiling.

``python -m bench.processor`` (or ``make bench``) starts a private stack (Kafka and Postgres
with fsync, synchronous_commit and full_page_writes ON) on free ports, runs, prints, and
destroys it. Figures, never assertions: compare ratios measured in the same run.

- pipeline: leads/s from a backlog on the raw topic to committed in Postgres (1 and 2
  processor processes), with 10 % of the leads a repeat of an earlier person;
- http: leads/s from HTTP POST (202) to committed, through the gateway and the processor;
- latency at 500 leads/s: p50/p99 from acceptance (the gateway's 202, or the raw topic's
  acks=all acknowledgement) to committed (the processor's NOTIFY, seen by a listener);
- naive: one transaction per lead doing the seed's dedupe and writes (SELECT by CRM id,
  phone, email; INSERT or UPDATE contact; INSERT lead; rules; record), one connection;
- raw: the same rows written by batched INSERT ... unnest (no dedupe logic): the ceiling.
"""

# The modules: data (database, tenants, bodies, events), services (the processes under
# test), measure (pipeline, HTTP and latency), baselines (the naive flow and the ceiling),
# run (the benchmark, start to end), __main__ (the command).
from bench.processor.run import run

__all__ = ["run"]
