"""A lean HTTP/1.1 load generator for the benchmarks that measure a server, not a vendor.

It runs in a process of its own (uvloop), speaks keep-alive over raw sockets with requests
built before the clock starts (distinct leads, so the processor sees new people), and
parses no more of an answer than its status and length: it costs the machine as little
CPU as a load generator can. Closed loop (each connection sends its next request when the
last is answered) up to a count or a duration, or open loop at a rate: then a request's
latency counts from when it was due, not when it went out, so a slow server is not
flattered by the generator waiting for it (no coordinated omission).

:mod:`bench.gateway`, :mod:`bench.cost` and :mod:`bench.latency` use it; the vendor-like
generator with retries and bookkeeping is :mod:`bench.loadgen`.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import statistics
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from bench.figures import percentile
from bench.loadgen.vendors import FIRST_NAMES, LAST_NAMES, PRODUCTS, format_phone, phone_for

# The generic template's body (docs/templates.md), one person per request.
LEAD: dict[str, Any] = {
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


def lead_body(n: int, run: str) -> bytes:
    """The ``n``-th distinct lead of a run: its own name, phone, email and CRM id."""
    first = FIRST_NAMES[n % len(FIRST_NAMES)]
    last = LAST_NAMES[(n // len(FIRST_NAMES)) % len(LAST_NAMES)]
    return orjson.dumps(
        {
            **LEAD,
            "firstname": first,
            "lastname": last,
            "phone_number": format_phone(phone_for(n), n),
            "email": f"{first}.{last}.{run}.{n}@example.com".lower(),
            "external_crm_id": f"crm-{run}-{n}",
            "product": PRODUCTS[n % len(PRODUCTS)],
        }
    )


def lead_bodies(count: int, first: int = 0) -> list[bytes]:
    """``count`` distinct leads, numbered from ``first`` (another run: another ``first``)."""
    run = uuid.uuid4().hex[:6]
    return [lead_body(n, run) for n in range(first, first + count)]


def build_requests(
    path: str, bodies: list[bytes], headers: dict[str, str] | None = None
) -> list[bytes]:
    """Raw HTTP/1.1 POSTs of ``bodies`` to ``path`` on 127.0.0.1."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return [
        (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"{extra}Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body
        for body in bodies
    ]


@dataclass(frozen=True)
class Plan:
    """What to send: ``requests`` in turn, for ``seconds`` or until ``total`` are answered.

    Closed loop (``rate`` None): ``concurrency`` keep-alive connections, each sending its
    next request when the last is answered. Open loop (``rate`` per second): request ``i``
    is due at ``i / rate`` and goes out on an idle connection, or a new one (up to
    ``max_connections``, like that many vendors), and its latency counts from when it was
    due. Requests not yet sent ``grace_s`` after the end (every connection busy) are not
    sent: the server could not keep up, and the rate reached and ``unsent`` say so. An
    answer slower than ``timeout_s`` is an error.
    """

    port: int
    requests: list[bytes]
    concurrency: int = 32
    seconds: float = 10.0
    total: int | None = None
    rate: float | None = None
    max_connections: int = 512
    grace_s: float = 10.0
    timeout_s: float = 30.0


@dataclass
class Result:
    requests: int = 0  # answered
    seconds: float = 0.0  # first send -> last answer
    statuses: dict[int, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0  # connection lost, or no answer within the timeout
    unsent: int = 0  # open loop: due, but not sent before the end + grace
    connections: int = 0
    last_at: float = 0.0  # perf_counter of the last answer

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def pct(self, q: float) -> float:
        return percentile(self.latencies_ms, q)

    @property
    def mean_ms(self) -> float:
        return statistics.fmean(self.latencies_ms) if self.latencies_ms else float("nan")

    def short(self) -> str:
        return (
            f"{self.requests} answered in {self.seconds:.1f} s ({self.rps:,.0f}/s) over "
            f"{self.connections} connections, p50 {self.pct(0.5):.1f} ms, "
            f"p99 {self.pct(0.99):.1f} ms, statuses {self.statuses}"
            + (f", {self.errors} errors" if self.errors else "")
            + (f", {self.unsent} not sent" if self.unsent else "")
        )

    def answered(self, due: float, status: int) -> None:
        now = time.perf_counter()
        self.latencies_ms.append((now - due) * 1000)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.last_at = max(self.last_at, now)


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


async def _connect(port: int) -> _Conn:
    loop = asyncio.get_running_loop()
    return (await loop.create_connection(_Conn, "127.0.0.1", port))[1]


def _finish(result: Result, start: float) -> Result:
    result.requests = len(result.latencies_ms)
    result.seconds = max(result.last_at - start, 1e-9)
    return result


async def _closed_loop(plan: Plan) -> Result:
    conns = [await _connect(plan.port) for _ in range(plan.concurrency)]
    result = Result(connections=len(conns))
    sent = 0
    start = time.perf_counter()
    end = start + plan.seconds

    async def worker(conn: _Conn) -> None:
        nonlocal sent
        while (plan.total is None or sent < plan.total) and time.perf_counter() < end:
            data = plan.requests[sent % len(plan.requests)]
            sent += 1
            due = time.perf_counter()
            try:
                status = await asyncio.wait_for(conn.request(data), plan.timeout_s)
            except (ConnectionError, TimeoutError):
                result.errors += 1
                return
            result.answered(due, status)

    await asyncio.gather(*(worker(c) for c in conns))
    for c in conns:
        if c.transport is not None:
            c.transport.close()
    return _finish(result, start)


async def _open_loop(plan: Plan, rate: float) -> Result:
    idle: asyncio.Queue[_Conn] = asyncio.Queue()
    for _ in range(plan.concurrency):
        idle.put_nowait(await _connect(plan.port))
    opened = [plan.concurrency]
    result = Result()
    conns: list[_Conn] = []

    async def one(due: float, data: bytes) -> None:
        if idle.empty() and opened[0] < plan.max_connections:
            opened[0] += 1
            try:
                conn = await _connect(plan.port)
            except OSError:
                result.errors += 1
                return
            conns.append(conn)
        else:
            try:  # every connection busy: wait for one, until the end + grace at most
                conn = await asyncio.wait_for(idle.get(), max(cutoff - time.perf_counter(), 0))
            except TimeoutError:
                result.unsent += 1
                return
        try:
            status = await asyncio.wait_for(conn.request(data), plan.timeout_s)
        except (ConnectionError, TimeoutError):
            result.errors += 1
            if conn.transport is not None:
                conn.transport.close()
            return
        result.answered(due, status)
        idle.put_nowait(conn)

    count = min(plan.total or 10**9, int(rate * plan.seconds))
    tasks: list[asyncio.Task[None]] = []
    start = time.perf_counter()
    cutoff = start + plan.seconds + plan.grace_s
    for i in range(count):
        due = start + i / rate
        now = time.perf_counter()
        if now > cutoff:
            result.unsent += count - i
            break
        if due > now:
            await asyncio.sleep(due - now)
        tasks.append(asyncio.create_task(one(due, plan.requests[i % len(plan.requests)])))
    await asyncio.gather(*tasks)
    result.connections = opened[0]
    while not idle.empty():
        conns.append(idle.get_nowait())
    for c in conns:
        if c.transport is not None:
            c.transport.close()
    return _finish(result, start)


async def _load(plan: Plan) -> Result:
    if plan.rate:
        return await _open_loop(plan, plan.rate)
    return await _closed_loop(plan)


def _load_process(plan: Plan, out: Any) -> None:
    import uvloop

    out.put(uvloop.run(_load(plan)))


def run_load(plan: Plan) -> Result:
    """Send ``plan`` from a process of its own (the caller's event loop stays free)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_load_process, args=(plan, queue), daemon=True)
    proc.start()
    try:
        bound = plan.seconds + plan.grace_s + plan.timeout_s + 120
        result: Result = queue.get(timeout=bound)
    finally:
        proc.join(30)
        if proc.is_alive():
            proc.kill()
    return result


async def load(plan: Plan) -> Result:
    return await asyncio.to_thread(run_load, plan)
