"""What every infra component (Kafka, Postgres, S3) has in common.

A component is ``install()`` (idempotent, fast when cached), ``start()`` (no-op when it is
already running and healthy), ``wait_ready()`` (polls the real protocol with a deadline),
``stop()`` (SIGTERM the group, deadline, SIGKILL) and ``status()``.
"""

from __future__ import annotations

import abc
import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from infra.config import HOST, StackConfig
from infra.errors import InfraError
from infra.processes import (
    PidInfo,
    async_file_lock,
    ephemeral_range,
    file_lock,
    port_bindable,
    port_listening,
    read_pidfile,
    reserve_ports,
    stop_tracked,
    tail,
    wait_ports_closed,
)
from infra.progress import progress


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    running: bool
    pid: int | None
    ready: bool
    address: str
    log: Path

    def describe(self) -> str:
        if not self.running:
            return f"{self.name}: stopped ({self.address})"
        health = "ready" if self.ready else "NOT READY"
        return f"{self.name}: running pid {self.pid}, {health} on {self.address} (log {self.log})"


class Component(abc.ABC):
    name: str  # a class attribute, or per instance (Kafka's nodes: kafka, kafka-2, ...)
    # Env var that moves this component's main port (named in port-conflict errors).
    port_env: ClassVar[str]
    stop_timeout: ClassVar[float] = 30.0

    def __init__(self, config: StackConfig) -> None:
        self.config = config

    # -- to implement ---------------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def port(self) -> int: ...

    def ports(self) -> list[int]:
        """Every port this component listens on."""
        return [self.port]

    @abc.abstractmethod
    async def install(self) -> None:
        """Fetch/build what is needed; skip what is already in the cache."""

    @abc.abstractmethod
    async def _launch(self, timeout_s: float) -> None:
        """Start the process(es) and write the pidfile; readiness is checked afterwards."""

    @abc.abstractmethod
    async def probe(self) -> bool:
        """One readiness check through the component's own protocol (never raises)."""

    async def _after_ready(self) -> None:
        """Provision things that must exist (database, bucket); idempotent."""
        return None

    def _adopt(self) -> PidInfo | None:
        """A running instance not (or no longer) in our pidfile, e.g. from postmaster.pid."""
        return None

    # -- shared behaviour -------------------------------------------------------------------------
    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.config.logs_dir / f"{self.name}.log"

    def pid_info(self) -> PidInfo | None:
        return read_pidfile(self.config.run_dir, self.name) or self._adopt()

    def is_running(self) -> bool:
        return self.pid_info() is not None

    async def start(self, timeout_s: float = 120.0) -> None:
        """Start (installing first if needed) and wait until ready; no-op if already ready."""
        self.config.ensure_dirs()
        lock = self.config.run_dir / f"{self.name}.lock"
        async with async_file_lock(lock, timeout_s, f"{self.name} start/stop in another process"):
            info = self.pid_info()
            if info is not None:
                if not await self.probe():
                    progress(self.name, f"running (pid {info.pid}) but not ready yet; waiting")
                    await self.wait_ready(timeout_s)
                await self._after_ready()
                progress(self.name, f"already running on {self.address} (pid {info.pid})")
                return
            await self._check_ports_free()
            await self.install()
            began = time.monotonic()
            await self._launch(timeout_s)
            await self.wait_ready(max(5.0, timeout_s - (time.monotonic() - began)))
            await self._after_ready()
            progress(
                self.name, f"ready on {self.address} (started in {time.monotonic() - began:.1f} s)"
            )

    async def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Poll :meth:`probe` until it succeeds; fail early if the process died."""
        deadline = time.monotonic() + timeout_s
        while True:
            if await self.probe():
                return
            if self.pid_info() is None:
                raise InfraError(
                    f"{self.name}: the process exited before becoming ready on {self.address}. "
                    f"Last lines of {self._failure_log()}:\n{tail(self._failure_log())}"
                )
            if time.monotonic() >= deadline:
                raise InfraError(
                    f"{self.name}: not ready on {self.address} after {timeout_s:.0f} s. "
                    f"Last lines of {self._failure_log()}:\n{tail(self._failure_log())}"
                )
            await asyncio.sleep(0.25)

    def _failure_log(self) -> Path:
        return self.log_path

    async def stop(self, timeout_s: float | None = None) -> bool:
        """Stop it (data kept). Returns True if something was running."""
        return await asyncio.to_thread(self.stop_sync, timeout_s)

    def stop_sync(self, timeout_s: float | None = None) -> bool:
        with file_lock(
            self.config.run_dir / f"{self.name}.lock", timeout_s=120, what=f"{self.name} start/stop"
        ):
            began = time.monotonic()
            stopped = self._stop_process(timeout_s or self.stop_timeout)
            if not stopped:
                return False
            still_open = wait_ports_closed(self.ports(), timeout_s=10.0)
            if still_open:
                raise InfraError(
                    f"{self.name}: stopped, but port(s) {still_open} still accept connections"
                )
            progress(self.name, f"stopped ({time.monotonic() - began:.1f} s)")
            return True

    def _stop_process(self, timeout_s: float) -> bool:
        if self.pid_info() is None:  # also clears a stale pidfile / adopts an orphan
            return False
        return stop_tracked(self.config.run_dir, self.name, timeout_s=timeout_s)

    async def statuses(self) -> list[ComponentStatus]:
        """One status per process (a Kafka cluster has one per node)."""
        return [await self.status()]

    async def status(self) -> ComponentStatus:
        info = self.pid_info()
        ready = await self.probe() if info is not None else False
        return ComponentStatus(
            name=self.name,
            running=info is not None,
            pid=info.pid if info else None,
            ready=ready,
            address=self.address,
            log=self.log_path,
        )

    async def _check_ports_free(self) -> None:
        if os.environ.get("LEADWIRE_INFRA_RESERVE_PORTS", "1") != "0":
            added = reserve_ports(self.ports())
            if added:
                progress(
                    self.name,
                    f"reserved port(s) {added} from ephemeral use (ip_local_reserved_ports)",
                )
        for port in self.ports():
            # A client connection may hold the port as its local port (ports inside the
            # ephemeral range); give such a connection a few seconds to go away.
            deadline = time.monotonic() + 10.0
            while not port_bindable(port) and not port_listening(port):
                if time.monotonic() >= deadline:
                    break
                await asyncio.sleep(0.2)
            if not port_bindable(port):
                low, high = ephemeral_range()
                if port_listening(port):
                    who = "something is listening there"
                elif low <= port <= high:
                    who = (
                        f"a connection holds it as its local port: {port} lies in the "
                        f"ephemeral range {low}-{high}; prefer ports below {low}"
                    )
                else:
                    who = "it is bound by another process"
                raise InfraError(
                    f"{self.name}: port {HOST}:{port} is already in use ({who}) and it is not this "
                    f"stack's {self.name}. Stop whatever uses it, or pick another port: "
                    f"{self.port_env}=<free port> (stack {self.config.name!r})"
                )
