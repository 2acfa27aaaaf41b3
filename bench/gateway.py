"""Gateway throughput and latency next to a bare aiohttp handler, same load tool, same run.

- ``bare``: an aiohttp app whose handler reads the body and answers 202.
- ``gateway``: ``POST /webhooks/{id}`` with a realistic lead: Standard Webhooks signature
  (a fresh ``webhook-id`` per request, so the idempotency check runs), mapping with
  phone normalization, validation, and the acks=all produce to real Kafka.

Each server runs in its own single process (uvloop); the load generator is a separate
process speaking HTTP/1.1 keep-alive over raw sockets (pre-built requests, minimal
parsing), so it costs the server as little CPU as possible. Phase 1 drives each server
at a fixed concurrency to find its maximum rate; phase 2 offers half of the gateway's
maximum rate (open loop) to both and reports p50/p99.

Kafka and Postgres: ``LEADWIRE_*`` from the environment when set, else the local "bench"
stack is started (``infra``). Run: ``python -m bench.gateway [--seconds N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench.figures import figure, percentile
from bench.loadgen.vendors import standard_headers
from bench.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
CONCURRENCY = 32
DEFAULT_SECONDS = 8.0

LEAD = {
    "firstname": "Benjie",
    "lastname": "Malinao",
    "phone_number": "(626) 663-3444",
    "email": "benjie@example.com",
    "external_crm_id": "crm_12345",
    "product": "Bath Remodel",
    "lead_status": "new",
    "zip": "91101",
    "consent": True,
    "source_url": "https://example.com/landing",
}


# --- servers (each in its own process) -------------------------------------------------


def _serve_bare(port: int, ready: Any) -> None:
    import uvloop
    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=202, body=b'{"success":true}', content_type="application/json")

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/webhooks/{webhook_id}", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=2048).start()
        ready.set()
        await asyncio.Event().wait()

    uvloop.run(main())


def _serve_gateway(port: int, env: dict[str, str], ready: Any) -> None:
    os.environ.update(env)
    import uvloop

    from bench.stack import wait_ready
    from services.ingest.service import run_ingest
    from services.ingest.settings import IngestSettings
    from shared.logs import configure_logging

    async def main() -> None:
        settings = IngestSettings(ingest_port=port, ip_rate_per_minute=0, http_host="127.0.0.1")
        configure_logging("ingest-bench", level="WARNING", fmt="json")
        # One worker, as services.ingest runs it (GC tuning included).
        gateway = asyncio.create_task(run_ingest(settings, asyncio.Event()))
        with contextlib.suppress(TimeoutError):  # the parent reports it if it never comes
            await wait_ready(
                f"http://127.0.0.1:{port}/readyz", what="gateway", deadline_s=60, interval_s=0.1
            )
        ready.set()
        await gateway

    uvloop.run(main())


# --- load generator ---------------------------------------------------------------------


def _build_requests(path: str, secret: str | None, count: int) -> list[bytes]:
    body = json.dumps(LEAD).encode()
    out: list[bytes] = []
    now = time.time()
    for _ in range(count):
        headers = [
            f"POST {path} HTTP/1.1",
            "Host: 127.0.0.1",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
        ]
        if secret:
            signed = standard_headers(secret, f"msg_{uuid.uuid4().hex}", body, now)
            headers += [f"{k}: {v}" for k, v in signed.items()]
        out.append(("\r\n".join(headers) + "\r\n\r\n").encode() + body)
    return out


class _Conn(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buf[:end])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if len(self.buf) < end + 4 + length:
            return
        status = int(head[9:12])
        del self.buf[: end + 4 + length]
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(status)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("closed"))

    async def request(self, data: bytes) -> int:
        self.waiter = asyncio.get_running_loop().create_future()
        assert self.transport is not None
        self.transport.write(data)
        return await self.waiter


async def _load(
    port: int, requests: list[bytes], seconds: float, concurrency: int, rate: float | None
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    conns = [
        (await loop.create_connection(_Conn, "127.0.0.1", port))[1] for _ in range(concurrency)
    ]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    idx = 0
    start = time.perf_counter()
    end = start + seconds
    interval = concurrency / rate if rate else 0.0

    async def worker(conn: _Conn, n: int) -> None:
        nonlocal idx
        next_at = start + (interval * n / concurrency if rate else 0)
        while True:
            if rate:
                now = time.perf_counter()
                if next_at > now:
                    await asyncio.sleep(next_at - now)
                scheduled = next_at
                next_at += interval
            else:
                scheduled = time.perf_counter()
            if scheduled >= end:
                return
            data = requests[idx % len(requests)]
            idx += 1
            status = await conn.request(data)
            # Open loop: latency counts from when the request was due (no coordinated omission).
            latencies.append(time.perf_counter() - scheduled)
            statuses[status] = statuses.get(status, 0) + 1

    await asyncio.gather(*(worker(c, i) for i, c in enumerate(conns)))
    elapsed = time.perf_counter() - start
    for c in conns:
        assert c.transport is not None
        c.transport.close()

    def pct(p: float) -> float:
        return percentile(latencies, p) * 1000 if latencies else 0.0

    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "mean_ms": statistics.fmean(latencies) * 1000 if latencies else 0.0,
        "statuses": statuses,
    }


def _load_process(
    port: int,
    path: str,
    secret: str | None,
    seconds: float,
    concurrency: int,
    rate: float | None,
    out: Any,
) -> None:
    import uvloop

    expected = int((rate or 20_000) * seconds * 1.2) + 1000
    requests = _build_requests(path, secret, min(expected, 200_000))
    out.put(uvloop.run(_load(port, requests, seconds, concurrency, rate)))


def run_load(
    port: int,
    path: str,
    secret: str | None,
    *,
    seconds: float,
    concurrency: int = CONCURRENCY,
    rate: float | None = None,
) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(
        target=_load_process, args=(port, path, secret, seconds, concurrency, rate, queue)
    )
    proc.start()
    result: dict[str, Any] = queue.get(timeout=seconds + 120)
    proc.join(30)
    return result


# --- setup ---------------------------------------------------------------------------


async def _environment() -> tuple[dict[str, str], Any]:
    if os.environ.get("LEADWIRE_KAFKA_BOOTSTRAP") and os.environ.get("LEADWIRE_DATABASE_URL"):
        return {k: v for k, v in os.environ.items() if k.startswith("LEADWIRE_")}, None
    from infra import Stack

    stack = Stack.for_name("bench", ROOT)
    await stack.start(components=["kafka", "postgres"])
    return stack.settings_env(), stack


async def _prepare(env: dict[str, str]) -> tuple[dict[str, str], uuid.UUID, str]:
    from bench.stack import settings_from_env
    from shared.db import connect, migrate
    from shared.kafka import ensure_topics

    prefix = f"bench{uuid.uuid4().hex[:6]}."
    env = {**env, "LEADWIRE_TOPIC_PREFIX": prefix, "LEADWIRE_KAFKA_TIMEOUT_S": "10"}
    settings = settings_from_env(env)
    await migrate(settings.database_url)
    await ensure_topics(settings)
    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    ws, hook = uuid.uuid4(), uuid.uuid4()
    conn = await connect(settings.database_url)
    try:
        await conn.execute(
            "INSERT INTO workspaces (id, name) VALUES ($1, $2)", ws, f"bench-{ws.hex[:8]}"
        )
        await conn.execute(
            "INSERT INTO webhooks (id, workspace_id, name, auth_mode, secret) VALUES ($1, $2, 'bench', 'standard', $3)",
            hook,
            ws,
            secret,
        )
    finally:
        await conn.close()
    return env, hook, secret


def _start_server(target: Any, *args: Any) -> Any:
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=target, args=(*args, ready), daemon=True)
    proc.start()
    if not ready.wait(120):
        proc.kill()
        raise RuntimeError(f"{target.__name__} did not become ready")
    return proc


async def _measure(
    port: int, path: str, secret: str | None, seconds: float, rate: float | None = None
) -> dict[str, Any]:
    return await asyncio.to_thread(run_load, port, path, secret, seconds=seconds, rate=rate)


def _rows(
    seconds: float,
    bare: dict[str, Any],
    gateway: dict[str, Any],
    gateway_half: dict[str, Any],
    bare_half: dict[str, Any],
) -> list[dict[str, Any]]:
    half = gateway["rps"] / 2
    ok = gateway["statuses"].get(202, 0) / max(1, gateway["requests"])
    note = f"1 process each, {CONCURRENCY} keep-alive connections, {seconds:.0f} s"
    return [
        figure("gateway", "bare aiohttp handler max rate", bare["rps"], "req/s", note),
        figure(
            "gateway",
            "gateway max rate",
            gateway["rps"],
            "req/s",
            f"auth standard + mapping + validation + acks=all; {ok:.1%} 202",
        ),
        figure(
            "gateway",
            "gateway / bare ratio",
            gateway["rps"] / bare["rps"],
            "x",
            "target >= 0.6, chasing 0.8",
        ),
        figure("gateway", "gateway p50 at max rate", gateway["p50_ms"], "ms"),
        figure("gateway", "gateway p99 at max rate", gateway["p99_ms"], "ms"),
        figure(
            "gateway",
            "gateway p50 at half max rate",
            gateway_half["p50_ms"],
            "ms",
            f"open loop at {half:.0f} req/s",
        ),
        figure(
            "gateway",
            "gateway p99 at half max rate",
            gateway_half["p99_ms"],
            "ms",
            "target < 10 ms",
        ),
        figure(
            "gateway",
            "bare p50 at the same rate",
            bare_half["p50_ms"],
            "ms",
            f"open loop at {half:.0f} req/s",
        ),
        figure("gateway", "bare p99 at the same rate", bare_half["p99_ms"], "ms"),
    ]


async def run(seconds: float = DEFAULT_SECONDS) -> list[dict[str, Any]]:
    env, stack = await _environment()
    servers: list[Any] = []
    try:
        env, hook, secret = await _prepare(env)
        bare_port, gw_port = free_port(), free_port()
        servers.append(_start_server(_serve_bare, bare_port))
        servers.append(_start_server(_serve_gateway, gw_port, env))
        path = f"/webhooks/{hook}"
        # Warm up both (connections, caches, JIT-less but lazy imports, Kafka metadata).
        await _measure(bare_port, path, None, 1.5)
        await _measure(gw_port, path, secret, 1.5)
        bare = await _measure(bare_port, path, None, seconds)
        gateway = await _measure(gw_port, path, secret, seconds)
        half = gateway["rps"] / 2
        gateway_half = await _measure(gw_port, path, secret, seconds, rate=half)
        bare_half = await _measure(bare_port, path, None, seconds, rate=half)
        rows = _rows(seconds, bare, gateway, gateway_half, bare_half)
        for name, result in (
            ("bare", bare),
            ("gateway", gateway),
            ("gateway half", gateway_half),
            ("bare half", bare_half),
        ):
            print(f"[bench gateway] {name}: {result}", file=sys.stderr)
    finally:
        for proc in servers:
            proc.kill()
            proc.join(10)
        if stack is not None:
            await stack.stop(components=["kafka", "postgres"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS)
    args = parser.parse_args()
    rows = asyncio.run(run(args.seconds))
    for row in rows:
        value = row["value"]
        print(f"{row['metric']:<36} {value:>10.2f} {row['unit']:<6} {row['note']}")


if __name__ == "__main__":
    main()
