"""A stack of the whole system for a benchmark: started by the project's launcher, with
restarts and ``kill -9`` for faults, configured through the CLI, always stopped again.

The soak (:mod:`bench.soak`), :mod:`bench.pipeline` and :mod:`bench.memory` run on it; the
per-service benchmarks use :func:`settings_from_env` and :func:`wait_ready` from here too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.loadgen import Target
from bench.ports import free_ports
from infra import Stack, list_processes
from infra.launch import gateway_workers
from infra.processes import pid_alive
from infra.stack import start_process
from shared.settings import CommonSettings

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("ingest", "processor", "notifier", "analytics", "archiver", "api")
EXTRA_PROCESSOR = "processor-2"


def say(message: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def settings_from_env(env: Mapping[str, str], **overrides: Any) -> CommonSettings:
    """The common settings a service reads from ``env`` (its LEADWIRE_* variables)."""
    values: dict[str, Any] = {}
    for key, value in env.items():
        name = key.removeprefix("LEADWIRE_").lower()
        if key.startswith("LEADWIRE_") and name in CommonSettings.model_fields:
            values[name] = value
    return CommonSettings(**{**values, **overrides})


async def wait_ready(
    url: str,
    *,
    what: str,
    deadline_s: float,
    interval_s: float = 0.25,
    check: Callable[[], None] | None = None,
) -> float:
    """Poll ``url`` until it answers 200: the seconds it took. ``check`` may raise to stop
    waiting (e.g. the process exited)."""
    started = time.monotonic()
    async with aiohttp.ClientSession() as http:
        while time.monotonic() - started < deadline_s:
            if check is not None:
                check()
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                async with http.get(url, timeout=aiohttp.ClientTimeout(total=3)) as resp:
                    if resp.status == 200:
                        return time.monotonic() - started
            await asyncio.sleep(interval_s)
    raise TimeoutError(f"{what} not ready after {deadline_s:.0f} s")


def _base_env() -> dict[str, str]:
    """This process's environment without any LEADWIRE_* (the stack's settings are explicit)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("LEADWIRE_")}


def _read_env_file(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        parts = shlex.split(value)
        env[key] = parts[0] if parts else ""
    return env


class LaunchedStack:
    """A named stack started by the project's launcher, plus service restarts for faults."""

    def __init__(
        self,
        name: str,
        *,
        port_base: int,
        extra_env: dict[str, str] | None = None,
        pg_fsync: bool = True,
        kafka_brokers: int = 1,
    ) -> None:
        self.name = name
        self.pg_fsync = pg_fsync
        self.kafka_brokers = kafka_brokers
        names = [*SERVICES, EXTRA_PROCESSOR]
        ports = free_ports(2 * len(names), port_base)
        self.ports = dict(zip(names, ports[: len(names)], strict=True))
        # /healthz, /readyz and /metrics: every service's ops listener.
        self.ops_ports = dict(zip(names, ports[len(names) :], strict=True))
        self.overrides = {
            "LEADWIRE_STACK": name,
            "LEADWIRE_PUBLIC_URL": f"http://127.0.0.1:{self.ports['ingest']}",
            "LEADWIRE_LOG_FORMAT": "json",
            **{f"LEADWIRE_{svc.upper()}_PORT": str(self.ports[svc]) for svc in SERVICES},
            **{f"LEADWIRE_{svc.upper()}_OPS_PORT": str(self.ops_ports[svc]) for svc in SERVICES},
            **(extra_env or {}),
        }
        self.stack = Stack.for_name(name, ROOT, pg_fsync=pg_fsync, kafka_brokers=kafka_brokers)
        self.env: dict[str, str] = {}  # the LEADWIRE_* settings of the running stack
        self.settings: CommonSettings | None = None
        self.dir = self.stack.state_dir / "soak"

    @property
    def gateway_workers(self) -> int:
        """The running stack's gateway processes (``LEADWIRE_INGEST_WORKERS``; the
        launcher's own choice when its stack.env does not say)."""
        return int(self.env.get("LEADWIRE_INGEST_WORKERS") or gateway_workers())

    def launcher_env(self) -> dict[str, str]:
        env = {**_base_env(), **self.overrides}
        env["LEADWIRE_INFRA_PG_FSYNC"] = "1" if self.pg_fsync else "0"
        return env

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def auth(self) -> dict[str, str]:
        """The operator's read key ``make up`` made (LEADWIRE_OPERATOR_KEY in stack.env), as
        the header every analytics read needs."""
        return {"Authorization": f"Bearer {self.env['LEADWIRE_OPERATOR_KEY']}"}

    def ops_url(self, service: str) -> str:
        """Where ``service``'s /healthz, /readyz and /metrics answer."""
        return f"http://127.0.0.1:{self.ops_ports[service]}"

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
        self.stack = Stack.for_name(
            self.name, ROOT, pg_fsync=self.pg_fsync, kafka_brokers=self.kafka_brokers
        )
        self.env = _read_env_file(self.stack.state_dir / "stack.env")
        self.settings = settings_from_env(self.env)
        say(
            f"stack {self.name} up in {time.monotonic() - started:.0f} s "
            f"(services on {min(self.ports.values())}-{max(self.ports.values())})"
        )

    def service_env(self, **extra: str) -> dict[str, str]:
        """What the launcher gives a service (settings_env + LEADWIRE_* overrides)."""
        return {**_base_env(), **self.stack.settings_env(), **self.overrides, **extra}

    def cli_env(self) -> dict[str, str]:
        return {**_base_env(), **self.env}

    def start_service(self, name: str) -> int:
        module = "processor" if name == EXTRA_PROCESSOR else name
        extra = (
            {"LEADWIRE_PROCESSOR_OPS_PORT": str(self.ops_ports[EXTRA_PROCESSOR])}
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
        return await wait_ready(
            f"{self.ops_url(service)}/readyz", what=service, deadline_s=deadline_s
        )

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


def make_up_stack(name: str, port_base: int) -> LaunchedStack:
    """The stack a whole-system measurement runs on: as ``make up`` runs it (Postgres fsync
    on; the gateway's processes: :func:`infra.launch.gateway_workers`), with no per-IP
    limit (one client sends from 127.0.0.1)."""
    return LaunchedStack(
        name,
        port_base=port_base,
        extra_env={"LEADWIRE_IP_RATE_PER_MINUTE": "0"},
        pg_fsync=True,
    )


@contextlib.asynccontextmanager
async def running_stack(
    stack: LaunchedStack, *, fresh: bool = True
) -> AsyncIterator[LaunchedStack]:
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


def keep_artifacts(stack: LaunchedStack, keep: int = 10) -> Path | None:
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


# --- configuration through the CLI ------------------------------------------------------------


def run_cli(env: dict[str, str], *args: str) -> Any:
    """``leadwire <args> --json`` against the stack whose settings ``env`` holds: its JSON."""
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


def create_webhook(
    env: dict[str, str], workspace: str, name: str, template: str, auth: str
) -> dict[str, Any]:
    doc: dict[str, Any] = run_cli(
        env,
        "webhook",
        "create",
        "--workspace",
        workspace,
        "--name",
        name,
        "--template",
        template,
        "--auth",
        auth,
    )
    return doc


async def form_webhook(stack: LaunchedStack) -> Target:
    """A fresh workspace with one unsigned generic webhook (the benchmarks' target)."""
    env = stack.cli_env()
    workspace = f"bench-{uuid.uuid4().hex[:6]}"
    await asyncio.to_thread(run_cli, env, "workspace", "create", workspace)
    doc = await asyncio.to_thread(create_webhook, env, workspace, "form", "generic", "none")
    return Target(name="form", id=doc["id"], url=doc["url"], vendor="generic", workspace=workspace)


def email_rule(env: dict[str, str], workspace: str, recipients: Iterable[str]) -> None:
    """Email every new lead of ``workspace`` to ``recipients``."""
    run_cli(
        env,
        "notify",
        "set-rule",
        "--workspace",
        workspace,
        "--event",
        "lead_created",
        "--channel",
        "email",
        "--to",
        ",".join(recipients),
    )
