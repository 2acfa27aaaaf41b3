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

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson

from shared import topics
from shared.db import connect, migrate
from shared.events import LeadReceived, MappedLead, RawRequest, encode, utcnow
from shared.kafka import Publisher, ensure_topics
from shared.settings import CommonSettings

ROOT = Path(__file__).resolve().parent.parent
N_PIPELINE = int(os.environ.get("LEADWIRE_BENCH_PROCESSOR_N", "20000"))
N_HTTP = int(os.environ.get("LEADWIRE_BENCH_PROCESSOR_HTTP_N", "8000"))
N_NAIVE = int(os.environ.get("LEADWIRE_BENCH_PROCESSOR_NAIVE_N", "3000"))
RATE = 500
LATENCY_SECONDS = 10
WORKSPACES = 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _row(metric: str, value: float, unit: str, note: str = "") -> dict[str, Any]:
    return {"benchmark": "processor", "metric": metric, "value": value, "unit": unit, "note": note}


# --- data ---------------------------------------------------------------------------


@dataclass
class Tenant:
    workspace_id: uuid.UUID
    webhook_id: uuid.UUID


async def _new_database(admin_url: str, name: str) -> str:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = admin_url.rsplit("/", 1)[0] + "/" + name
    await migrate(url)
    return url


async def _seed(url: str, count: int = WORKSPACES) -> list[Tenant]:
    """Workspaces, each with a webhook, three boards and four rules (the usual shapes)."""
    conn = await connect(url)
    tenants = []
    try:
        for i in range(count):
            ws, hook = uuid.uuid4(), uuid.uuid4()
            await conn.execute(
                "INSERT INTO workspaces (id, name) VALUES ($1, $2)", ws, f"bench-{i}"
            )
            await conn.execute(
                "INSERT INTO webhooks (id, workspace_id, name, auth_mode) VALUES ($1, $2, 'vendor', 'none')",
                hook,
                ws,
            )
            boards = [uuid.uuid4() for _ in range(3)]
            for j, b in enumerate(boards):
                await conn.execute(
                    "INSERT INTO boards (id, workspace_id, name) VALUES ($1, $2, $3)",
                    b,
                    ws,
                    f"b{j}",
                )
            rules = [
                (boards[0], None, [{"field": "product", "op": "eq", "value": "Solar"}], 10),
                (
                    boards[1],
                    hook,
                    [{"field": "lead_status", "op": "in", "value": ["hot", "urgent"]}],
                    20,
                ),
                (boards[2], None, [{"field": "state", "op": "eq", "value": "CA"}], 30),
                (boards[2], hook, [{"field": "product", "op": "eq", "value": "Bath Remodel"}], 40),
            ]
            for board, webhook, conditions, priority in rules:
                await conn.execute(
                    """INSERT INTO board_rules (id, workspace_id, board_id, webhook_id, conditions, priority)
                       VALUES ($1, $2, $3, $4, $5, $6)""",
                    uuid.uuid4(),
                    ws,
                    board,
                    webhook,
                    conditions,
                    priority,
                )
            tenants.append(Tenant(ws, hook))
    finally:
        await conn.close()
    return tenants


def _payloads(n: int, tag: str) -> list[dict[str, Any]]:
    """``n`` seed-shaped bodies; every tenth repeats an earlier person (10 % duplicates)."""
    out = []
    for i in range(n):
        person = i - 5 if i % 10 == 9 else i
        out.append(
            {
                "firstname": f"First{i}",
                "lastname": "Bench",
                "phone_number": f"+1415{2000000 + person:07d}",
                "email": f"{tag}-{person}@bench.example",
                "external_crm_id": f"crm-{tag}-{person}" if person % 3 == 0 else None,
                "product": ("Bath Remodel", "Solar", "Kitchen", "Roofing")[person % 4],
                "lead_status": ("new", "hot", "new", "contacted")[person % 4],
                "state": ("CA", "TX", "NY", "FL", "WA")[person % 5],
                "utm_source": "bench",
            }
        )
    return out


def _event(tenant: Tenant, payload: dict[str, Any]) -> LeadReceived:
    body = orjson.dumps(payload)
    return LeadReceived(
        request_id=uuid.uuid4(),
        workspace_id=tenant.workspace_id,
        webhook_id=tenant.webhook_id,
        received_at=utcnow(),
        body_sha256=hashlib.sha256(body).hexdigest(),
        request=RawRequest(
            path=f"/webhooks/{tenant.webhook_id}",
            headers={"content-type": "application/json"},
            content_type="application/json",
            payload=payload,
        ),
        lead=MappedLead(
            crm_id=payload["external_crm_id"],
            phone=payload["phone_number"],
            email=payload["email"],
            first_name=payload["firstname"],
            last_name=payload["lastname"],
            product=payload["product"],
            lead_status=payload["lead_status"],
            custom={"state": payload["state"], "utm_source": payload["utm_source"]},
        ),
        steps={"authentication": 0.05, "field_mapping": 0.2, "validation": 0.05, "enqueue": 2.0},
    )


# --- processes ----------------------------------------------------------------------


def _spawn(name: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Any]:
    log = open(f"/tmp/leadwire-bench-{name}-{os.getpid()}.log", "ab")  # closed by _service
    proc = subprocess.Popen(
        [sys.executable, "-m", f"services.{name}"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return proc, log


@contextlib.asynccontextmanager
async def _service(
    name: str, env: dict[str, str], ready_url: str
) -> AsyncIterator[subprocess.Popen[bytes]]:
    proc, log = _spawn(name, env)
    try:
        end = time.monotonic() + 60
        async with aiohttp.ClientSession() as http:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited {proc.returncode} (log {log.name})")
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with http.get(ready_url) as resp:
                        if resp.status == 200:
                            break
                if time.monotonic() > end:
                    raise TimeoutError(f"{name} not ready (log {log.name})")
                await asyncio.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, 30)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()


def _env(base: dict[str, str], **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        **base,
        "LEADWIRE_LOG_LEVEL": "WARNING",
        "LEADWIRE_LOG_FORMAT": "json",
        **extra,
    }


async def _committed(url: str, n: int, deadline_s: float) -> tuple[int, float]:
    """Wait until ``n`` requests are stored; (count, span in seconds of their processed_at)."""
    conn = await connect(url)
    try:
        end = time.monotonic() + deadline_s
        while True:
            done = await conn.fetchval(
                "SELECT count(*) FROM webhook_requests WHERE status = 'processed'"
            )
            if done >= n or time.monotonic() > end:
                break
            await asyncio.sleep(0.2)
        span = await conn.fetchval(
            "SELECT extract(epoch FROM max(processed_at) - min(processed_at)) FROM webhook_requests"
        )
        return int(done), float(span or 0.0)
    finally:
        await conn.close()


# --- measurements -------------------------------------------------------------------


async def _pipeline(env: dict[str, str], admin_url: str, processes: int) -> tuple[float, str]:
    url = await _new_database(admin_url, f"bench_pipeline_{processes}")
    tenants = await _seed(url)
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    settings = CommonSettings(
        **{**_settings_fields(env), "database_url": url, "topic_prefix": prefix}
    )
    await ensure_topics(settings, (topics.RAW, topics.OUTCOMES, topics.DEADLETTER), partitions=8)
    events = [
        _event(tenants[i % len(tenants)], p)
        for i, p in enumerate(_payloads(N_PIPELINE, f"p{processes}"))
    ]
    async with Publisher(settings, client_id="bench") as pub:
        for i in range(0, len(events), 2000):
            await pub.publish_many(
                topics.RAW,
                [(str(e.workspace_id), encode(e)) for e in events[i : i + 2000]],
                timeout=60,
            )
    penv = _env(env, LEADWIRE_DATABASE_URL=url, LEADWIRE_TOPIC_PREFIX=prefix)
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(processes):
            port = _free_port()
            await stack.enter_async_context(
                _service(
                    "processor",
                    {**penv, "LEADWIRE_PROCESSOR_PORT": str(port)},
                    f"http://127.0.0.1:{port}/readyz",
                )
            )
        done, span = await _committed(url, len(events), deadline_s=300)
    rate = done / span if span else 0.0
    return (
        rate,
        f"{done} leads, {processes} processor process(es), 8 partitions, {WORKSPACES} workspaces",
    )


def _settings_fields(env: dict[str, str]) -> dict[str, Any]:
    return {
        k.removeprefix("LEADWIRE_").lower(): v
        for k, v in env.items()
        if k.startswith("LEADWIRE_")
        and k.removeprefix("LEADWIRE_").lower() in CommonSettings.model_fields
    }


async def _http(env: dict[str, str], admin_url: str) -> dict[str, Any]:
    """Through the gateway: max-rate run, then a paced run at RATE leads/s for latency."""
    url = await _new_database(admin_url, "bench_http")
    tenants = await _seed(url)
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    settings = CommonSettings(
        **{**_settings_fields(env), "database_url": url, "topic_prefix": prefix}
    )
    await ensure_topics(settings, (topics.RAW, topics.OUTCOMES, topics.DEADLETTER), partitions=8)
    gport, pport = _free_port(), _free_port()
    base = _env(env, LEADWIRE_DATABASE_URL=url, LEADWIRE_TOPIC_PREFIX=prefix)
    out: dict[str, Any] = {}
    async with (
        _service(
            "processor",
            {**base, "LEADWIRE_PROCESSOR_PORT": str(pport)},
            f"http://127.0.0.1:{pport}/readyz",
        ),
        _service(
            "ingest",
            {
                **base,
                "LEADWIRE_INGEST_PORT": str(gport),
                "LEADWIRE_INGEST_WORKERS": "1",
                "LEADWIRE_IP_RATE_PER_MINUTE": "0",
            },
            f"http://127.0.0.1:{gport}/readyz",
        ),
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as http,
    ):
        bodies = [orjson.dumps(p) for p in _payloads(N_HTTP, "h")]

        async def post(i: int, body: bytes) -> tuple[int, Any]:
            hook = tenants[i % len(tenants)].webhook_id
            async with http.post(
                f"http://127.0.0.1:{gport}/webhooks/{hook}",
                data=body,
                headers={"Content-Type": "application/json"},
            ) as resp:
                return resp.status, orjson.loads(await resp.read())

        async def accepted_id(i: int, body: bytes) -> str | None:
            status, doc = await post(i, body)
            return str(doc["request_id"]) if status == 202 else None

        started = time.monotonic()
        queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
        for item in enumerate(bodies):
            queue.put_nowait(item)
        statuses: list[int] = []

        async def worker() -> None:
            while not queue.empty():
                i, body = queue.get_nowait()
                statuses.append((await post(i, body))[0])

        await asyncio.gather(*(worker() for _ in range(64)))
        accepted_s = time.monotonic() - started
        accepted = sum(1 for s in statuses if s == 202)
        done, _span = await _committed(url, accepted, deadline_s=300)
        total_s = time.monotonic() - started
        out["http_rate"] = done / total_s
        out["http_accept_rate"] = accepted / accepted_s
        out["http_note"] = (
            f"{accepted}/{len(bodies)} accepted (202), 1 gateway worker, 1 processor, 64 connections"
        )

        # Latency at RATE/s: from the 202 to the NOTIFY the processor sends at commit.
        latencies = await _paced(
            url, accepted_id, [orjson.dumps(p) for p in _payloads(RATE * LATENCY_SECONDS, "l")]
        )
        out["http_latency"] = latencies
    return out


async def _paced(
    url: str, send: Callable[[int, bytes], Awaitable[str | None]], bodies: Sequence[bytes]
) -> list[float]:
    """Send at RATE/s; accept-to-committed latency (ms) per request via LISTEN."""
    committed: dict[str, float] = {}
    accepted: dict[str, float] = {}
    sent_all = False
    all_done = asyncio.Event()
    listener = await asyncpg.connect(url)

    def check() -> None:
        if sent_all and all(r in committed for r in accepted):
            all_done.set()

    def done(_c: Any, _p: int, _ch: str, payload: str) -> None:
        committed[payload] = time.monotonic()
        check()

    await listener.add_listener("leadwire_request_done", done)
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
        sent_all = True
        check()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_done.wait(), 60)
    finally:
        await listener.close()
    return [max(committed[r] - t, 0.0) * 1000 for r, t in accepted.items() if r in committed]


async def _kafka_latency(env: dict[str, str], admin_url: str) -> list[float]:
    """Latency at RATE/s from the raw topic's acks=all acknowledgement to committed."""
    url = await _new_database(admin_url, "bench_latency")
    tenants = await _seed(url)
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    settings = CommonSettings(
        **{**_settings_fields(env), "database_url": url, "topic_prefix": prefix}
    )
    await ensure_topics(settings, (topics.RAW, topics.OUTCOMES, topics.DEADLETTER), partitions=8)
    pport = _free_port()
    penv = _env(
        env,
        LEADWIRE_DATABASE_URL=url,
        LEADWIRE_TOPIC_PREFIX=prefix,
        LEADWIRE_PROCESSOR_PORT=str(pport),
    )
    payloads = _payloads(RATE * LATENCY_SECONDS, "k")
    async with (
        _service("processor", penv, f"http://127.0.0.1:{pport}/readyz"),
        Publisher(settings, client_id="bench") as pub,
    ):

        async def send(i: int, _body: bytes) -> str:
            ev = _event(tenants[i % len(tenants)], payloads[i])
            await pub.publish(topics.RAW, ev, key=str(ev.workspace_id))
            return str(ev.request_id)

        return await _paced(url, send, [b""] * len(payloads))


async def _naive(admin_url: str) -> float:
    """The seed's flow, one transaction per lead, one connection."""
    url = await _new_database(admin_url, "bench_naive")
    tenants = await _seed(url)
    payloads = _payloads(N_NAIVE, "n")
    events = [_event(tenants[i % len(tenants)], p) for i, p in enumerate(payloads)]
    conn = await connect(url)
    try:
        started = time.monotonic()
        for ev in events:
            lead = ev.lead
            async with conn.transaction():
                contact = None
                match = "new"
                for kind in ("crm_id", "phone", "email"):
                    value = getattr(lead, kind)
                    if value is None:
                        continue
                    contact = await conn.fetchrow(
                        f"SELECT id FROM contacts WHERE workspace_id = $1 AND {kind} = $2",
                        ev.workspace_id,
                        value,
                    )
                    if contact is not None:
                        match = kind
                        break
                if contact is None:
                    cid = uuid.uuid4()
                    await conn.execute(
                        """INSERT INTO contacts (id, workspace_id, crm_id, phone, email, first_name, last_name,
                                                 product, lead_status, custom)
                           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)""",
                        cid,
                        ev.workspace_id,
                        lead.crm_id,
                        lead.phone,
                        lead.email,
                        lead.first_name,
                        lead.last_name,
                        lead.product,
                        lead.lead_status,
                        lead.custom,
                    )
                else:
                    cid = contact["id"]
                    await conn.execute(
                        """UPDATE contacts SET first_name = COALESCE($2, first_name),
                                  last_name = COALESCE($3, last_name), product = COALESCE($4, product),
                                  lead_status = COALESCE($5, lead_status), custom = custom || $6,
                                  updated_at = now()
                            WHERE id = $1""",
                        cid,
                        lead.first_name,
                        lead.last_name,
                        lead.product,
                        lead.lead_status,
                        lead.custom,
                    )
                await conn.execute(
                    """INSERT INTO leads (id, workspace_id, contact_id, webhook_id, request_id, status, product_interest)
                       VALUES ($1, $2, $3, $4, $5, $6, $7)""",
                    uuid.uuid4(),
                    ev.workspace_id,
                    cid,
                    ev.webhook_id,
                    ev.request_id,
                    lead.lead_status,
                    lead.product,
                )
                rules = await conn.fetch(
                    """SELECT board_id, webhook_id, conditions FROM board_rules
                        WHERE workspace_id = $1 ORDER BY priority, created_at""",
                    ev.workspace_id,
                )
                for rule in rules:
                    if rule["webhook_id"] not in (None, ev.webhook_id):
                        continue
                    if all(
                        str(lead.field(c["field"]) or "").lower()
                        in [
                            str(v).lower()
                            for v in (c["value"] if isinstance(c["value"], list) else [c["value"]])
                        ]
                        for c in rule["conditions"]
                    ):
                        await conn.execute(
                            "UPDATE contacts SET board_id = $2 WHERE id = $1", cid, rule["board_id"]
                        )
                        break
                await conn.execute(
                    """INSERT INTO webhook_requests (request_id, workspace_id, webhook_id, status, received_at,
                                                     processed_at, result)
                       VALUES ($1, $2, $3, 'processed', $4, now(), $5)""",
                    ev.request_id,
                    ev.workspace_id,
                    ev.webhook_id,
                    ev.received_at,
                    {"match_type": match, "contact_id": str(cid)},
                )
        return len(events) / (time.monotonic() - started)
    finally:
        await conn.close()


async def _raw(admin_url: str) -> float:
    """The same rows (contacts, leads, request records) by batched INSERT ... unnest."""
    url = await _new_database(admin_url, "bench_raw")
    tenants = await _seed(url)
    payloads = _payloads(N_PIPELINE, "r")
    events = [_event(tenants[i % len(tenants)], p) for i, p in enumerate(payloads)]
    person_ids: dict[tuple[uuid.UUID, str], uuid.UUID] = {}
    rows = []
    for ev in events:
        key = (ev.workspace_id, ev.lead.email or "")
        cid = person_ids.setdefault(key, uuid.uuid4())
        rows.append((ev, cid))
    result = orjson.dumps(
        {
            "request": events[0].request.model_dump(mode="json"),
            "lead": events[0].lead.model_dump(mode="json"),
        }
    ).decode()
    conn = await connect(url)
    try:
        started = time.monotonic()
        for i in range(0, len(rows), 500):
            chunk = rows[i : i + 500]
            async with conn.transaction():
                await conn.execute(
                    """INSERT INTO contacts (id, workspace_id, crm_id, phone, email, first_name, last_name,
                                             product, lead_status, custom)
                       SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[],
                                            $6::text[], $7::text[], $8::text[], $9::text[], $10::jsonb[])
                       ON CONFLICT DO NOTHING""",
                    [c for _, c in chunk],
                    [e.workspace_id for e, _ in chunk],
                    [e.lead.crm_id for e, _ in chunk],
                    [e.lead.phone for e, _ in chunk],
                    [e.lead.email for e, _ in chunk],
                    [e.lead.first_name for e, _ in chunk],
                    [e.lead.last_name for e, _ in chunk],
                    [e.lead.product for e, _ in chunk],
                    [e.lead.lead_status for e, _ in chunk],
                    [e.lead.custom for e, _ in chunk],
                )
                await conn.execute(
                    """INSERT INTO leads (id, workspace_id, contact_id, webhook_id, request_id, status, product_interest)
                       SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::uuid[],
                                            $6::text[], $7::text[])""",
                    [uuid.uuid4() for _ in chunk],
                    [e.workspace_id for e, _ in chunk],
                    [c for _, c in chunk],
                    [e.webhook_id for e, _ in chunk],
                    [e.request_id for e, _ in chunk],
                    [e.lead.lead_status for e, _ in chunk],
                    [e.lead.product for e, _ in chunk],
                )
                await conn.execute(
                    """INSERT INTO webhook_requests (request_id, workspace_id, webhook_id, status, received_at,
                                                     processed_at, result)
                       SELECT r, w, h, 'processed', now(), now(), x::jsonb
                         FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[]) AS u(r, w, h, x)""",
                    [e.request_id for e, _ in chunk],
                    [e.workspace_id for e, _ in chunk],
                    [e.webhook_id for e, _ in chunk],
                    [result] * len(chunk),
                )
        return len(rows) / (time.monotonic() - started)
    finally:
        await conn.close()


def _pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run() -> list[dict[str, Any]]:
    from infra import Stack

    stack = Stack.for_name(
        f"bench-processor-{os.getpid()}",
        kafka_port=_free_port(),
        kafka_controller_port=_free_port(),
        pg_port=_free_port(),
        pg_fsync=True,
    )
    await stack.start(components=["kafka", "postgres"], timeout_s=180)
    rows: list[dict[str, Any]] = []
    try:
        env = stack.settings_env()
        admin_url = env["LEADWIRE_DATABASE_URL"]
        conn = await asyncpg.connect(admin_url)
        try:
            durability = {
                k: await conn.fetchval(f"SHOW {k}")
                for k in ("fsync", "synchronous_commit", "full_page_writes")
            }
        finally:
            await conn.close()
        fsync_note = "postgres " + ", ".join(f"{k}={v}" for k, v in durability.items())
        rows.append(_row("postgres durability", 1.0, "", fsync_note))

        raw = await _raw(admin_url)
        naive = await _naive(admin_url)
        one, one_note = await _pipeline(env, admin_url, 1)
        two, two_note = await _pipeline(env, admin_url, 2)
        rows += [
            _row(
                "pipeline raw topic -> committed",
                one,
                "leads/s",
                one_note + "; 10 % repeat persons",
            ),
            _row("pipeline raw topic -> committed", two, "leads/s", two_note),
            _row(
                "naive one transaction per lead",
                naive,
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
                "ratio pipeline / naive",
                max(one, two) / naive if naive else 0,
                "x",
                "best of 1 and 2 processors",
            ),
            _row("ratio pipeline / raw ceiling", max(one, two) / raw if raw else 0, "x", ""),
        ]
        kafka_lat = await _kafka_latency(env, admin_url)
        rows += [
            _row(
                f"latency acks->committed @{RATE}/s p50",
                _pct(kafka_lat, 0.50),
                "ms",
                f"{len(kafka_lat)} leads",
            ),
            _row(
                f"latency acks->committed @{RATE}/s p99",
                _pct(kafka_lat, 0.99),
                "ms",
                f"mean {statistics.fmean(kafka_lat):.1f} ms" if kafka_lat else "",
            ),
        ]
        try:
            http = await _http(env, admin_url)
        except Exception as exc:  # the gateway is another service; report, do not hide the rest
            rows.append(
                _row(
                    "http -> committed",
                    0.0,
                    "leads/s",
                    f"gateway run failed: {type(exc).__name__}: {exc}",
                )
            )
        else:
            lat = http["http_latency"]
            rows += [
                _row(
                    "http 202 -> committed (sustained)",
                    http["http_rate"],
                    "leads/s",
                    http["http_note"],
                ),
                _row(
                    "http accepted (202)",
                    http["http_accept_rate"],
                    "req/s",
                    "gateway alone, same run",
                ),
                _row(
                    f"latency http 202->committed @{RATE}/s p50",
                    _pct(lat, 0.50),
                    "ms",
                    f"{len(lat)} leads",
                ),
                _row(
                    f"latency http 202->committed @{RATE}/s p99",
                    _pct(lat, 0.99),
                    "ms",
                    f"mean {statistics.fmean(lat):.1f} ms" if lat else "",
                ),
            ]
    finally:
        await stack.destroy()
    return rows


def main() -> None:
    rows = asyncio.run(run())
    width = max(len(r["metric"]) for r in rows)
    for r in rows:
        value = r["value"]
        shown = f"{value:,.1f}" if isinstance(value, float) else str(value)
        print(f"{r['metric']:<{width}}  {shown:>12} {r['unit']:<8} {r['note']}")


if __name__ == "__main__":
    main()
