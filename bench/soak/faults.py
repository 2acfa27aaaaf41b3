"""The soak's faults: ``kill -9`` and restart of every service in turn (both processors at
once), a Kafka broker and a Postgres restart, S3, the SMTP server and the SMS provider
stopped for a while; one after the other between 8 % and 72 % of the run (the short
schedule: both processors, Kafka, SMTP, between 15 % and 60 %)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bench.sinks import SmsSink, SmtpSink
from bench.soak.cluster import ClusterFaults
from bench.stack import EXTRA_PROCESSOR, LaunchedStack, say


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
        self, stack: LaunchedStack, smtp: SmtpSink, sms: SmsSink, *, down_s: float = 2.0
    ) -> None:
        self.stack = stack
        self.smtp = smtp
        self.sms = sms
        self.down_s = down_s
        self.records: list[FaultRecord] = []
        self.cluster: ClusterFaults | None = None

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

    def outage(
        self,
        what: str,
        stop: Callable[[], Awaitable[object]],
        start: Callable[[], Awaitable[object]],
        seconds: float,
    ) -> Callable[[], Awaitable[str]]:
        """``what`` stopped for ``seconds``, then started again."""

        async def action() -> str:
            await stop()
            await asyncio.sleep(seconds)
            await start()
            return f"{what} stopped for {seconds:.0f} s"

        return action

    def s3_outage(self, seconds: float) -> Callable[[], Awaitable[str]]:
        s3 = self.stack.stack.s3
        return self.outage("S3", s3.stop, s3.start, seconds)

    def smtp_outage(self, seconds: float) -> Callable[[], Awaitable[str]]:
        smtp = self.smtp
        return self.outage(
            "SMTP server",
            lambda: asyncio.to_thread(smtp.stop),
            lambda: asyncio.to_thread(smtp.start),
            seconds,
        )

    def sms_outage(self, seconds: float) -> Callable[[], Awaitable[str]]:
        return self.outage("SMS provider", self.sms.stop, self.sms.start, seconds)

    def schedule(
        self, seconds: float, *, short: bool, clock: Callable[[], float] = time.monotonic
    ) -> list[Fault]:
        if self.stack.stack.config.kafka_brokers >= 3:
            # A cluster: the broker faults of bench.soak.cluster, and SMTP away (short: not).
            self.cluster = ClusterFaults(self.stack, clock, stop_s=10.0 if short else 30.0)
            plan = self.cluster.plan(short=short)
            if not short:
                plan.append(("stop the SMTP server", self.smtp_outage(min(0.06 * seconds, 40))))
            start, end = (0.1, 0.55) if short else (0.08, 0.6)
            step = (end - start) * seconds / max(len(plan) - 1, 1)
            return [Fault(n, start * seconds + i * step, a) for i, (n, a) in enumerate(plan)]
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
