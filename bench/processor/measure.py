"""The processor's figures: throughput from a backlog on the raw topic (1 or 2 processes),
through the gateway (HTTP 202 to committed), and latency at a paced rate (from the 202, or
the raw topic's acks=all acknowledgement, to the processor's NOTIFY at commit)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from bench.commits import Commits
from bench.ports import free_port
from bench.processor.data import WORKSPACES, Tenant, event, events, new_database, payloads, seed
from bench.processor.services import committed, service, service_env
from bench.stack import settings_from_env
from shared import topics
from shared.events import encode
from shared.kafka import Publisher, ensure_topics
from shared.settings import CommonSettings

RATE = 500
LATENCY_SECONDS = 10


@dataclass
class _Bench:
    """A database and a topic prefix of one measurement's own."""

    url: str
    tenants: list[Tenant]
    prefix: str
    settings: CommonSettings

    def env(self, base: dict[str, str], **extra: str) -> dict[str, str]:
        """A service's environment on this database and these topics."""
        return service_env(
            base, LEADWIRE_DATABASE_URL=self.url, LEADWIRE_TOPIC_PREFIX=self.prefix, **extra
        )


async def _prepare(env: dict[str, str], admin_url: str, database: str) -> _Bench:
    url = await new_database(admin_url, database)
    tenants = await seed(url)
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    settings = settings_from_env(env, database_url=url, topic_prefix=prefix)
    await ensure_topics(settings, (topics.RAW, topics.OUTCOMES, topics.DEADLETTER), partitions=8)
    return _Bench(url, tenants, prefix, settings)


def _ready(ops_port: int) -> str:
    """The /readyz of a service's ops listener."""
    return f"http://127.0.0.1:{ops_port}/readyz"


async def pipeline(
    env: dict[str, str], admin_url: str, processes: int, n: int
) -> tuple[float, str]:
    """A backlog of ``n`` leads on the raw topic, then ``processes`` processors: leads/s."""
    b = await _prepare(env, admin_url, f"bench_pipeline_{processes}")
    evs = events(b.tenants, payloads(n, f"p{processes}"))
    async with Publisher(b.settings, client_id="bench") as pub:
        for i in range(0, len(evs), 2000):
            await pub.publish_many(
                topics.RAW,
                [(str(e.workspace_id), encode(e)) for e in evs[i : i + 2000]],
                timeout=60,
            )
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(processes):
            port = free_port()
            await stack.enter_async_context(
                service(
                    "processor", b.env(env, LEADWIRE_PROCESSOR_OPS_PORT=str(port)), _ready(port)
                )
            )
        done, span = await committed(b.url, len(evs), deadline_s=300)
    rate = done / span if span else 0.0
    return (
        rate,
        f"{done} leads, {processes} processor process(es), 8 partitions, {WORKSPACES} workspaces",
    )


@dataclass
class _Gateway:
    http: aiohttp.ClientSession
    port: int
    tenants: list[Tenant]

    async def post(self, i: int, body: bytes) -> tuple[int, Any]:
        hook = self.tenants[i % len(self.tenants)].webhook_id
        async with self.http.post(
            f"http://127.0.0.1:{self.port}/webhooks/{hook}",
            data=body,
            headers={"Content-Type": "application/json"},
        ) as resp:
            return resp.status, orjson.loads(await resp.read())

    async def accepted_id(self, i: int, body: bytes) -> str | None:
        status, doc = await self.post(i, body)
        return str(doc["request_id"]) if status == 202 else None


async def _post_all(gateway: _Gateway, bodies: list[bytes], connections: int) -> list[int]:
    """Every body posted, ``connections`` at a time: the statuses."""
    queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
    for item in enumerate(bodies):
        queue.put_nowait(item)
    statuses: list[int] = []

    async def worker() -> None:
        while not queue.empty():
            i, body = queue.get_nowait()
            statuses.append((await gateway.post(i, body))[0])

    await asyncio.gather(*(worker() for _ in range(connections)))
    return statuses


async def http(env: dict[str, str], admin_url: str, n: int) -> dict[str, Any]:
    """Through the gateway: max-rate run, then a paced run at RATE leads/s for latency."""
    b = await _prepare(env, admin_url, "bench_http")
    gport, gops, pport = free_port(), free_port(), free_port()
    gateway_env = b.env(
        env,
        LEADWIRE_INGEST_PORT=str(gport),
        LEADWIRE_INGEST_OPS_PORT=str(gops),
        LEADWIRE_INGEST_WORKERS="1",
        LEADWIRE_IP_RATE_PER_MINUTE="0",
    )
    out: dict[str, Any] = {}
    async with (
        service("processor", b.env(env, LEADWIRE_PROCESSOR_OPS_PORT=str(pport)), _ready(pport)),
        service("ingest", gateway_env, _ready(gops)),
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session,
    ):
        gateway = _Gateway(session, gport, b.tenants)
        bodies = [orjson.dumps(p) for p in payloads(n, "h")]
        started = time.monotonic()
        statuses = await _post_all(gateway, bodies, connections=64)
        accepted_s = time.monotonic() - started
        accepted = sum(1 for s in statuses if s == 202)
        done, _span = await committed(b.url, accepted, deadline_s=300)
        total_s = time.monotonic() - started
        out["http_rate"] = done / total_s
        out["http_accept_rate"] = accepted / accepted_s
        out["http_note"] = (
            f"{accepted}/{len(bodies)} accepted (202), 1 gateway worker, 1 processor, 64 connections"
        )

        # Latency at RATE/s: from the 202 to the NOTIFY the processor sends at commit.
        latencies = await _paced(
            b.url,
            gateway.accepted_id,
            [orjson.dumps(p) for p in payloads(RATE * LATENCY_SECONDS, "l")],
        )
        out["http_latency"] = latencies
    return out


async def _paced(
    url: str, send: Callable[[int, bytes], Awaitable[str | None]], bodies: Sequence[bytes]
) -> list[float]:
    """Send at RATE/s; accept-to-committed latency (ms) per request (:mod:`bench.commits`)."""
    accepted: dict[str, float] = {}
    commits = Commits()
    await commits.start(url)
    try:
        tasks = []
        started = time.monotonic()

        async def one(i: int, body: bytes) -> None:
            rid = await send(i, body)
            if rid is not None:
                accepted[rid] = time.monotonic()

        for i, body in enumerate(bodies):
            due = started + i / RATE
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, body)))
        await asyncio.gather(*tasks)
        await commits.wait_for(set(accepted), 60)
    finally:
        await commits.stop()
    return [max(commits.at[r] - t, 0.0) * 1000 for r, t in accepted.items() if r in commits.at]


async def kafka_latency(env: dict[str, str], admin_url: str) -> list[float]:
    """Latency at RATE/s from the raw topic's acks=all acknowledgement to committed."""
    b = await _prepare(env, admin_url, "bench_latency")
    pport = free_port()
    bodies = payloads(RATE * LATENCY_SECONDS, "k")
    async with (
        service("processor", b.env(env, LEADWIRE_PROCESSOR_OPS_PORT=str(pport)), _ready(pport)),
        Publisher(b.settings, client_id="bench") as pub,
    ):

        async def send(i: int, _body: bytes) -> str:
            ev = event(b.tenants[i % len(b.tenants)], bodies[i])
            await pub.publish(topics.RAW, ev, key=str(ev.workspace_id))
            return str(ev.request_id)

        return await _paced(b.url, send, [b""] * len(bodies))
