"""``make soak``: the whole system under load and faults, and a Jepsen-style account.

    python -m bench.soak [--seconds 300] [--rate 25] [--stack soak] [--drain-seconds 240]

1. Starts a named stack (``LEADWIRE_STACK=soak``: its own Kafka, Postgres and S3, its own
   service ports) with the project's launcher (``python -m infra.launch up``), a second
   processor replica, a local SMTP server (aiosmtpd) and a local Twilio-compatible SMS
   provider (aiohttp) that the notifier is pointed at through ``LEADWIRE_SMTP_*`` /
   ``LEADWIRE_SMS_*``.
2. Configures two workspaces with the CLI: five webhooks (generic signed with Standard
   Webhooks, LeadConduit and Zapier unsigned, Facebook signed GitHub-style, BuyerLink
   signed), a board rule, an email rule for every lead and a high-priority SMS rule.
3. Sends leads at a bounded rate (:mod:`bench.loadgen`: unique ids, the same person again,
   vendor retries, key conflicts, bad payloads) while a fault schedule kills (``kill -9``)
   and restarts every service in turn (both processors at once), restarts the Kafka broker
   and Postgres, and stops S3, the SMTP server and the SMS provider for a while.
4. Waits (bounded) for every consumer group's lag and the notifier's queue to drain, then
   counts per webhook: sent, acknowledged, lost, duplicate leads and contacts, unseen,
   notifications sent vs expected, archive objects vs expected, analytics vs the database.
   Exit status 1 if any promise broke.
5. Stops everything it started (``python -m infra.launch down``), also on failure or Ctrl-C.

Every request and its answer goes to ``.leadwire/<stack>/soak/requests.jsonl``; the account
to ``report.json`` next to it; service logs stay in ``.leadwire/<stack>/logs/``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import email
import email.policy
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bench.loadgen import Item, LoadGenerator, Mix, Target
from infra import Stack, list_processes
from infra.processes import pid_alive
from infra.stack import start_process
from shared import topics
from shared.events import outcome_event_id
from shared.s3 import s3_client
from shared.settings import CommonSettings

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("ingest", "processor", "notifier", "analytics", "archiver")
EXTRA_PROCESSOR = "processor-2"
GROUPS = {
    "processor": ("leadwire-processor", (topics.RAW,)),
    "notifier": ("leadwire-notifier", (topics.OUTCOMES, topics.ALERTS)),
    "analytics": ("leadwire-analytics", (topics.OUTCOMES,)),
    "archiver": ("leadwire-archiver", (topics.OUTCOMES,)),
}
SMS_SID = "ACsoak00000000000000000000000000000"
SMS_TOKEN = "soak-sms-token"
SMS_FROM = "+16262150199"
FINAL = ("processed", "failed", "rejected", "duplicate")


def say(message: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_ports(count: int, start: int, *, avoid: Iterable[int] = ()) -> list[int]:
    """``count`` ports from ``start`` up that nothing listens on (below the ephemeral range,
    so an outgoing connection never holds one while its service restarts)."""
    taken = set(avoid)
    found: list[int] = []
    port = start
    while len(found) < count:
        if port >= 32000:
            raise RuntimeError(f"no {count} free ports from {start}")
        if port not in taken:
            with socket.socket() as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind(("127.0.0.1", port))
                    found.append(port)
                except OSError:
                    pass
        port += 1
    return found


# --- the local SMTP server and SMS provider ----------------------------------------------


@dataclass
class Mail:
    rcpt_tos: list[str]
    event_ids: list[str]


class SmtpSink:
    """An aiosmtpd server on 127.0.0.1 (own thread): records every message; ``stop()``
    refuses connections until ``start()`` brings it back on the same port."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.messages: list[Mail] = []
        self._lock = threading.Lock()
        self._controller: Any = None

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        sink = self

        class Handler:
            async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
                msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
                ids = [
                    v.strip()
                    for v in str(msg.get("X-Leadwire-Event-Ids", "")).split(",")
                    if v.strip()
                ]
                with sink._lock:
                    sink.messages.append(Mail(list(envelope.rcpt_tos), ids))
                return "250 OK"

        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def received(self) -> list[Mail]:
        with self._lock:
            return list(self.messages)


class SmsSink:
    """A Twilio-compatible Messages API on 127.0.0.1 (basic auth, form fields)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.messages: list[dict[str, str]] = []
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.Response:
        expected = "Basic " + base64.b64encode(f"{SMS_SID}:{SMS_TOKEN}".encode()).decode()
        if request.match_info["sid"] != SMS_SID or request.headers.get("Authorization") != expected:
            return web.json_response({"message": "unauthorized"}, status=401)
        form = await request.post()
        self.messages.append({k: str(v) for k, v in form.items()})
        return web.json_response({"sid": f"SM{uuid.uuid4().hex}", "status": "queued"}, status=201)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


# --- the stack -----------------------------------------------------------------------------


def settings_from_env(env: dict[str, str]) -> CommonSettings:
    values: dict[str, Any] = {
        k.removeprefix("LEADWIRE_").lower(): v
        for k, v in env.items()
        if k.removeprefix("LEADWIRE_").lower() in CommonSettings.model_fields
    }
    return CommonSettings(**values)


def _base_env() -> dict[str, str]:
    """This process's environment without any LEADWIRE_* (the stack's settings are explicit)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("LEADWIRE_")}


class SoakStack:
    """A named stack started by the project's launcher, plus service restarts for faults."""

    def __init__(
        self,
        name: str,
        *,
        port_base: int,
        extra_env: dict[str, str] | None = None,
        pg_fsync: bool = True,
    ) -> None:
        self.name = name
        self.pg_fsync = pg_fsync
        ports = free_ports(len(SERVICES) + 1, port_base)
        self.ports = dict(zip([*SERVICES, EXTRA_PROCESSOR], ports, strict=True))
        self.overrides = {
            "LEADWIRE_STACK": name,
            "LEADWIRE_PUBLIC_URL": f"http://127.0.0.1:{self.ports['ingest']}",
            "LEADWIRE_LOG_FORMAT": "json",
            **{f"LEADWIRE_{svc.upper()}_PORT": str(self.ports[svc]) for svc in SERVICES},
            **(extra_env or {}),
        }
        self.stack = Stack.for_name(name, ROOT, pg_fsync=pg_fsync)
        self.env: dict[str, str] = {}  # the LEADWIRE_* settings of the running stack
        self.settings: CommonSettings | None = None
        self.dir = self.stack.state_dir / "soak"

    def launcher_env(self) -> dict[str, str]:
        env = {**_base_env(), **self.overrides}
        env["LEADWIRE_INFRA_PG_FSYNC"] = "1" if self.pg_fsync else "0"
        return env

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    async def destroy_previous(self) -> None:
        """Stop whatever an earlier run left and delete its state: a fresh stack each time."""
        await asyncio.to_thread(self._launch_sync, "down")
        await self.stack.destroy()

    async def up(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        log_path = self.dir / "launch.log"
        started = time.monotonic()
        log = await asyncio.to_thread(open, log_path, "ab")
        with log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "infra.launch",
                "up",
                cwd=ROOT,
                env=self.launcher_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                code = await asyncio.wait_for(proc.wait(), 900)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                code = -1
        if code != 0:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
            raise RuntimeError(f"`python -m infra.launch up` failed ({code}):\n{tail}")
        self.stack = Stack.for_name(self.name, ROOT, pg_fsync=self.pg_fsync)
        self.env = self._read_stack_env()
        self.settings = settings_from_env(self.env)
        say(
            f"stack {self.name} up in {time.monotonic() - started:.0f} s "
            f"(services on {min(self.ports.values())}-{max(self.ports.values())})"
        )

    def _read_stack_env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for line in (self.stack.state_dir / "stack.env").read_text().splitlines():
            if not line or line.startswith("#") or "=" not in line:
                continue
            key, _, value = line.partition("=")
            parts = shlex.split(value)
            env[key] = parts[0] if parts else ""
        return env

    def service_env(self, **extra: str) -> dict[str, str]:
        """What the launcher gives a service (settings_env + LEADWIRE_* overrides)."""
        env = {**_base_env(), **self.stack.settings_env(), **self.overrides, **extra}
        return env

    def cli_env(self) -> dict[str, str]:
        return {**_base_env(), **self.env}

    def start_service(self, name: str) -> int:
        module = "processor" if name == EXTRA_PROCESSOR else name
        extra = (
            {"LEADWIRE_PROCESSOR_PORT": str(self.ports[EXTRA_PROCESSOR])}
            if name == EXTRA_PROCESSOR
            else {}
        )
        return start_process(
            name,
            [sys.executable, "-m", f"services.{module}"],
            self.service_env(**extra),
            self.stack,
            inherit_env=False,
        )

    def pids(self) -> dict[str, int]:
        return {p.name: p.pid for p in list_processes(self.stack)}

    async def kill9(self, names: Iterable[str]) -> None:
        """SIGKILL each service's whole process group at once, and wait until it is gone."""
        pids = self.pids()
        victims = [(n, pids[n]) for n in names if n in pids]
        for _, pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        for _ in range(300):  # poll until every group leader is gone (bounded)
            if not any(pid_alive(pid) for _, pid in victims) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)

    async def wait_ready(self, service: str, deadline_s: float = 180.0) -> float:
        port_of = EXTRA_PROCESSOR if service == EXTRA_PROCESSOR else service
        url = f"{self.url(port_of)}/readyz"
        started = time.monotonic()
        async with aiohttp.ClientSession() as http:
            while time.monotonic() - started < deadline_s:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                    async with http.get(url, timeout=aiohttp.ClientTimeout(total=3)) as resp:
                        if resp.status == 200:
                            return time.monotonic() - started
                await asyncio.sleep(0.25)
        raise TimeoutError(f"{service} not ready after {deadline_s:.0f} s")

    def _launch_sync(self, command: str) -> int:
        proc = subprocess.run(
            [sys.executable, "-m", "infra.launch", command],
            cwd=ROOT,
            env=self.launcher_env(),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if proc.returncode != 0:
            say(f"infra.launch {command} exited {proc.returncode}: {proc.stderr[-2000:]}")
        return proc.returncode

    def down(self) -> None:
        """``make down`` for this stack: every service (the extra processor too), then infra."""
        self._launch_sync("down")

    async def destroy(self) -> None:
        await self.stack.destroy()


# --- configuration through the CLI ------------------------------------------------------------


def run_cli(env: dict[str, str], *args: str) -> Any:
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", *args, "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"leadwire {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()[-1000:]}"
        )
    return orjson.loads(proc.stdout)


async def form_webhook(stack: SoakStack) -> Target:
    """A fresh workspace with one unsigned generic webhook (the benchmarks' target)."""
    env = stack.cli_env()
    workspace = f"bench-{uuid.uuid4().hex[:6]}"
    await asyncio.to_thread(run_cli, env, "workspace", "create", workspace)
    doc = await asyncio.to_thread(
        run_cli,
        env,
        "webhook",
        "create",
        "--workspace",
        workspace,
        "--name",
        "form",
        "--template",
        "generic",
        "--auth",
        "none",
    )
    return Target(name="form", id=doc["id"], url=doc["url"], vendor="generic", workspace=workspace)


@dataclass
class WorkspacePlan:
    name: str
    emails: tuple[str, ...]
    high_priority: tuple[str, str]  # (field, value)
    sms: str
    webhooks: list[tuple[str, str, str, float]]  # (name, template, auth, weight)
    board: tuple[str, str, str] | None = None  # (board, field, value)
    id: str = ""


def plan_workspaces(run_id: str) -> list[WorkspacePlan]:
    return [
        WorkspacePlan(
            name=f"soak-{run_id}-acme",
            emails=("sales@acme.example", "ops@acme.example"),
            high_priority=("product", "Solar"),
            sms="+16262150100",
            webhooks=[
                ("site", "generic", "standard", 0.30),
                ("leadconduit", "leadconduit", "none", 0.20),
                ("zapier", "zapier", "none", 0.15),
            ],
            board=("Solar leads", "product", "Solar"),
        ),
        WorkspacePlan(
            name=f"soak-{run_id}-globex",
            emails=("leads@globex.example",),
            high_priority=("urgency", "hot"),
            sms="+16262150101",
            webhooks=[
                ("facebook", "facebook", "github", 0.20),
                ("buyerlink", "buyerlink", "standard", 0.15),
            ],
        ),
    ]


async def configure(stack: SoakStack, plans: list[WorkspacePlan]) -> list[Target]:
    env = stack.cli_env()

    def one(plan: WorkspacePlan) -> list[Target]:
        ws = run_cli(env, "workspace", "create", plan.name, "--default-region", "US")
        plan.id = ws["id"]
        targets = []
        for name, template, auth, weight in plan.webhooks:
            doc = run_cli(
                env,
                "webhook",
                "create",
                "--workspace",
                plan.name,
                "--name",
                name,
                "--template",
                template,
                "--auth",
                auth,
            )
            targets.append(
                Target(
                    name=name,
                    id=doc["id"],
                    url=doc["url"],
                    vendor=template,
                    auth=auth,
                    secret=doc.get("secret"),
                    weight=weight,
                    workspace=plan.name,
                    workspace_id=plan.id,
                )
            )
        if plan.board:
            board, fld, value = plan.board
            run_cli(env, "board", "create", board, "--workspace", plan.name)
            run_cli(
                env,
                "rule",
                "add",
                "--workspace",
                plan.name,
                "--board",
                board,
                "--when",
                f"{fld}={value}",
            )
        run_cli(
            env,
            "notify",
            "set-rule",
            "--workspace",
            plan.name,
            "--event",
            "lead_created",
            "--channel",
            "email",
            "--to",
            ",".join(plan.emails),
        )
        fld, value = plan.high_priority
        run_cli(
            env,
            "notify",
            "high-priority",
            "--workspace",
            plan.name,
            "--when",
            f"{fld}={value}",
            "--sms",
            plan.sms,
        )
        return targets

    results = await asyncio.gather(*(asyncio.to_thread(one, p) for p in plans))
    return [t for group in results for t in group]


# --- faults ---------------------------------------------------------------------------------


@dataclass
class FaultRecord:
    name: str
    planned_at: float
    started_at: float = 0.0
    ended_at: float = 0.0
    detail: str = ""
    error: str | None = None


@dataclass
class Fault:
    name: str
    at: float  # seconds after the load started
    action: Callable[[], Awaitable[str]]


class Faults:
    def __init__(
        self, stack: SoakStack, smtp: SmtpSink, sms: SmsSink, *, down_s: float = 2.0
    ) -> None:
        self.stack = stack
        self.smtp = smtp
        self.sms = sms
        self.down_s = down_s
        self.records: list[FaultRecord] = []

    def kill(self, *names: str) -> Callable[[], Awaitable[str]]:
        async def action() -> str:
            await self.stack.kill9(names)
            await asyncio.sleep(self.down_s)
            for name in names:
                self.stack.start_service(name)
            took = await asyncio.gather(*(self.stack.wait_ready(n) for n in names))
            return ", ".join(
                f"{n} ready again {t:.1f} s after restart" for n, t in zip(names, took, strict=True)
            )

        return action

    def restart(self, component: str) -> Callable[[], Awaitable[str]]:
        async def action() -> str:
            began = time.monotonic()
            await self.stack.stack.restart(component)
            return f"{component} back in {time.monotonic() - began:.1f} s"

        return action

    def postgres_restart(self, down_s: float) -> Callable[[], Awaitable[str]]:
        async def action() -> str:
            began = time.monotonic()
            await self.stack.stack.postgres.stop()
            await asyncio.sleep(down_s)
            await self.stack.stack.postgres.start()
            return f"Postgres down {down_s:.0f} s, back {time.monotonic() - began:.1f} s after the stop"

        return action

    def s3_outage(self, seconds: float) -> Callable[[], Awaitable[str]]:
        async def action() -> str:
            await self.stack.stack.s3.stop()
            await asyncio.sleep(seconds)
            await self.stack.stack.s3.start()
            return f"S3 stopped for {seconds:.0f} s"

        return action

    def smtp_outage(self, seconds: float) -> Callable[[], Awaitable[str]]:
        async def action() -> str:
            await asyncio.to_thread(self.smtp.stop)
            await asyncio.sleep(seconds)
            await asyncio.to_thread(self.smtp.start)
            return f"SMTP server stopped for {seconds:.0f} s"

        return action

    def sms_outage(self, seconds: float) -> Callable[[], Awaitable[str]]:
        async def action() -> str:
            await self.sms.stop()
            await asyncio.sleep(seconds)
            await self.sms.start()
            return f"SMS provider stopped for {seconds:.0f} s"

        return action

    def schedule(self, seconds: float, *, short: bool) -> list[Fault]:
        if short:
            plan = [
                ("kill -9 both processors", self.kill("processor", EXTRA_PROCESSOR)),
                ("restart the Kafka broker", self.restart("kafka")),
                ("stop the SMTP server", self.smtp_outage(max(5.0, seconds * 0.12))),
            ]
            start, end = 0.15 * seconds, 0.6 * seconds
        else:
            outage = min(max(0.06 * seconds, 8.0), 40.0)
            plan = [
                ("kill -9 ingest", self.kill("ingest")),
                ("kill -9 both processors", self.kill("processor", EXTRA_PROCESSOR)),
                ("restart the Kafka broker", self.restart("kafka")),
                ("kill -9 notifier", self.kill("notifier")),
                ("stop S3", self.s3_outage(outage)),
                ("kill -9 analytics", self.kill("analytics")),
                ("restart Postgres", self.postgres_restart(min(max(0.03 * seconds, 3.0), 15.0))),
                ("kill -9 archiver", self.kill("archiver")),
                ("stop the SMTP server", self.smtp_outage(outage)),
                ("stop the SMS provider", self.sms_outage(outage)),
            ]
            start, end = 0.08 * seconds, 0.72 * seconds
        step = (end - start) / max(len(plan) - 1, 1)
        return [Fault(name, start + i * step, action) for i, (name, action) in enumerate(plan)]

    async def run(self, faults: list[Fault], clock: Callable[[], float]) -> None:
        """One fault after the other, each at its time (or as soon as the previous ended)."""
        for fault in faults:
            wait = fault.at - clock()
            if wait > 0:
                await asyncio.sleep(wait)
            rec = FaultRecord(fault.name, fault.at, started_at=clock())
            self.records.append(rec)
            say(f"fault: {fault.name} (t={rec.started_at:.0f} s)")
            try:
                rec.detail = await fault.action()
            except Exception as exc:  # reported, and the soak goes on
                rec.error = f"{type(exc).__name__}: {exc}"
                say(f"fault {fault.name} failed: {rec.error}")
            rec.ended_at = clock()
            say(f"fault done: {fault.name} ({rec.ended_at - rec.started_at:.1f} s) {rec.detail}")


# --- reading what the system did ----------------------------------------------------------------


async def topic_partitions(
    settings: CommonSettings, logical: Iterable[str]
) -> list[TopicPartition]:
    """The partitions of the given topics (those that exist), from fresh cluster metadata."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=5000)
    await asyncio.wait_for(admin.start(), 10)
    try:
        found = await asyncio.wait_for(
            admin.describe_topics([settings.topic(n) for n in logical]), 10
        )
    finally:
        await asyncio.wait_for(admin.close(), 10)
    return [
        TopicPartition(t["topic"], p["partition"])
        for t in found
        if t.get("error_code") == 0
        for p in t.get("partitions", [])
    ]


async def group_lags(settings: CommonSettings) -> dict[str, int]:
    """Per consumer group: end offsets minus committed offsets, over its topics."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=5000)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        request_timeout_ms=5000,
        enable_auto_commit=False,
    )
    await asyncio.wait_for(admin.start(), 10)
    try:
        await asyncio.wait_for(consumer.start(), 10)
        try:
            lags: dict[str, int] = {}
            for service, (group, logical) in GROUPS.items():
                parts = await topic_partitions(settings, logical)
                if len(parts) < len(logical):  # a topic without partitions: not created yet?
                    raise RuntimeError(f"topics of {service} not found: {logical}")
                ends = await asyncio.wait_for(consumer.end_offsets(parts), 10)
                committed = await asyncio.wait_for(admin.list_consumer_group_offsets(group), 10)
                lag = 0
                for tp, end in ends.items():
                    meta = committed.get(tp)
                    done = meta.offset if meta is not None and meta.offset >= 0 else 0
                    lag += max(end - done, 0)
                lags[service] = lag
            return lags
        finally:
            await asyncio.wait_for(consumer.stop(), 10)
    finally:
        await asyncio.wait_for(admin.close(), 10)


async def committed_offsets(settings: CommonSettings, group: str) -> dict[tuple[str, int], int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=5000)
    await asyncio.wait_for(admin.start(), 10)
    try:
        found = await asyncio.wait_for(admin.list_consumer_group_offsets(group), 10)
        return {(tp.topic, tp.partition): m.offset for tp, m in found.items()}
    finally:
        await asyncio.wait_for(admin.close(), 10)


async def read_topic(
    settings: CommonSettings, logical: str
) -> list[tuple[int, int, dict[str, Any]]]:
    """Every message of a topic from offset 0 to its end: (partition, offset, JSON)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await asyncio.wait_for(consumer.start(), 15)
    out: list[tuple[int, int, dict[str, Any]]] = []
    try:
        parts = await topic_partitions(settings, [logical])
        if not parts:
            return out
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            behind = [tp for tp in parts if await consumer.position(tp) < ends[tp]]
            if not behind:
                break
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for tp, records in batch.items():
                for r in records:
                    with contextlib.suppress(ValueError):
                        doc = orjson.loads(r.value)
                        if isinstance(doc, dict):
                            out.append((tp.partition, r.offset, doc))
    finally:
        await asyncio.wait_for(consumer.stop(), 15)
    return out


async def notifier_queue(db_url: str) -> dict[str, int]:
    conn = await asyncpg.connect(db_url, timeout=5)
    try:
        rows = await conn.fetch(
            "SELECT status, count(*) AS n FROM notification_sends GROUP BY status"
        )
        out = {r["status"]: r["n"] for r in rows}
        out["deadletters_unpublished"] = await conn.fetchval(
            "SELECT count(*) FROM notification_deadletters WHERE published_at IS NULL"
        )
        return out
    finally:
        await conn.close()


async def drain(stack: SoakStack, deadline_s: float) -> dict[str, Any]:
    """Wait until every group's lag is 0 and the notifier has nothing pending, twice in a row."""
    assert stack.settings is not None
    started = time.monotonic()
    calm = 0
    polls = 0
    last: dict[str, Any] = {}
    while time.monotonic() - started < deadline_s:
        polls += 1
        if polls % 8 == 0:
            say(f"draining: {last}")
        try:
            lags = await group_lags(stack.settings)
            queue = await notifier_queue(stack.settings.database_url)
            last = {"lags": lags, "queue": queue}
            busy = (
                sum(lags.values())
                + queue.get("pending", 0)
                + queue.get("sending", 0)
                + queue["deadletters_unpublished"]
            )
            calm = calm + 1 if busy == 0 else 0
            if calm >= 3:
                last["seconds"] = round(time.monotonic() - started, 1)
                last["drained"] = True
                return last
        except Exception as exc:  # Kafka or Postgres still coming back: keep polling
            last = {"error": f"{type(exc).__name__}: {exc}"}
        await asyncio.sleep(2.0)
    last["seconds"] = round(time.monotonic() - started, 1)
    last["drained"] = False
    return last


async def service_health(stack: SoakStack) -> dict[str, bool]:
    out = {}
    async with aiohttp.ClientSession() as http:
        for name in [*SERVICES, EXTRA_PROCESSOR]:
            try:
                async with http.get(
                    f"{stack.url(name)}/readyz", timeout=aiohttp.ClientTimeout(total=5)
                ) as r:
                    out[name] = r.status == 200
            except (aiohttp.ClientError, TimeoutError, OSError):
                out[name] = False
    return out


# --- the account -------------------------------------------------------------------------------


def _fold(value: Any) -> str:
    return " ".join(str(value).split()).casefold()


def lead_field(lead: dict[str, Any], name: str) -> Any:
    if name in lead and name != "custom":
        return lead.get(name)
    return (lead.get("custom") or {}).get(name)


@dataclass
class Account:
    rows: list[dict[str, Any]] = field(default_factory=list)  # per webhook
    totals: dict[str, Any] = field(default_factory=dict)
    broken: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


async def account(
    stack: SoakStack,
    gen: LoadGenerator,
    targets: list[Target],
    plans: list[WorkspacePlan],
    smtp: SmtpSink,
    sms: SmsSink,
) -> Account:
    settings = stack.settings
    assert settings is not None
    acc = Account()
    by_id = {t.id: t for t in targets}
    ids = [uuid.UUID(t.id) for t in targets]
    conn = await asyncpg.connect(settings.database_url, timeout=10)
    try:
        lead_rows = await conn.fetch(
            """SELECT l.webhook_id::text AS webhook_id, l.contact_id::text AS contact_id,
                      l.request_id::text AS request_id,
                      wr.result->'lead'->'custom'->>'soak_id' AS soak_id
               FROM leads l LEFT JOIN webhook_requests wr ON wr.request_id = l.request_id
               WHERE l.webhook_id = ANY($1::uuid[])""",
            ids,
        )
        request_rows = await conn.fetch(
            """SELECT request_id::text AS request_id, webhook_id::text AS webhook_id, status,
                      CASE WHEN status = 'processed' THEN result->'lead' END AS lead
               FROM webhook_requests WHERE webhook_id = ANY($1::uuid[])""",
            ids,
        )
        contact_counts = {
            str(r["workspace_id"]): r["n"]
            for r in await conn.fetch(
                "SELECT workspace_id, count(*) AS n FROM contacts WHERE workspace_id = ANY($1::uuid[]) GROUP BY 1",
                [uuid.UUID(p.id) for p in plans],
            )
        }
        sends = await conn.fetch(
            "SELECT channel, status, count(*) AS n FROM notification_sends GROUP BY 1, 2"
        )
    finally:
        await conn.close()
    acc.details["notification_sends"] = {f"{r['channel']}/{r['status']}": r["n"] for r in sends}

    raw = await read_topic(settings, topics.RAW)
    outcomes = await read_topic(settings, topics.OUTCOMES)
    deadletters = await read_topic(settings, topics.NOTIFY_DEADLETTER)
    committed = await committed_offsets(settings, GROUPS["processor"][0])

    # Leads by soak id, and soak ids in the raw topic (with whether the processor is past them).
    leads_of: dict[str, list[dict[str, Any]]] = defaultdict(list)
    unattributed: Counter[str] = Counter()
    for r in lead_rows:
        if r["soak_id"]:
            leads_of[r["soak_id"]].append(dict(r))
        else:
            unattributed[r["webhook_id"]] += 1
    in_raw: dict[str, bool] = {}  # soak id -> True if some copy is beyond the committed offset
    raw_topic = settings.topic(topics.RAW)
    for partition, offset, doc in raw:
        sid = ((doc.get("lead") or {}).get("custom") or {}).get("soak_id")
        if isinstance(sid, str):
            pending = offset >= committed.get((raw_topic, partition), 0)
            in_raw[sid] = in_raw.get(sid, False) or pending

    # Requests in the database, outcomes in Kafka, per webhook.
    db_status: dict[str, dict[str, str]] = defaultdict(dict)
    processed_leads: dict[str, dict[str, Any]] = {}
    for r in request_rows:
        db_status[r["webhook_id"]][r["request_id"]] = r["status"]
        if r["status"] == "processed" and r["lead"] is not None:
            lead = orjson.loads(r["lead"]) if isinstance(r["lead"], str) else r["lead"]
            processed_leads[r["request_id"]] = lead if isinstance(lead, dict) else {}
    outcome_type: dict[str, dict[str, str]] = defaultdict(dict)
    outcome_ids: dict[str, set[str]] = defaultdict(set)
    for _, _, doc in outcomes:
        wid, rid = str(doc.get("webhook_id")), str(doc.get("request_id"))
        outcome_type[wid][rid] = str(doc.get("type", "")).removeprefix("lead.")
        outcome_ids[wid].add(str(doc.get("event_id")))

    # Archive objects.
    archived: dict[str, set[str]] = defaultdict(set)
    pointers: set[str] = set()
    async with s3_client(settings) as s3:
        paginator = s3.get_paginator("list_objects_v2")
        for t in targets:
            async for page in paginator.paginate(
                Bucket=settings.s3_bucket, Prefix=f"{t.workspace_id}/{t.id}/"
            ):
                for obj in page.get("Contents", []):
                    archived[t.id].add(obj["Key"].rsplit("/", 1)[-1].removesuffix(".json"))
        async for page in paginator.paginate(Bucket=settings.s3_bucket, Prefix="by-request/"):
            for obj in page.get("Contents", []):
                pointers.add(obj["Key"].rsplit("/", 1)[-1].removesuffix(".json"))

    # Analytics.
    analytics: dict[str, dict[str, Any]] = {}
    async with aiohttp.ClientSession() as http:
        for t in targets:
            async with http.get(
                f"{stack.url('analytics')}/analytics/webhooks/{t.id}",
                timeout=aiohttp.ClientTimeout(total=15),
            ) as resp:
                analytics[t.id] = (await resp.json())["metrics"] if resp.status == 200 else {}

    # Notifications: expected from the processed leads, received at the servers, dead-lettered.
    plan_of = {p.id: p for p in plans}
    expected: dict[tuple[str, str, str], str] = {}  # (event, channel, recipient) -> webhook id
    prefix_to_event: dict[str, str] = {}
    for wid, statuses in db_status.items():
        plan = plan_of[by_id[wid].workspace_id]
        for rid, status in statuses.items():
            if status != "processed":
                continue
            eid = str(outcome_event_id(uuid.UUID(rid)))
            prefix_to_event[eid[:8]] = eid
            for to in plan.emails:
                expected[(eid, "email", to)] = wid
            lead = processed_leads.get(rid) or {}
            fld, value = plan.high_priority
            actual = lead_field(lead, fld)
            if actual is not None and _fold(actual) == _fold(value):
                expected[(eid, "sms", plan.sms)] = wid
    got: Counter[tuple[str, str, str]] = Counter()
    for mail in smtp.received():
        for to in mail.rcpt_tos:
            for eid in mail.event_ids:
                got[(eid, "email", to)] += 1
    for msg in sms.messages:
        for prefix in re.findall(r"\[ref ([0-9a-f]{8})\]", msg.get("Body", "")):
            got[(prefix_to_event.get(prefix, prefix), "sms", msg.get("To", ""))] += 1
    dead: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for _, _, entry in deadletters:
        for eid in entry.get("event_ids") or []:
            dead[(str(eid), str(entry.get("channel")), str(entry.get("recipient")))].append(
                str(entry.get("reason"))
            )

    # Per webhook.
    items_of: dict[str, list[Item]] = defaultdict(list)
    for item in gen.items.values():
        items_of[item.target.id].append(item)
    extras_of: dict[str, list[Item]] = defaultdict(list)
    for item in gen.extras:
        extras_of[item.target.id].append(item)

    issues: dict[str, list[str]] = {}
    for t in targets:
        leads_items = [i for i in items_of[t.id] if i.kind in ("new", "repeat")]
        bad_items = [i for i in items_of[t.id] if i.kind == "bad"]
        acked = [i for i in leads_items if i.acked]
        lost_gateway = lost_processor = unseen = 0
        lost_ids: list[str] = []
        for i in acked:
            if leads_of.get(i.soak_id):
                continue
            if i.soak_id not in in_raw:
                lost_gateway += 1
                lost_ids.append(i.soak_id)
            elif in_raw[i.soak_id]:
                unseen += 1
            else:
                lost_processor += 1
                lost_ids.append(i.soak_id)
        soak_ids = {i.soak_id for i in items_of[t.id]}
        dup_ids = [k for k, v in leads_of.items() if k in soak_ids and len(v) > 1]
        dup_leads = sum(len(leads_of[k]) - 1 for k in dup_ids)
        dup_causes: Counter[str] = Counter()
        for k in dup_ids:
            item = gen.items[k]
            earlier = [a.status for a in item.attempts[:-1]]
            if item.key is None and 503 in earlier:
                dup_causes["unkeyed retry after a 503 ('nothing was accepted')"] += (
                    len(leads_of[k]) - 1
                )
            elif item.key is None and None in earlier:
                dup_causes["unkeyed retry after a refused connection"] += len(leads_of[k]) - 1
            else:
                dup_causes["keyed" if item.key else "sent once"] += len(leads_of[k]) - 1
        phantom = sum(
            len(v)
            for k, v in leads_of.items()
            if k not in soak_ids and v and v[0]["webhook_id"] == t.id
        )
        contacts_of_person: dict[int, set[str]] = defaultdict(set)
        for i in leads_items:
            if i.person is not None:
                for lead in leads_of.get(i.soak_id, []):
                    contacts_of_person[i.person.n].add(lead["contact_id"])
        dup_contacts = sum(len(c) - 1 for c in contacts_of_person.values() if len(c) > 1)
        indeterminate = [i for i in leads_items if i.final in ("indeterminate", "gave_up")]
        bad_accepted = sum(1 for i in bad_items if i.acked)
        bad_400 = sum(1 for i in bad_items if i.final == "refused" and i.last_status == 400)
        retries = [i for i in extras_of[t.id] if i.kind == "retry"]
        conflicts = [i for i in extras_of[t.id] if i.kind == "conflict"]
        retry_refused = sum(1 for i in retries if i.final == "refused")
        gateway_rejections = {
            i.request_id for i in [*bad_items, *conflicts] if i.final == "refused" and i.request_id
        }

        # The database's finished requests vs outcomes, analytics and the archive.
        statuses = db_status.get(t.id, {})
        db_counts = Counter(
            "rejected" if s == "duplicate" else s for s in statuses.values() if s in FINAL
        )
        final_ids = {rid for rid, s in statuses.items() if s in FINAL}
        outcome_rids = set(outcome_type.get(t.id, {}))
        a = analytics.get(t.id, {})
        a_counts = {
            "processed": a.get("successful_requests"),
            "failed": a.get("failed_requests"),
            "rejected": a.get("rejected_requests"),
            "total": a.get("total_requests"),
        }
        db_total = sum(db_counts.values())
        out_counts = Counter(outcome_type.get(t.id, {}).values())
        archive_ids = archived.get(t.id, set())
        rejections_not_in_db = len(gateway_rejections - set(statuses))

        def notif(channel: str, t_id: str = t.id) -> dict[str, int]:
            keys = [k for k, w in expected.items() if w == t_id and k[1] == channel]
            row = Counter(expected=len(keys))
            for k in keys:
                n, dl = got.get(k, 0), dead.get(k, [])
                if n == 1 and not dl:
                    row["sent"] += 1
                elif n == 0 and dl:
                    row["deadlettered"] += 1
                elif n == 0:
                    row["missing"] += 1
                elif n > 1:
                    row["sent_twice"] += 1
                if n >= 1 and dl:
                    if all(r == "interrupted" for r in dl):
                        row["sent_and_interrupted"] += 1
                    else:
                        row["sent_and_deadlettered"] += 1
            return dict(row)

        email_row, sms_row = notif("email"), notif("sms")
        row = {
            "webhook": t.name,
            "vendor": t.vendor,
            "auth": t.auth,
            "keyed": t.keyed,
            "sent": len(leads_items),
            "acked": len(acked),
            "not_acked": len(leads_items) - len(acked),
            "indeterminate": len(indeterminate),
            "delivered": sum(1 for i in acked if leads_of.get(i.soak_id)),
            "lost": lost_gateway + lost_processor,
            "lost_gateway": lost_gateway,
            "lost_processor": lost_processor,
            "unseen": unseen,
            "dup_leads": dup_leads,
            "dup_causes": dict(dup_causes),
            "dup_contacts": dup_contacts,
            "phantom_leads": phantom,
            "unattributed_leads": unattributed.get(t.id, 0),
            "repeats": sum(1 for i in leads_items if i.kind == "repeat"),
            "bad": len(bad_items),
            "bad_400": bad_400,
            "bad_accepted": bad_accepted,
            "vendor_retries": len(retries),
            "retries_refused": retry_refused,
            "conflicts": len(conflicts),
            "conflicts_409": sum(1 for i in conflicts if i.last_status == 409),
            "answered_503": sum(
                1
                for i in [*leads_items, *bad_items, *retries, *conflicts]
                for s in i.status_codes
                if s == 503
            ),
            "db": dict(db_counts),
            "db_total": db_total,
            "outcomes": dict(out_counts),
            "outcomes_missing": len(final_ids - outcome_rids),
            "outcomes_not_in_db": len(outcome_rids - final_ids),
            "rejections_not_in_db": rejections_not_in_db,
            "analytics": a_counts,
            "archive_expected": len(final_ids),
            "archive_records": len(archive_ids & final_ids),
            "archive_missing": len(final_ids - archive_ids),
            "archive_extra": len(archive_ids - final_ids),
            "pointers_missing": len(set(outcome_type.get(t.id, {})) - pointers),
            "email": email_row,
            "sms": sms_row,
            "examples": {
                "lost": lost_ids[:10],
                "no_outcome": [
                    f"{rid} ({statuses[rid]})" for rid in sorted(final_ids - outcome_rids)[:10]
                ],
                "not_archived": sorted(final_ids - archive_ids)[:10],
                "dup_leads": dup_ids[:10],
            },
        }
        acc.rows.append(row)
        name = t.name

        def breach(what: str, detail: object, name: str = name) -> None:
            issues.setdefault(what, []).append(f"{name} {detail}")

        for key, what in (
            ("lost", "LOST: acknowledged, never in the database"),
            ("unseen", "UNSEEN: acknowledged, not processed after the drain"),
            ("dup_contacts", "DUPLICATE CONTACTS"),
            ("phantom_leads", "leads with an id the generator never sent"),
            ("bad_accepted", "bad payloads acknowledged"),
            ("retries_refused", "vendor retries (same key, same body) refused"),
        ):
            if row[key]:
                breach(what, row[key])
        for cause, count in dup_causes.items():
            breach(f"DUPLICATE LEADS: {cause}", count)
        if row["outcomes_missing"]:
            breach(
                "requests finished in the database without an outcome event (so not counted, "
                "not archived, not notified)",
                row["outcomes_missing"],
            )
        without_row = len(outcome_rids - final_ids)
        if without_row or rejections_not_in_db:
            breach(
                "outcome events (gateway rejections) without a database row",
                max(without_row, rejections_not_in_db),
            )
        # The consumers against what they consume (the outcome topic) ...
        mismatch = [
            f"{k} {a_counts[k]}/{out_counts.get(k, 0)}"
            for k in ("processed", "failed", "rejected")
            if (a_counts[k] or 0) != out_counts.get(k, 0)
        ]
        if mismatch:
            breach("analytics != outcome topic", ", ".join(mismatch))
        outcome_final = set(outcome_type.get(t.id, {}))
        if outcome_final - archive_ids or archive_ids - outcome_final:
            breach(
                "archive != outcome topic (missing/extra)",
                f"{len(outcome_final - archive_ids)}/{len(archive_ids - outcome_final)}",
            )
        if row["pointers_missing"]:
            breach("archive pointers missing", row["pointers_missing"])
        # ... and against the database.
        mismatch = [
            f"{k} {a_counts[k]}/{db_counts.get(k, 0)}"
            for k in ("processed", "failed", "rejected")
            if (a_counts[k] or 0) != db_counts.get(k, 0)
        ]
        if mismatch:
            breach("analytics != database (analytics/db)", ", ".join(mismatch))
        if row["archive_missing"] or row["archive_extra"]:
            breach(
                "archive != database (missing/extra)",
                f"{row['archive_missing']}/{row['archive_extra']}",
            )
        for channel in ("email", "sms"):
            n = email_row if channel == "email" else sms_row
            for key in ("missing", "sent_twice", "sent_and_deadlettered"):
                if n.get(key):
                    breach(f"{channel} notifications {key.replace('_', ' ')}", n[key])

    for what, where in issues.items():
        acc.broken.append(f"{what}: {', '.join(where)}")
    unexpected = [k for k in got if k not in expected]
    if unexpected:
        acc.broken.append(f"notifications for no expected event: {len(unexpected)}")
    for plan in plans:
        persons = {
            i.person.n
            for i in gen.items.values()
            if i.person is not None and i.target.workspace_id == plan.id and leads_of.get(i.soak_id)
        }
        have = contact_counts.get(plan.id, 0)
        acc.details[f"contacts_{plan.name}"] = {"contacts": have, "people_with_leads": len(persons)}
        if have != len(persons):
            acc.broken.append(f"{plan.name}: {have} contacts for {len(persons)} people")
    acc.details["unexpected_notifications"] = len(unexpected)
    acc.totals = {
        k: sum(r[k] for r in acc.rows)
        for k in (
            "sent",
            "acked",
            "not_acked",
            "indeterminate",
            "delivered",
            "lost",
            "unseen",
            "dup_leads",
            "dup_contacts",
            "bad",
            "bad_400",
            "bad_accepted",
            "vendor_retries",
            "conflicts",
            "answered_503",
        )
    }
    return acc


# --- printing -------------------------------------------------------------------------------------


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[str(c) for c in r] for r in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)
    ]
    lines = [
        "  ".join(
            h.rjust(w) if i else h.ljust(w)
            for i, (h, w) in enumerate(zip(headers, widths, strict=True))
        )
    ]
    for r in cells:
        lines.append(
            "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    return "\n".join(lines)


def render(acc: Account, meta: dict[str, Any]) -> str:
    out = [
        f"\nleadwire soak: {meta['seconds']:.0f} s of load at {meta['rate']:g} leads/s, "
        f"stack {meta['stack']}, {meta['faults']} faults; lag drained: "
        f"{meta['drain'].get('drained')} after {meta['drain'].get('seconds')} s\n"
    ]
    out.append("Delivery (leads with a unique id; acked = answered 2xx)")
    headers = [
        "webhook",
        "sent",
        "acked",
        "delivered",
        "lost",
        "dup leads",
        "dup contacts",
        "unseen",
        "not acked",
        "indeterm.",
        "repeats",
        "retries",
        "conflicts",
        "bad->400",
        "bad acked",
        "503s",
    ]
    rows = [
        [
            r["webhook"],
            r["sent"],
            r["acked"],
            r["delivered"],
            r["lost"],
            r["dup_leads"],
            r["dup_contacts"],
            r["unseen"],
            r["not_acked"],
            r["indeterminate"],
            r["repeats"],
            r["vendor_retries"],
            f"{r['conflicts_409']}/{r['conflicts']}",
            f"{r['bad_400']}/{r['bad']}",
            r["bad_accepted"],
            r["answered_503"],
        ]
        for r in acc.rows
    ]
    t = acc.totals
    rows.append(
        [
            "TOTAL",
            t["sent"],
            t["acked"],
            t["delivered"],
            t["lost"],
            t["dup_leads"],
            t["dup_contacts"],
            t["unseen"],
            t["not_acked"],
            t["indeterminate"],
            "",
            t["vendor_retries"],
            t["conflicts"],
            f"{t['bad_400']}/{t['bad']}",
            t["bad_accepted"],
            t["answered_503"],
        ]
    )
    out.append(_table(headers, rows))
    out.append("\nConsumers vs the database (db = finished requests: processed/failed/rejected)")
    headers = [
        "webhook",
        "db p/f/r",
        "outcomes miss",
        "analytics p/f/r",
        "archive have/exp",
        "email sent/dlq/exp",
        "email 2x|miss",
        "sms sent/dlq/exp",
        "sms 2x|miss",
    ]
    rows = []
    for r in acc.rows:
        db, an, em, sm = r["db"], r["analytics"], r["email"], r["sms"]
        rows.append(
            [
                r["webhook"],
                f"{db.get('processed', 0)}/{db.get('failed', 0)}/{db.get('rejected', 0)}",
                r["outcomes_missing"],
                f"{an['processed']}/{an['failed']}/{an['rejected']}",
                f"{r['archive_records']}/{r['archive_expected']}",
                f"{em.get('sent', 0)}/{em.get('deadlettered', 0)}/{em.get('expected', 0)}",
                f"{em.get('sent_twice', 0)}|{em.get('missing', 0)}",
                f"{sm.get('sent', 0)}/{sm.get('deadlettered', 0)}/{sm.get('expected', 0)}",
                f"{sm.get('sent_twice', 0)}|{sm.get('missing', 0)}",
            ]
        )
    out.append(_table(headers, rows))
    out.append("\nFaults")
    for f in meta["fault_records"]:
        line = f"  t={f['started_at']:5.0f} s  {f['name']:<28} {f['ended_at'] - f['started_at']:5.1f} s  {f['detail']}"
        out.append(line + (f"  ERROR {f['error']}" if f["error"] else ""))
    if acc.broken:
        out.append("\nPROMISES BROKEN:")
        out += [f"  - {b}" for b in acc.broken]
    else:
        out.append(
            "\nAll promises held: lost 0, duplicates 0, unseen 0, every consumer matches the database."
        )
    return "\n".join(out)


# --- the run --------------------------------------------------------------------------------------


@dataclass
class SoakResult:
    account: Account
    meta: dict[str, Any]
    text: str

    @property
    def ok(self) -> bool:
        return not self.account.broken


@contextlib.asynccontextmanager
async def running_stack(stack: SoakStack, *, fresh: bool = True) -> AsyncIterator[SoakStack]:
    """The stack up for the block, and always down after it (errors, Ctrl-C, cancellation)."""
    try:
        if fresh:
            await stack.destroy_previous()
        await stack.up()
        yield stack
    finally:
        say(f"stopping stack {stack.name}")
        stack.down()
        saved = keep_artifacts(stack)
        if saved is not None:
            say(f"logs and records kept in {saved.relative_to(ROOT)}")


def keep_artifacts(stack: SoakStack, keep: int = 10) -> Path | None:
    """Copy the run's service logs and request records to test-output/soak/ (newest few)."""
    out = ROOT / "test-output" / "soak"
    dest = out / f"{stack.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        for sub in ("logs", "soak"):
            src = stack.stack.state_dir / sub
            if src.is_dir():
                shutil.copytree(src, dest / sub, dirs_exist_ok=True)
        for old in sorted(out.iterdir(), key=lambda p: p.stat().st_mtime)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        say(f"could not keep the run's logs: {exc}")
        return None
    return dest if dest.exists() else None


async def run_soak(
    *,
    seconds: float = 300.0,
    rate: float = 25.0,
    stack_name: str = "soak",
    short: bool = False,
    drain_s: float = 300.0,
    port_base: int = 18400,
    destroy_after: bool = False,
    seed: int = 7,
) -> SoakResult:
    run_id = uuid.uuid4().hex[:6]
    smtp_port, sms_port = free_ports(2, port_base + 50)
    smtp, sms = SmtpSink(smtp_port), SmsSink(sms_port)
    extra_env = {
        "LEADWIRE_INGEST_WORKERS": "2",
        # Every vendor comes from 127.0.0.1 here: the per-address limit would throttle them all.
        "LEADWIRE_IP_RATE_PER_MINUTE": "0",
        "LEADWIRE_SMTP_HOST": "127.0.0.1",
        "LEADWIRE_SMTP_PORT": str(smtp_port),
        "LEADWIRE_SMTP_STARTTLS": "false",
        "LEADWIRE_SMTP_FROM": "leadwire <soak@leadwire.localhost>",
        "LEADWIRE_SMS_BASE_URL": sms.base_url,
        "LEADWIRE_SMS_ACCOUNT_SID": SMS_SID,
        "LEADWIRE_SMS_AUTH_TOKEN": SMS_TOKEN,
        "LEADWIRE_SMS_FROM": SMS_FROM,
        # A send interrupted by kill -9 is settled (dead-lettered as interrupted) within the drain.
        "LEADWIRE_NOTIFY_SEND_TIMEOUT_S": "5",
        "LEADWIRE_NOTIFY_CLAIM_LEASE_S": "20",
    }
    stack = SoakStack(stack_name, port_base=port_base, extra_env=extra_env)
    smtp.start()
    await sms.start()
    try:
        async with running_stack(stack):
            stack.start_service(EXTRA_PROCESSOR)
            await stack.wait_ready(EXTRA_PROCESSOR)
            plans = plan_workspaces(run_id)
            targets = await configure(stack, plans)
            say(
                f"configured {len(targets)} webhooks in {len(plans)} workspaces; "
                f"load: {rate:g} leads/s for {seconds:.0f} s"
            )
            gen = LoadGenerator(
                targets,
                rate=rate,
                total=int(rate * seconds) + 1,
                seconds=seconds,
                mix=Mix(),
                seed=seed,
                run_id=run_id,
                record_path=stack.dir / "requests.jsonl",
            )
            faults = Faults(stack, smtp, sms)
            schedule = faults.schedule(seconds, short=short)
            load = asyncio.create_task(gen.run())
            fault_task = asyncio.create_task(faults.run(schedule, gen.elapsed))
            progress = asyncio.create_task(_progress(gen, seconds))
            try:
                await load
                await fault_task
            finally:
                progress.cancel()
                for task in (load, fault_task):
                    if not task.done():
                        task.cancel()
            say(
                f"load done ({len(gen.items)} leads, {len(gen.extras)} retries/conflicts); draining "
                f"(at most {drain_s:.0f} s)"
            )
            drained = await drain(stack, drain_s)
            say(f"drain: {drained}")
            health = await service_health(stack)
            acc = await account(stack, gen, targets, plans, smtp, sms)
            if not drained.get("drained"):
                acc.broken.append(
                    f"lag or notifier queue did not drain within {drain_s:.0f} s: {drained}"
                )
            down = [n for n, ok in health.items() if not ok]
            if down:
                acc.broken.append(f"not ready at the end: {', '.join(down)}")
            meta = {
                "stack": stack_name,
                "run_id": run_id,
                "seconds": seconds,
                "rate": rate,
                "faults": len(faults.records),
                "drain": drained,
                "health": health,
                "fault_records": [vars(r) for r in faults.records],
                "loadgen": gen.summary(),
                "details": acc.details,
            }
            text = render(acc, meta)
            report = {"meta": meta, "rows": acc.rows, "totals": acc.totals, "broken": acc.broken}
            (stack.dir / "report.json").write_bytes(
                orjson.dumps(report, option=orjson.OPT_INDENT_2, default=str)
            )
            (stack.dir / "report.txt").write_text(text + "\n")
            result = SoakResult(acc, meta, text)
    finally:
        smtp.stop()
        await sms.stop()
    if destroy_after and result.ok:
        await stack.destroy()
    return result


async def _progress(gen: LoadGenerator, seconds: float) -> None:
    while True:
        await asyncio.sleep(15)
        acked = sum(1 for i in gen.items.values() if i.acked)
        say(
            f"t={gen.elapsed():.0f}/{seconds:.0f} s: {len(gen.items)} leads sent, {acked} acked, "
            f"answers {dict(gen.counts)}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", 300)))
    parser.add_argument("--rate", type=float, default=25.0, help="leads per second (default 25)")
    parser.add_argument("--stack", default=os.environ.get("LEADWIRE_SOAK_STACK", "soak"))
    parser.add_argument("--drain-seconds", type=float, default=300.0)
    parser.add_argument("--short", action="store_true", help="the short fault schedule (tests)")
    parser.add_argument("--port-base", type=int, default=18400)
    args = parser.parse_args(argv)

    async def _main() -> SoakResult:
        # SIGTERM ends the run like Ctrl-C: the task is cancelled and the stack stopped.
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await run_soak(
            seconds=args.seconds,
            rate=args.rate,
            stack_name=args.stack,
            short=args.short,
            drain_s=args.drain_seconds,
            port_base=args.port_base,
        )

    try:
        result = asyncio.run(_main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        say("interrupted; the stack was stopped")
        return 130
    print(result.text, flush=True)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
