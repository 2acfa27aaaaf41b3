"""``make up`` / ``make run`` / ``make down``: the whole system on this machine.

    python -m infra.launch up       # infra, migrations, topics, six services, demo webhook
    python -m infra.launch run      # the same in the foreground; Ctrl-C stops everything
    python -m infra.launch down     # stop every process `up` started (no process, no port left)
    python -m infra.launch status

``up`` returns only when every service answers ``/readyz`` with 200 on its ops listener,
and writes the running stack's connection settings to ``.leadwire/stack.env``
(shell-sourceable): the public URLs (``LEADWIRE_<SERVICE>_URL``: gateway, notifier,
analytics, API) and every service's ops URL (``LEADWIRE_<SERVICE>_OPS_URL``). Any
``LEADWIRE_*`` variable set in the environment (SMTP and SMS provider settings, worker
counts, ports) is passed through to the services.

``LEADWIRE_KAFKA_AUTH=scram make up``: the broker takes SCRAM-SHA-512 logins only; each
service logs in as its own user with only the ACLs it needs (infra/kafka_auth.py), and
stack.env holds the admin user's (for the CLI). docs/security.md says the same for
production.

``LEADWIRE_KAFKA_BROKERS=3 make up``: three Kafka nodes (infra/kafka_cluster.py), every
topic replicated 3 times with min.insync.replicas 2, the services given all three
addresses. ``LEADWIRE_PROCESSOR_REPLICAS=3`` (and _NOTIFIER_, _ANALYTICS_, _ARCHIVER_):
that many processes of the service in its consumer group (infra/replicas.py); ``status``
shows each with its partitions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from infra import replicas
from infra.errors import InfraError
from infra.kafka_auth import ADMIN, acl_plan, apply_acls
from infra.processes import tail
from infra.replicas import Replica
from infra.stack import Stack, stop_all
from infra.status import header as status_header
from infra.status import render as render_status
from infra.status import rows as status_rows
from shared.db import migrate
from shared.kafka import ensure_topics
from shared.settings import CommonSettings

ROOT = Path(__file__).resolve().parent.parent
# Another name (LEADWIRE_STACK) runs a second, separate system: tests use it beside a
# developer's `make up` (its infra ports are derived from the name; set the service ports
# with LEADWIRE_<SERVICE>_PORT).
STACK = os.environ.get("LEADWIRE_STACK", "dev")
SERVICES = ("processor", "notifier", "analytics", "archiver", "api", "ingest")
# The services with a public listener (the processor and the archiver have only ops).
PUBLIC = ("notifier", "analytics", "api", "ingest")
DEMO_WORKSPACE = "demo"
DEMO_WEBHOOK = "demo-form"
READY_DEADLINE_S = 120.0


def _say(message: str) -> None:
    print(f"[leadwire] {message}", file=sys.stderr, flush=True)


def _stack_env_path() -> Path:
    if STACK == "dev":
        return ROOT / ".leadwire" / "stack.env"
    return ROOT / ".leadwire" / STACK / "stack.env"


def gateway_workers(cores: int | None = None) -> int:
    """The gateway processes of this all-in-one stack: half the cores, at least one.

    Here every service and the infra share the machine's cores, and one gateway process
    takes ~5,000 leads/s, a few times what the rest of the stack processes on 2 cores;
    each more process costs CPU per lead (smaller produce batches, one more listener
    reading every notification) that the pipeline needs. On 2 cores one process instead
    of two: the synchronous round trip's p99 at 1,000 leads/s 52-65 ms instead of
    83-135 ms, all services' CPU 163-168 % instead of 180 % of a core (docs/bench.md). A
    gateway host of its own keeps the gateway's default: one process per core."""
    return max(1, (cores if cores is not None else os.cpu_count() or 1) // 2)


def _settings_env(stack: Stack) -> dict[str, str]:
    """Infra settings, overridden by LEADWIRE_* variables the operator set."""
    env = {**stack.settings_env(), "LEADWIRE_INGEST_WORKERS": str(gateway_workers())}
    for key, value in os.environ.items():
        if key.startswith("LEADWIRE_") and not key.startswith("LEADWIRE_INFRA_"):
            env[key] = value
    return env


def _service_urls(settings: CommonSettings) -> dict[str, str]:
    """The public listeners' base URLs."""
    host = settings.http_host
    return {name: f"http://{host}:{getattr(settings, f'{name}_port')}" for name in PUBLIC}


def _processes(env: dict[str, str], settings: CommonSettings) -> list[Replica]:
    """Every service process to start: one per service, N of those with
    LEADWIRE_<SERVICE>_REPLICAS=N (infra/replicas.py)."""
    return replicas.plan(env, settings, SERVICES)


async def _wait_ready(stack: Stack, urls: dict[str, str]) -> None:
    """Until every service's ops listener (``urls``) answers /readyz with 200."""
    pending = dict(urls)
    deadline = time.monotonic() + READY_DEADLINE_S
    async with aiohttp.ClientSession() as http:
        while pending:
            for name, url in list(pending.items()):
                try:
                    async with http.get(
                        f"{url}/readyz", timeout=aiohttp.ClientTimeout(total=2)
                    ) as r:
                        if r.status == 200:
                            _say(f"{name}: ready at {url}")
                            del pending[name]
                            continue
                except (aiohttp.ClientError, TimeoutError):
                    pass
                alive = {p.name for p in stack.services()}
                if name not in alive:
                    raise InfraError(
                        f"{name} exited during start; last log lines:\n{tail(stack.log_path(name))}"
                    )
            if pending and time.monotonic() > deadline:
                names = ", ".join(pending)
                tails = "\n".join(f"--- {n}\n{tail(stack.log_path(n))}" for n in pending)
                raise InfraError(f"not ready after {READY_DEADLINE_S:.0f} s: {names}\n{tails}")
            if pending:
                await asyncio.sleep(0.2)


def _cli(env: dict[str, str], *args: str) -> tuple[int, dict | list | None, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", *args, "--json"],
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    doc = json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else None
    return proc.returncode, doc, proc.stderr


def _demo_webhook(env: dict[str, str]) -> dict:
    """The demo workspace and its unsigned webhook, created once and reused after."""
    code, _, err = _cli(env, "workspace", "show", DEMO_WORKSPACE)
    if code != 0:
        code, _, err = _cli(env, "workspace", "create", DEMO_WORKSPACE)
        if code != 0:
            raise InfraError(f"could not create the demo workspace: {err.strip()}")
    code, doc, _ = _cli(env, "webhook", "show", DEMO_WEBHOOK, "--workspace", DEMO_WORKSPACE)
    if code != 0:
        code, doc, err = _cli(
            env,
            "webhook",
            "create",
            "--workspace",
            DEMO_WORKSPACE,
            "--name",
            DEMO_WEBHOOK,
            "--template",
            "generic",
            "--auth",
            "none",
        )
        if code != 0:
            raise InfraError(f"could not create the demo webhook: {err.strip()}")
    assert isinstance(doc, dict)
    return doc


def _write_stack_env(
    env: dict[str, str], urls: dict[str, str], ops: dict[str, str], webhook: dict
) -> Path:
    path = _stack_env_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["# The running leadwire stack (make up). Source it: set -a; . .leadwire/stack.env"]
    keys = sorted(k for k in env if k.startswith("LEADWIRE_"))
    lines += [f"{k}={shlex.quote(env[k])}" for k in keys]
    lines += [f"LEADWIRE_{name.upper()}_URL={url}" for name, url in urls.items()]
    lines += [f"{replicas.ops_url_key(name)}={url}" for name, url in ops.items()]
    lines.append(f"LEADWIRE_DEMO_WEBHOOK_URL={webhook['url']}")
    path.touch(mode=0o600)
    path.chmod(0o600)  # it holds the operator's key and the stack's passwords
    path.write_text("\n".join(lines) + "\n")
    return path


def _curl(webhook: dict) -> str:
    body = (
        '{"firstname": "Benjie", "lastname": "Malinao", "phone_number": "(626) 663-3444", '
        '"email": "Benjie@Example.com", "external_crm_id": "crm_12345", '
        '"product": "Bath Remodel", "lead_status": "new"}'
    )
    return (
        f"curl -sS -X POST '{webhook['url']}' \\\n"
        "  -H 'Content-Type: application/json' -H 'Prefer: wait=5' \\\n"
        f"  -d '{body}'"
    )


OPERATOR_KEY_NAME = "make up"


def _operator_key(env: dict[str, str]) -> str:
    """An operator's read key for this run: signing in to the dashboard, reading the
    analytics API, the benchmarks' read-outs. Written to stack.env as
    LEADWIRE_OPERATOR_KEY; the previous run's is revoked (one such key at a time)."""
    _code, listed, _ = _cli(env, "apikey", "list", "--operator")
    for key in listed if isinstance(listed, list) else []:
        if key.get("name") == OPERATOR_KEY_NAME and key.get("state") == "active":
            _cli(env, "apikey", "revoke", str(key["id"]))
    code, doc, err = _cli(
        env, "apikey", "create", "--operator", "--scope", "read", "--name", OPERATOR_KEY_NAME
    )
    if code != 0 or not isinstance(doc, dict):
        raise InfraError(f"could not create the operator's read key: {err.strip()}")
    return str(doc["key"])


async def up() -> dict:
    started = time.monotonic()
    stack = Stack.for_name(STACK, ROOT)
    await stack.start()
    env = _settings_env(stack)
    env.setdefault("LEADWIRE_LOG_FORMAT", "json")
    settings = CommonSettings.model_validate(
        {
            k.removeprefix("LEADWIRE_").lower(): v
            for k, v in env.items()
            if k.removeprefix("LEADWIRE_").lower() in CommonSettings.model_fields
        }
    )
    applied = await migrate(settings.database_url)
    _say(f"migrations: {len(applied)} applied" if applied else "migrations: up to date")
    await ensure_topics(settings)
    _say(
        f"topics: {settings.kafka_partitions} partitions, replication "
        f"{settings.kafka_replication_factor}, min.insync.replicas "
        f"{settings.kafka_min_insync_replicas}, on {settings.kafka_bootstrap}"
    )
    if stack.config.scram:
        acls = acl_plan(settings.topic_prefix, "leadwire-")
        await apply_acls(settings.kafka_bootstrap, stack.config.kafka_passwords()[ADMIN], acls)
        _say(f"kafka: SCRAM, a user per service, {len(acls)} ACLs (docs/security.md)")
    urls, procs = _service_urls(settings), _processes(env, settings)
    ops = {p.name: p.ops_url for p in procs}
    for proc in procs:
        # With SCRAM each service logs in as its own user (stack.env keeps the admin's).
        own = {**env, **stack.config.service_env(proc.service), **proc.env()}
        stack.start_process(proc.name, [sys.executable, "-m", f"services.{proc.service}"], own)
    await _wait_ready(stack, ops)
    webhook = _demo_webhook(env)
    path = _write_stack_env(
        {**env, "LEADWIRE_OPERATOR_KEY": _operator_key(env)}, urls, ops, webhook
    )
    _say(
        f"all services ready in {time.monotonic() - started:.1f} s; settings in {path.relative_to(ROOT)}"
    )
    return {"urls": urls, "ops": ops, "webhook": webhook, "settings": settings}


def _print_welcome(info: dict) -> None:
    urls = info["urls"]
    print(
        "\nleadwire is running.\n\n"
        "Send a first lead (it waits up to 5 s for the processed result):\n\n"
        f"{_curl(info['webhook'])}\n\n"
        f"Dashboard:     {urls['analytics']}/   (sign in with LEADWIRE_OPERATOR_KEY from "
        ".leadwire/stack.env)\n"
        f"Gateway docs:  {urls['ingest']}/docs\n"
        f"Management API: {urls['api']}/docs   (a key: .venv/bin/leadwire apikey create "
        f"--workspace {DEMO_WORKSPACE} --scope manage)\n"
        f"Analytics API: {urls['analytics']}/analytics/webhooks/{info['webhook']['id']}   "
        '(-H "Authorization: Bearer $LEADWIRE_OPERATOR_KEY")\n'
        f"Ops (local):   {info['ops']['ingest']}/metrics, /readyz, /healthz   (every "
        "service's: LEADWIRE_<SERVICE>_OPS_URL in .leadwire/stack.env)\n"
        "Admin CLI:     .venv/bin/leadwire --help   (settings come from .leadwire/stack.env)\n"
        f"Logs:          .leadwire/{STACK}/logs/\n",
        flush=True,
    )


def down() -> None:
    stopped = stop_all(STACK, project_root=ROOT)
    _stack_env_path().unlink(missing_ok=True)
    _say(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


def _up_or_down() -> dict:
    """``up``, and the welcome; whatever it started is stopped again if it fails."""
    try:
        info = asyncio.run(up())
    except BaseException:
        down()
        raise
    _print_welcome(info)
    return info


def run_foreground() -> None:
    names = list(_up_or_down()["ops"])
    print("Ctrl-C stops everything.", flush=True)
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    stack = Stack.for_name(STACK, ROOT)
    try:
        while not stop:
            time.sleep(0.5)
            dead = [n for n in names if n not in {p.name for p in stack.services()}]
            if dead:
                _say(f"{', '.join(dead)} stopped unexpectedly; see .leadwire/{STACK}/logs/")
                break
    finally:
        down()


def _read_stack_env() -> dict[str, str]:
    """The running stack's settings as make up wrote them (empty if it did not)."""
    env: dict[str, str] = {}
    try:
        text = _stack_env_path().read_text()
    except OSError:
        return env
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.startswith("LEADWIRE_"):
            parts = shlex.split(value)
            env[key] = parts[0] if parts else ""
    return env


def status() -> None:
    """Every process as a table: each Kafka node, Postgres, S3, every service process
    with its consumer groups' partitions (infra/status.py)."""
    stack = Stack.for_name(STACK, ROOT)
    env = {**stack.settings_env(), **_read_stack_env()}
    print(render_status(asyncio.run(status_rows(stack, env)), status_header(stack)))


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.launch",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=("up", "run", "down", "status"))
    args = parser.parse_args()
    try:
        if args.command == "up":
            _up_or_down()
            print("Stop it with: make down", flush=True)
        elif args.command == "run":
            run_foreground()
        elif args.command == "down":
            down()
        else:
            status()
    except InfraError as exc:
        _say(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
