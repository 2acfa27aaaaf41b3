"""The benchmark's own instruments (``make bench`` prints figures, never asserts them, so
these check that the figures are read right): CPU from /proc, the lean load generator's
closed and open loops, and the tables and charts made from the rows."""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench import charts, report
from bench.cpu import CpuMeter, snapshot
from bench.figures import caption, cell, figure
from bench.httpload import Plan, build_requests, lead_bodies, load
from bench.latency import BATCH_TABLE, _batch_rows
from bench.ports import free_port

pytestmark = pytest.mark.unit

BUSY = "import time\nend = time.process_time() + {s}\nwhile time.process_time() < end: pass\n"


def test_cpu_counts_a_process_and_the_workers_it_starts() -> None:
    """A leader that starts a busy child and waits for it: the child's CPU is the
    leader's, in full though the child ended between two readings; a process outside the
    tree is not counted."""
    code = (
        "import subprocess, sys, time\n"
        f"subprocess.run([sys.executable, '-c', {BUSY.format(s=0.6)!r}])\n"
        "print('done', flush=True)\n"
        "time.sleep(30)\n"
    )

    async def measure() -> dict[str, float]:
        leader = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, start_new_session=True, stdout=asyncio.subprocess.PIPE
        )
        other = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import time; time.sleep(30)"
        )
        meter = CpuMeter({"leader": leader.pid, "other": other.pid}, interval_s=0.1)
        await meter.start()
        assert leader.stdout is not None
        await asyncio.wait_for(leader.stdout.readline(), 30)  # the child's 0.6 s of CPU
        seconds = await meter.stop()
        for proc in (leader, other):
            proc.kill()
            await proc.wait()
        return seconds

    seconds = asyncio.run(measure())
    assert 0.55 <= seconds["leader"] < 1.5
    assert seconds["other"] < 0.3


def test_snapshot_names_a_pid_once() -> None:
    found = snapshot({"me": os.getpid()})
    assert [pid for pid, _ in found["me"]].count(os.getpid()) == 1


@pytest.fixture
def bare_server() -> Iterator[int]:
    """A bare aiohttp server answering 202 (in a thread), its port."""
    from aiohttp import web

    port = free_port()
    loop = asyncio.new_event_loop()

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=202, body=b"{}")

    async def serve() -> web.AppRunner:
        app = web.Application()
        app.router.add_post("/webhooks/{id}", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner

    runner = loop.run_until_complete(serve())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield port
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.run_until_complete(runner.cleanup())
    loop.close()


def test_closed_loop_sends_the_total_and_no_more(bare_server: int) -> None:
    requests = build_requests("/webhooks/x", lead_bodies(50))
    result = asyncio.run(
        load(Plan(port=bare_server, requests=requests, concurrency=4, seconds=30, total=200))
    )
    assert result.requests == 200
    assert result.statuses == {202: 200}
    assert result.errors == 0


def test_open_loop_holds_the_rate(bare_server: int) -> None:
    requests = build_requests("/webhooks/x", lead_bodies(10), {"Prefer": "wait=5"})
    result = asyncio.run(
        load(Plan(port=bare_server, requests=requests, concurrency=2, seconds=1.0, rate=100))
    )
    assert result.requests == 100
    assert result.unsent == 0
    assert 50 < result.rps <= 110  # answered over first send -> last answer


def test_lead_bodies_are_distinct_people() -> None:
    bodies = lead_bodies(500)
    assert len(set(bodies)) == 500
    assert len({b.split(b'"phone_number":')[1].split(b",")[0] for b in bodies}) == 500


def _rows() -> list[dict[str, Any]]:
    return [
        cell("cost", "cost", "archiver", "CPU µs per lead", 2059.4, "µs"),
        cell("cost", "cost", "Kafka", "CPU µs per lead", 194.0, "µs"),
        cell("cost", "cost", "total", "CPU µs per lead", 2253.4, "µs"),
        figure("cost", "leads/s through everything", 384.2, "leads/s"),
        caption("cost", "cost", "10,000 leads, Postgres fsync=on"),
        cell("latency", "latency", "20 leads/s", "reached", 20.0, "leads/s"),
        cell("latency", "latency", "20 leads/s", "p50", 7.14, "ms"),
        cell("latency", "latency", "300 leads/s", "reached", 280.0, "leads/s"),
        cell("latency", "latency", "300 leads/s", "p50", 46.7, "ms"),
    ]


def test_tables_in_the_issues_shape() -> None:
    text = report.render(_rows())
    assert "| process | CPU µs per lead |" in text
    assert "| archiver | 2,059 |" in text
    assert "| **total** | **2,253** |" in text
    assert "| 20 leads/s | 20 | 7.1 ms |" in text
    assert "10,000 leads, Postgres fsync=on" in text
    # The caption is not a figure row; the leads/s row is.
    assert "leads/s through everything" in report.figures_table(_rows())


def test_charts_are_written(tmp_path: Path) -> None:
    drawn = charts.draw(_rows(), tmp_path, "test")
    assert sorted(p.name for p in drawn) == ["cost.png", "latency.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in drawn)


def test_the_processors_batches_are_read_from_its_counters() -> None:
    """``latency batches``: the processor's counters before and after a rate give the
    batches per second, leads per batch, each statement's mean per batch and the share of
    the rate spent in transactions."""
    before = {"batches": 100, "leads": 150, "lookup": 1.0, "write": 1.0, "record": 1.0}
    before["commit"] = 1.0
    after = {"batches": 300, "leads": 650, "lookup": 1.4, "write": 1.2, "record": 1.1}
    after["commit"] = 1.3
    text = report.tables(_batch_rows(300, before, after, seconds=2.0))[BATCH_TABLE].markdown()
    assert "| batches per second | 100 |" in text
    assert "| leads per batch | 2.5 |" in text
    assert "| lookup ms per batch | 2.0 ms |" in text
    assert "| commit ms per batch | 1.5 ms |" in text
    assert "| in transactions | 50.0 % |" in text


def test_the_cost_run_reads_lags_only_after_the_last_answer_and_only_of_groups_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """bench cost's own lag readings cost the broker requests that land in Kafka's row:
    none while leads are still being sent, and a group that caught up is not asked again."""
    from bench import cost
    from bench.lag import Reading

    asked: list[tuple[bool, tuple[str, ...]]] = []
    sent = asyncio.Event()
    behind = {"processor": 0, "notifier": 2, "analytics": 1, "archiver": 3}

    class Reader:
        def __init__(self, settings: Any) -> None:
            pass

        async def __aenter__(self) -> Reader:
            return self

        async def __aexit__(self, *exc: object) -> None:
            pass

        async def read(self, services: Any = None) -> Reading:
            wanted = tuple(behind if services is None else services)
            asked.append((sent.is_set(), wanted))
            ends = {topic: (5 if sent.is_set() else 0) for topic in set(cost.CONSUMED.values())}
            reading = Reading(ends=ends)
            for service in wanted:
                reading.lags[service] = behind[service] if sent.is_set() else 0
                behind[service] = max(behind[service] - 1, 0)
            return reading

    class Meter:
        elapsed_s = 1.0

        def __init__(self, pids: Any) -> None:
            pass

        async def start(self) -> None:
            pass

        async def stop(self) -> dict[str, float]:
            return {}

    async def send(plan: Plan) -> Any:
        await asyncio.sleep(4 * cost.POLL_S)
        sent.set()
        return object()

    class Stack:
        settings = object()
        ports = {"ingest": 1}

        def pids(self) -> dict[str, int]:
            return {}

    monkeypatch.setattr(cost, "LagReader", Reader)
    monkeypatch.setattr(cost, "CpuMeter", Meter)
    monkeypatch.setattr(cost, "load", send)
    run = asyncio.run(cost._burst(Stack(), [b"lead"] * 5, 30))  # type: ignore[arg-type]

    assert run.complete and set(run.caught_up_s) == set(cost.CONSUMED)
    first, *during = asked
    assert first == (False, tuple(behind))  # the baseline, before anything is sent
    assert during and all(after_send for after_send, _ in during)
    for (_, earlier), (_, later) in itertools.pairwise(during):
        assert set(later) < set(earlier)  # the groups caught up dropped out
    assert during[-1][1] == ("archiver",)
