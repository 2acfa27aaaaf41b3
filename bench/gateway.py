"""What the gateway costs next to the least a server could do, all in one run.

Three servers, each driven in turn by the same load tool (wrk ``-t1 -c32``, 10 s each, the
same distinct generic leads), with CPU read from /proc for the serving processes only:

- ``bare``: an aiohttp handler that reads the body and answers 202 (one process, uvloop);
- ``relay``: the thinnest durable relay: aiohttp + aiokafka ``send_and_wait`` (acks=all,
  idempotent, aiokafka's defaults otherwise) to a topic of the same broker (one process);
- ``gateway``: the leadwire gateway as ``make up`` runs it (its processes:
  ``infra.launch.gateway_workers``, one on 2 cores), one unsigned webhook of the generic
  template, ``LEADWIRE_IP_RATE_PER_MINUTE=0``.

The stack is ``bench-gateway`` (started as ``make up`` starts it). While the three run,
the consumers (processor, notifier, analytics, archiver) are paused (SIGSTOP), so every
server has the same machine: Kafka, Postgres and S3 up, nobody processing (with them
running, the gateway's rate is whatever CPU their processing of its leads leaves it).
Printed: req/s, p50/p99 and CPU µs per request of each, the ratio gateway / relay, and the
broker's CPU per relayed request (its rate while the bare handler ran subtracted); then
the gateway's and the bare handler's p50/p99 at half the gateway's maximum rate (open
loop), the consumers still paused.

Run: ``python -m bench gateway [--seconds N]`` (or ``python -m bench.gateway``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import random
import signal
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

from bench import report, wrk
from bench.cpu import CpuMeter, load_average
from bench.figures import caption, cell, figure
from bench.httpload import Plan, build_requests, lead_bodies, load
from bench.options import Options
from bench.ports import free_port
from bench.stack import LaunchedStack, form_webhook, make_up_stack, running_stack, say
from shared.kafka import ensure_topics

CONNECTIONS = 32
CONSUMERS = ("processor", "notifier", "analytics", "archiver")
RELAY_TOPIC = "bench.relay"
TABLE = "gateway"
SERVERS = {
    "bare": "bare aiohttp handler (read body, answer 202)",
    "relay": "thinnest durable relay: aiohttp + aiokafka send_and_wait, acks=all, idempotent",
    "gateway": "leadwire gateway as make up runs it (auth none, generic template)",
}


# --- the two reference servers (each in a process of its own) ----------------------------


async def _serve(port: int, handler: Any, ready: Any) -> None:
    from aiohttp import web

    app = web.Application()
    app.router.add_post("/webhooks/{webhook_id}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=2048).start()
    ready.set()
    await asyncio.Event().wait()


def _serve_bare(port: int, ready: Any) -> None:
    import uvloop
    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=202, body=b'{"success":true}', content_type="application/json")

    uvloop.run(_serve(port, handler, ready))


def _serve_relay(port: int, bootstrap: str, topic: str, ready: Any) -> None:
    import uvloop
    from aiohttp import web
    from aiokafka import AIOKafkaProducer

    async def main() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=True
        )
        await producer.start()

        async def handler(request: web.Request) -> web.Response:
            body = await request.read()
            await producer.send_and_wait(topic, body, key=request.match_info["webhook_id"].encode())
            return web.Response(
                status=202, body=b'{"success":true}', content_type="application/json"
            )

        await _serve(port, handler, ready)

    uvloop.run(main())


def _start_server(target: Any, *args: Any) -> Any:
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=target, args=(*args, ready), daemon=True)
    proc.start()
    if not ready.wait(60):
        proc.kill()
        raise RuntimeError(f"{target.__name__} did not become ready")
    return proc


# --- measuring ---------------------------------------------------------------------------------


async def _max_rate(
    name: str, port: int, path: str, bodies: list[bytes], leaders: dict[str, int], seconds: float
) -> tuple[wrk.Rate, dict[str, float]]:
    """``name``'s maximum rate under wrk, and the CPU seconds of ``leaders`` meanwhile."""
    await wrk.max_rate(port, path, bodies, connections=CONNECTIONS, seconds=2)  # warm up
    meter = CpuMeter(leaders)
    await meter.start()
    rate = await wrk.max_rate(port, path, bodies, connections=CONNECTIONS, seconds=seconds)
    cpu = await meter.stop()
    say(
        f"gateway: {name}: {rate.requests} requests in {rate.seconds:.1f} s "
        f"({rate.rps:,.0f}/s, {rate.errors} errors), CPU {cpu}"
    )
    return rate, cpu


def _cost_rows(rates: dict[str, wrk.Rate], cpu: dict[str, dict[str, float]]) -> list[Any]:
    rows: list[Any] = []
    per_request: dict[str, float] = {}
    for name, rate in rates.items():
        served = max(rate.requests - rate.errors, 1)
        per_request[name] = cpu[name][name] / served * 1e6
        rows.append(cell("gateway", TABLE, SERVERS[name], "req/s", rate.rps, "req/s"))
        rows.append(
            cell(
                "gateway",
                TABLE,
                SERVERS[name],
                "CPU µs per request",
                per_request[name],
                "µs",
                f"{rate.requests} requests, {rate.errors} errors",
            )
        )
        for column, value in (("p50", rate.p50_ms), ("p99", rate.p99_ms)):
            rows.append(cell("gateway", TABLE, SERVERS[name], column, value, "ms"))
    if per_request.get("relay"):
        rows.append(
            figure(
                "gateway",
                "CPU per request: gateway / relay",
                per_request["gateway"] / per_request["relay"],
                "x",
                "issue 15 target <= 2",
            )
        )
    # The broker's CPU for one produce per request: the relay's run, less what the broker
    # did meanwhile anyway (its rate while only the bare handler ran: consumers polling).
    idle_rate = cpu["bare"]["kafka"] / rates["bare"].seconds
    relay = rates["relay"]
    produce = cpu["relay"]["kafka"] - idle_rate * relay.seconds
    rows.append(
        figure(
            "gateway",
            "Kafka CPU per relayed request",
            produce / max(relay.requests - relay.errors, 1) * 1e6,
            "µs",
            f"one produce per request (linger 0); the broker's idle "
            f"{idle_rate * 100:.0f} % of a core subtracted",
        )
    )
    return rows


async def _half_rate_rows(
    ports: dict[str, int], path: str, bodies: list[bytes], gw_rps: float
) -> list[Any]:
    """Gateway and bare at half the gateway's maximum, open loop: p50 and p99."""
    half = gw_rps / 2
    note = f"open loop at {half:,.0f} req/s, 8 s, the consumers paused"
    rows: list[Any] = []
    for name in ("gateway", "bare"):
        result = await load(
            Plan(
                port=ports[name],
                requests=build_requests(path, bodies),
                concurrency=CONNECTIONS,
                seconds=8.0,
                rate=half,
            )
        )
        say(f"gateway: {name} at half the gateway's maximum: {result.short()}")
        for q in (0.50, 0.99):
            rows.append(
                figure(
                    "gateway",
                    f"{name} p{q * 100:.0f} at half the gateway's max rate",
                    result.pct(q),
                    "ms",
                    note,
                )
            )
    return rows


@contextlib.contextmanager
def _paused(stack: LaunchedStack, names: tuple[str, ...]) -> Iterator[None]:
    """The named services stopped (SIGSTOP to their process groups) for the block, and
    continued after it whatever happens."""
    pids = stack.pids()
    stopped = []
    try:
        for name in names:
            os.killpg(pids[name], signal.SIGSTOP)
            stopped.append(pids[name])
        yield
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGCONT)


async def _measure(
    stack: LaunchedStack,
    servers: list[tuple[Any, int]],
    path: str,
    bodies: list[bytes],
    seconds: float,
) -> list[dict[str, Any]]:
    """Each server's maximum rate in turn with the CPU meanwhile, then the half-rate
    latencies; the consumers paused throughout."""
    pids = stack.pids()
    ports = {"bare": servers[0][1], "relay": servers[1][1], "gateway": stack.ports["ingest"]}
    leaders = {
        "bare": {"bare": servers[0][0].pid, "kafka": pids["kafka"]},
        "relay": {"relay": servers[1][0].pid, "kafka": pids["kafka"]},
        "gateway": {"gateway": pids["ingest"]},
    }
    rates: dict[str, wrk.Rate] = {}
    cpu: dict[str, dict[str, float]] = {}
    load_before = load_average()
    with _paused(stack, CONSUMERS):
        for name in ("bare", "relay", "gateway"):
            rates[name], cpu[name] = await _max_rate(
                name, ports[name], path, bodies, leaders[name], seconds
            )
        load_after = load_average()
        half = await _half_rate_rows(ports, path, bodies, rates["gateway"].rps)
    tool = "wrk" if rates["gateway"].tool == "wrk" else "bench.httpload (wrk not installed)"
    text = (
        f"{tool} -t1 -c{CONNECTIONS}, {seconds:g} s per server, one run; the gateway in "
        f"{stack.gateway_workers} process(es) as make up runs it; CPU of the serving "
        f"processes only (utime+stime from /proc); Kafka, Postgres and S3 up, the consumers "
        f"({', '.join(CONSUMERS)}) paused meanwhile so that every server has the same "
        f"machine; load average {load_before} before, {load_after} after"
    )
    return [*_cost_rows(rates, cpu), caption("gateway", TABLE, text), *half]


async def run(opts: Options = Options()) -> list[dict[str, Any]]:
    stack = make_up_stack("bench-gateway", port_base=18600)
    servers: list[tuple[Any, int]] = []  # (process, port) of bare and relay
    async with running_stack(stack):
        assert stack.settings is not None
        settings = stack.settings
        await ensure_topics(settings, [RELAY_TOPIC])
        target = await form_webhook(stack)
        path = urlparse(target.url).path
        try:
            for serve, args in (
                (_serve_bare, ()),
                (_serve_relay, (settings.kafka_bootstrap, settings.topic(RELAY_TOPIC))),
            ):
                port = free_port()
                servers.append((_start_server(serve, port, *args), port))
            bodies = lead_bodies(40_000, first=random.randrange(10**6, 10**8))
            rows = await _measure(stack, servers, path, bodies, opts.seconds)
        finally:
            for proc, _ in servers:
                proc.kill()
                proc.join(10)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=Options.seconds)
    args = parser.parse_args()
    rows = asyncio.run(run(Options(seconds=args.seconds)))
    print(report.render(rows))


if __name__ == "__main__":
    main()
