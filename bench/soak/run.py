"""One soak: a stack of its own and the notifier's sinks, the configuration, the load under
the fault schedule, the drain, the account, the report; everything stopped again."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from bench.loadgen import LoadGenerator, Mix
from bench.ports import free_ports
from bench.sinks import SmsSink, SmtpSink, sms_env, smtp_env
from bench.soak.account import Account, account
from bench.soak.cluster import judge
from bench.soak.faults import Fault, Faults
from bench.soak.readings import drain, service_health
from bench.soak.render import render
from bench.soak.workspaces import configure, plan_workspaces
from bench.stack import EXTRA_PROCESSOR, LaunchedStack, running_stack, say


@dataclass
class SoakResult:
    account: Account
    meta: dict[str, Any]
    text: str

    @property
    def ok(self) -> bool:
        return not self.account.broken


@dataclass(frozen=True)
class _Options:
    run_id: str
    seconds: float
    rate: float
    short: bool
    drain_s: float
    seed: int


def _stack_env(smtp: SmtpSink, sms: SmsSink) -> dict[str, str]:
    return {
        "LEADWIRE_INGEST_WORKERS": "2",
        # Every vendor comes from 127.0.0.1 here: the per-address limit would throttle them all.
        "LEADWIRE_IP_RATE_PER_MINUTE": "0",
        **smtp_env(smtp),
        "LEADWIRE_SMTP_FROM": "leadwire <soak@leadwire.localhost>",
        **sms_env(sms),
        # A send interrupted by kill -9 is settled (dead-lettered as interrupted) within the drain.
        "LEADWIRE_NOTIFY_SEND_TIMEOUT_S": "5",
        "LEADWIRE_NOTIFY_CLAIM_LEASE_S": "20",
    }


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
    brokers: int = 1,
) -> SoakResult:
    options = _Options(uuid.uuid4().hex[:6], seconds, rate, short, drain_s, seed)
    smtp_port, sms_port = free_ports(2, port_base + 50)
    smtp, sms = SmtpSink(smtp_port), SmsSink(sms_port)
    env = {**_stack_env(smtp, sms), "LEADWIRE_KAFKA_BROKERS": str(brokers)}
    stack = LaunchedStack(stack_name, port_base=port_base, extra_env=env, kafka_brokers=brokers)
    smtp.start()
    await sms.start()
    try:
        async with running_stack(stack):
            result = await _soak(stack, smtp, sms, options)
    finally:
        smtp.stop()
        await sms.stop()
    if destroy_after and result.ok:
        await stack.destroy()
    return result


async def _soak(stack: LaunchedStack, smtp: SmtpSink, sms: SmsSink, opt: _Options) -> SoakResult:
    stack.start_service(EXTRA_PROCESSOR)
    await stack.wait_ready(EXTRA_PROCESSOR)
    plans = plan_workspaces(opt.run_id)
    targets = await configure(stack, plans)
    say(
        f"configured {len(targets)} webhooks in {len(plans)} workspaces; "
        f"load: {opt.rate:g} leads/s for {opt.seconds:.0f} s"
    )
    # On a cluster the load lasts until the last broker fault is over (its restarts take
    # longer than the schedule on a loaded machine), so every fault is judged under load.
    until_faults = stack.stack.config.kafka_brokers >= 3
    seconds = opt.seconds * (5 if until_faults else 1)
    gen = LoadGenerator(
        targets,
        rate=opt.rate,
        total=int(opt.rate * seconds) + 1,
        seconds=seconds,
        mix=Mix(),
        seed=opt.seed,
        run_id=opt.run_id,
        record_path=stack.dir / "requests.jsonl",
    )
    faults = Faults(stack, smtp, sms)
    schedule = faults.schedule(opt.seconds, short=opt.short, clock=gen.elapsed)
    await _load_under_faults(gen, faults, schedule, opt, until_faults=until_faults)
    say(
        f"load done ({len(gen.items)} leads, {len(gen.extras)} retries/conflicts); draining "
        f"(at most {opt.drain_s:.0f} s)"
    )
    drained = await drain(stack, opt.drain_s)
    say(f"drain: {drained}")
    health = await service_health(stack)
    acc = await account(stack, gen, targets, plans, smtp, sms)
    if not drained.get("drained"):
        acc.broken.append(
            f"lag or notifier queue did not drain within {opt.drain_s:.0f} s: {drained}"
        )
    windows, wrong = judge(gen, faults.cluster.windows) if faults.cluster else ([], [])
    acc.broken += wrong
    down = [n for n, ok in health.items() if not ok]
    if down:
        acc.broken.append(f"not ready at the end: {', '.join(down)}")
    meta = {
        "stack": stack.name,
        "run_id": opt.run_id,
        "seconds": (gen.scheduled_until or opt.seconds) if until_faults else opt.seconds,
        "rate": opt.rate,
        "faults": len(faults.records),
        "drain": drained,
        "health": health,
        "fault_records": [vars(r) for r in faults.records],
        "brokers": stack.stack.config.kafka_brokers,
        "gateway_windows": windows,
        "loadgen": gen.summary(),
        "details": acc.details,
    }
    return _report(stack, acc, meta)


async def _load_under_faults(
    gen: LoadGenerator,
    faults: Faults,
    schedule: list[Fault],
    opt: _Options,
    *,
    until_faults: bool = False,
) -> None:
    """The load and the faults at once; ``until_faults``: the load stops a few seconds after
    the last fault (not before ``opt.seconds``)."""
    stop = asyncio.Event()
    load = asyncio.create_task(gen.run(stop))
    fault_task = asyncio.create_task(faults.run(schedule, gen.elapsed))
    progress = asyncio.create_task(_progress(gen, opt.seconds))
    try:
        if until_faults:
            await fault_task
            await asyncio.sleep(max(5.0, opt.seconds - gen.elapsed()))
            stop.set()
        await load
        await fault_task
    finally:
        progress.cancel()
        for task in (load, fault_task):
            if not task.done():
                task.cancel()


async def _progress(gen: LoadGenerator, seconds: float) -> None:
    while True:
        await asyncio.sleep(15)
        acked = sum(1 for i in gen.items.values() if i.acked)
        say(
            f"t={gen.elapsed():.0f}/{seconds:.0f} s: {len(gen.items)} leads sent, {acked} acked, "
            f"answers {dict(gen.counts)}"
        )


def _report(stack: LaunchedStack, acc: Account, meta: dict[str, Any]) -> SoakResult:
    """The account as text and JSON, written next to the run's request records."""
    text = render(acc, meta)
    report = {"meta": meta, "rows": acc.rows, "totals": acc.totals, "broken": acc.broken}
    (stack.dir / "report.json").write_bytes(
        orjson.dumps(report, option=orjson.OPT_INDENT_2, default=str)
    )
    (stack.dir / "report.txt").write_text(text + "\n")
    return SoakResult(acc, meta, text)
