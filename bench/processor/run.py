"""The processor benchmark, start to end: a private Kafka and Postgres (fsync on), every
measurement in turn, the rows ``make bench`` prints; the stack destroyed again."""

from __future__ import annotations

import os
import statistics
from typing import Any

import asyncpg

from bench.figures import figure, percentile
from bench.ports import free_port
from bench.processor.baselines import ceiling, naive
from bench.processor.measure import RATE, http, kafka_latency, pipeline
from infra import Stack

N_PIPELINE = int(os.environ.get("LEADWIRE_BENCH_PROCESSOR_N", "20000"))
N_HTTP = int(os.environ.get("LEADWIRE_BENCH_PROCESSOR_HTTP_N", "8000"))
N_NAIVE = int(os.environ.get("LEADWIRE_BENCH_PROCESSOR_NAIVE_N", "3000"))


def _row(metric: str, value: float, unit: str, note: str = "") -> dict[str, Any]:
    return figure("processor", metric, value, unit, note)


def _latency_rows(what: str, latencies: list[float]) -> list[dict[str, Any]]:
    """p50 and p99 (ms) of one latency measurement."""
    return [
        _row(f"{what} @{RATE}/s p50", percentile(latencies, 0.50), "ms", f"{len(latencies)} leads"),
        _row(
            f"{what} @{RATE}/s p99",
            percentile(latencies, 0.99),
            "ms",
            f"mean {statistics.fmean(latencies):.1f} ms" if latencies else "",
        ),
    ]


async def _durability(admin_url: str) -> dict[str, Any]:
    conn = await asyncpg.connect(admin_url)
    try:
        durability = {
            k: await conn.fetchval(f"SHOW {k}")
            for k in ("fsync", "synchronous_commit", "full_page_writes")
        }
    finally:
        await conn.close()
    fsync_note = "postgres " + ", ".join(f"{k}={v}" for k, v in durability.items())
    return _row("postgres durability", 1.0, "", fsync_note)


async def _throughput(env: dict[str, str], admin_url: str) -> list[dict[str, Any]]:
    """The pipeline (1 and 2 processes) next to the naive flow and the ceiling."""
    raw = await ceiling(admin_url, N_PIPELINE)
    slow = await naive(admin_url, N_NAIVE)
    one, one_note = await pipeline(env, admin_url, 1, N_PIPELINE)
    two, two_note = await pipeline(env, admin_url, 2, N_PIPELINE)
    best = max(one, two)
    return [
        _row("pipeline raw topic -> committed", one, "leads/s", one_note + "; 10 % repeat persons"),
        _row("pipeline raw topic -> committed", two, "leads/s", two_note),
        _row(
            "naive one transaction per lead",
            slow,
            "leads/s",
            f"{N_NAIVE} leads, seed-style, 1 connection",
        ),
        _row(
            "raw batched upsert (ceiling)",
            raw,
            "leads/s",
            f"{N_PIPELINE} leads, INSERT..unnest x500",
        ),
        _row(
            "ratio pipeline / naive", best / slow if slow else 0, "x", "best of 1 and 2 processors"
        ),
        _row("ratio pipeline / raw ceiling", best / raw if raw else 0, "x", ""),
    ]


async def _through_gateway(env: dict[str, str], admin_url: str) -> list[dict[str, Any]]:
    try:
        out = await http(env, admin_url, N_HTTP)
    except Exception as exc:  # the gateway is another service; report, do not hide the rest
        return [
            _row(
                "http -> committed",
                0.0,
                "leads/s",
                f"gateway run failed: {type(exc).__name__}: {exc}",
            )
        ]
    return [
        _row("http 202 -> committed (sustained)", out["http_rate"], "leads/s", out["http_note"]),
        _row("http accepted (202)", out["http_accept_rate"], "req/s", "gateway alone, same run"),
        *_latency_rows("latency http 202->committed", out["http_latency"]),
    ]


async def run() -> list[dict[str, Any]]:
    stack = Stack.for_name(
        f"bench-processor-{os.getpid()}",
        kafka_port=free_port(),
        kafka_controller_port=free_port(),
        pg_port=free_port(),
        pg_fsync=True,
    )
    await stack.start(components=["kafka", "postgres"], timeout_s=180)
    try:
        env = stack.settings_env()
        admin_url = env["LEADWIRE_DATABASE_URL"]
        rows = [await _durability(admin_url)]
        rows += await _throughput(env, admin_url)
        rows += _latency_rows("latency acks->committed", await kafka_latency(env, admin_url))
        rows += await _through_gateway(env, admin_url)
    finally:
        await stack.destroy()
    return rows
