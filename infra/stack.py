"""A stack = Kafka + Postgres + S3 (+ any service processes tracked in its pidfile dir).

    from infra import Stack
    stack = Stack.for_name("test", project_root)
    await stack.start()              # install if needed, start all three concurrently, wait ready
    env = stack.settings_env()       # LEADWIRE_* settings for services and tests
    await stack.kafka.stop(); await stack.kafka.start()   # fault tests: one component at a time
    await stack.stop()               # services first, then the infra; no process or port left

Service processes are started the same way as the infra (own session, log file, pidfile):
:func:`start_process`, :func:`stop_process`, :func:`stop_all`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeAlias

from infra.component import Component, ComponentStatus
from infra.config import INFRA_COMPONENTS, StackConfig
from infra.errors import InfraError
from infra.kafka_cluster import Kafka
from infra.postgres import Postgres
from infra.processes import (
    PidInfo,
    async_file_lock,
    list_pidfiles,
    pid_alive,
    process_start_ticks,
    read_pidfile,
    spawn,
    stop_tracked,
)
from infra.progress import progress
from infra.s3 import S3

_SERVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_KAFKA_NODE = re.compile(r"^kafka-[0-9]+$")


class Stack:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.kafka = Kafka(config)
        self.postgres = Postgres(config)
        self.s3 = S3(config)

    @classmethod
    def for_name(
        cls, name: str = "dev", project_root: Path | str | None = None, **overrides: Any
    ) -> Stack:
        """Ports from explicit kwargs (kafka_port=, pg_port=, s3_port=, kafka_controller_port=),
        else LEADWIRE_INFRA_{KAFKA,PG,S3}_PORT, else the running stack's, else the defaults."""
        return cls(StackConfig.for_name(name, project_root, **overrides))

    def __repr__(self) -> str:
        return f"Stack({self.name!r}, ports={self.config.ports})"

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def state_dir(self) -> Path:
        return self.config.state_dir

    @property
    def components(self) -> tuple[Component, ...]:
        return (self.kafka, self.postgres, self.s3)

    def component(self, name: str) -> Component:
        for comp in self.components:
            if comp.name == name:
                return comp
        raise InfraError(f"unknown component {name!r}; choose from {', '.join(INFRA_COMPONENTS)}")

    def _select(self, names: Iterable[str] | None) -> list[Component]:
        return list(self.components) if names is None else [self.component(n) for n in names]

    def settings_env(self) -> dict[str, str]:
        """LEADWIRE_* variables pointing services at this stack."""
        return self.config.settings_env()

    # -- lifecycle -------------------------------------------------------------------------------
    async def install(self, components: Iterable[str] | None = None) -> None:
        """Fetch/build everything (jars, binaries, packages); quick when cached."""
        began = time.monotonic()
        await _gather_or_raise([c.install() for c in self._select(components)], "install")
        progress("infra", f"installed ({time.monotonic() - began:.1f} s)")

    async def start(
        self, timeout_s: float = 120.0, components: Iterable[str] | None = None
    ) -> None:
        """Install if needed, start the components concurrently, wait until each is ready.

        Idempotent: components already running and healthy are left alone.
        """
        began = time.monotonic()
        self.config.ensure_dirs()
        self.config.record_ports()
        await _gather_or_raise(
            [c.start(timeout_s) for c in self._select(components)], f"stack {self.name}: start"
        )
        progress(f"stack {self.name}", f"ready in {time.monotonic() - began:.1f} s")

    async def stop(self, timeout_s: float = 30.0, components: Iterable[str] | None = None) -> None:
        """Stop components (data kept). Without ``components``: every tracked service first, then all infra."""
        if components is None:
            await asyncio.to_thread(stop_services, self.config, timeout_s)
        await _gather_or_raise(
            [c.stop(timeout_s) for c in self._select(components)], f"stack {self.name}: stop"
        )

    @contextlib.asynccontextmanager
    async def lease(self, timeout_s: float = 120.0) -> AsyncIterator[Stack]:
        """Shared use by several processes (parallel pytest sessions, xdist workers).

        Starts the stack (or joins it) and records this process as a user; on exit the stack
        is stopped only if no other live process holds a lease. Plain start()/stop() ignore
        leases: stop() always stops.
        """
        leases = self.config.run_dir / "leases"
        me = leases / f"{os.getpid()}.{process_start_ticks(os.getpid()) or 0}"
        self.config.ensure_dirs()
        async with async_file_lock(self.config.run_dir / "stack.lock", 600, "stack lease"):
            leases.mkdir(exist_ok=True)
            me.touch()
            try:
                await self.start(timeout_s)
            except BaseException:
                me.unlink(missing_ok=True)
                raise
        try:
            yield self
        finally:
            async with async_file_lock(self.config.run_dir / "stack.lock", 600, "stack lease"):
                me.unlink(missing_ok=True)
                others = [p for p in leases.glob("*.*") if _lease_alive(p)]
                if others:
                    progress(
                        f"stack {self.name}",
                        f"left running: still used by pid(s) {', '.join(p.stem for p in others)}",
                    )
                else:
                    await self.stop()

    async def restart(self, component: str, timeout_s: float = 120.0) -> None:
        comp = self.component(component)
        await comp.stop()
        await comp.start(timeout_s)

    async def status(self) -> list[ComponentStatus]:
        """One status per infra process (each Kafka node its own)."""
        found = await asyncio.gather(*(c.statuses() for c in self.components))
        return [status for statuses in found for status in statuses]

    def services(self) -> list[PidInfo]:
        """Live service processes tracked for this stack."""
        return [p for p in list_pidfiles(self.config.run_dir) if _is_service(p)]

    async def destroy(self) -> None:
        """Stop everything and delete the stack's state (data, logs, pidfiles)."""
        await self.stop()
        self.postgres.remove_data()
        shutil.rmtree(self.state_dir, ignore_errors=True)
        progress(f"stack {self.name}", f"destroyed ({self.state_dir})")

    # -- service processes ------------------------------------------------------------------------------
    def start_process(
        self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None, **kwargs: Any
    ) -> int:
        return start_process(name, argv, env, self, **kwargs)

    def log_path(self, name: str) -> Path:
        return self.config.logs_dir / f"{name}.log"


def _is_service(info: PidInfo) -> bool:
    """A service process, not one of the infra's (Kafka's nodes: kafka, kafka-2, ...)."""
    return info.name not in INFRA_COMPONENTS and info.kind != "infra"


def _lease_alive(path: Path) -> bool:
    """A lease file ``<pid>.<start ticks>`` whose process still runs (stale ones are removed)."""
    pid, _, ticks = path.name.partition(".")
    if pid.isdigit() and pid_alive(
        int(pid), int(ticks) if ticks.isdigit() and ticks != "0" else None
    ):
        return True
    path.unlink(missing_ok=True)
    return False


async def _gather_or_raise(coros: list[Any], what: str) -> None:
    results = await asyncio.gather(*coros, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    for err in errors:
        if not isinstance(err, Exception):
            raise err
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise InfraError(f"{what}: {len(errors)} failures:\n" + "\n\n".join(str(e) for e in errors))


# -- generic process helpers (services use them too) -------------------------------------------------------
StackRef: TypeAlias = "str | Stack | StackConfig"


def _config_of(stack: StackRef, project_root: Path | str | None = None) -> StackConfig:
    if isinstance(stack, Stack):
        return stack.config
    if isinstance(stack, StackConfig):
        return stack
    return StackConfig.for_name(stack, project_root)


def start_process(
    name: str,
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    stack: StackRef = "dev",
    *,
    cwd: Path | str | None = None,
    project_root: Path | str | None = None,
    inherit_env: bool = True,
    restart: bool = False,
) -> int:
    """Start ``argv`` as tracked process ``name`` of ``stack``; returns its pid.

    Own session/process group, stdout+stderr appended to ``<state>/logs/<name>.log``, pid in
    ``<state>/run/<name>.pid``. ``env`` is added to a copy of os.environ (``inherit_env=False``:
    used alone). If ``name`` is already running it is left alone and its pid returned, unless
    ``restart=True``. ``cwd`` defaults to the project root.
    """
    if not _SERVICE_NAME.match(name) or name in INFRA_COMPONENTS or _KAFKA_NODE.match(name):
        raise InfraError(
            f"invalid process name {name!r} (letters, digits, '._-'; not {', '.join(INFRA_COMPONENTS)})"
        )
    config = _config_of(stack, project_root)
    config.ensure_dirs()
    running = read_pidfile(config.run_dir, name)
    if running is not None:
        if not restart:
            return running.pid
        stop_tracked(config.run_dir, name)
    full_env = {**os.environ, **(env or {})} if inherit_env else dict(env or {})
    info = spawn(
        name,
        argv,
        run_dir=config.run_dir,
        log_path=config.logs_dir / f"{name}.log",
        env=full_env,
        cwd=cwd if cwd is not None else config.project_root,
        kind="service",
    )
    return info.pid


def stop_process(
    name: str,
    stack: StackRef = "dev",
    *,
    project_root: Path | str | None = None,
    timeout_s: float = 15.0,
) -> bool:
    """SIGTERM the process group of ``name``, SIGKILL after ``timeout``; True if it was running."""
    config = _config_of(stack, project_root)
    if name in INFRA_COMPONENTS:
        return Stack(config).component(name).stop_sync(timeout_s)
    if read_pidfile(config.run_dir, name) is None:
        return False
    return stop_tracked(config.run_dir, name, timeout_s=timeout_s)


def list_processes(
    stack: StackRef = "dev", *, project_root: Path | str | None = None
) -> list[PidInfo]:
    """Live pidfile-tracked processes (infra and services) of ``stack``."""
    return list_pidfiles(_config_of(stack, project_root).run_dir)


def stop_services(
    stack: StackRef = "dev", timeout_s: float = 15.0, *, project_root: Path | str | None = None
) -> list[str]:
    """Stop every tracked non-infra process of ``stack`` concurrently; returns their names."""
    config = _config_of(stack, project_root)
    names = [p.name for p in list_pidfiles(config.run_dir) if _is_service(p)]
    if names:
        with ThreadPoolExecutor(max_workers=min(16, len(names))) as pool:
            list(pool.map(lambda n: stop_tracked(config.run_dir, n, timeout_s=timeout_s), names))
        progress(f"stack {config.name}", f"stopped services: {', '.join(names)}")
    return names


def stop_all(
    stack: StackRef = "dev", *, project_root: Path | str | None = None, timeout_s: float = 30.0
) -> list[str]:
    """Stop every pidfile-tracked process of ``stack`` (services, then Kafka/Postgres/S3).

    Leaves no process from its pidfiles and none of the infra ports listening. Synchronous;
    safe to call from atexit handlers or pytest finalizers.
    """
    config = _config_of(stack, project_root)
    stopped = stop_services(config, timeout_s)
    infra = Stack(config).components
    with ThreadPoolExecutor(max_workers=len(infra)) as pool:
        results = list(pool.map(lambda c: (c.name, c.stop_sync(timeout_s)), infra))
    stopped += [name for name, was_running in results if was_running]
    leftovers = [p.name for p in list_pidfiles(config.run_dir)]
    for name in leftovers:  # started meanwhile, or unknown kinds: same treatment
        stop_tracked(config.run_dir, name, timeout_s=timeout_s)
    return stopped + leftovers
