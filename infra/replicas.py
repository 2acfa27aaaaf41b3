"""Several processes of one consumer service: ``LEADWIRE_<SERVICE>_REPLICAS=N``.

The processor, the notifier, analytics and the archiver scale by running more processes in
their one consumer group: Kafka shares the partitions of their topics out among them
(rebalancing when one comes or goes), so N processes of a service never work on the same
partition at once. The gateway scales with ``LEADWIRE_INGEST_WORKERS`` on one port instead
(services/ingest/supervisor.py), and the management API needs no second process here.

Replica 1 is named after the service (``processor``) and keeps its ports; replica k is
``processor-k`` with each of its ports (the ops listener, and the public listener of the
notifier and analytics) moved up by ``(k-1) * LEADWIRE_REPLICA_PORT_STEP`` (10):
processor 9081, processor-2 9091, processor-3 9101. make up writes every process's ops URL
to stack.env (``LEADWIRE_PROCESSOR_2_OPS_URL``); make status shows each with its partitions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from infra.errors import InfraError
from shared.settings import CommonSettings

REPLICATED = ("processor", "notifier", "analytics", "archiver")
# Services whose public listener moves with the replica (the others have only ops).
PUBLIC = ("notifier", "analytics")
ENV_PORT_STEP = "LEADWIRE_REPLICA_PORT_STEP"
DEFAULT_PORT_STEP = 10
MAX_REPLICAS = 16


@dataclass(frozen=True)
class Replica:
    service: str
    index: int  # 1-based
    ops_port: int
    port: int | None  # the public listener's, when the service has one that moves
    ops_host: str

    @property
    def name(self) -> str:
        """The process's name (pidfile, log): ``processor``, ``processor-2``, ..."""
        return process_name(self.service, self.index)

    @property
    def ops_url(self) -> str:
        host = "127.0.0.1" if self.ops_host in ("", "0.0.0.0", "::") else self.ops_host
        return f"http://{host}:{self.ops_port}"

    def env(self) -> dict[str, str]:
        """What this process gets on top of the service's settings: its own ports."""
        if self.index == 1:
            return {}
        env = {f"LEADWIRE_{self.service.upper()}_OPS_PORT": str(self.ops_port)}
        if self.port is not None:
            env[f"LEADWIRE_{self.service.upper()}_PORT"] = str(self.port)
        return env


def process_name(service: str, index: int) -> str:
    return service if index == 1 else f"{service}-{index}"


def service_of(name: str) -> str:
    """``processor-2`` -> ``processor`` (the module the process runs)."""
    base, _, index = name.rpartition("-")
    return base if base in REPLICATED and index.isdigit() else name


def _int(env: Mapping[str, str], key: str, default: int, low: int, high: int) -> int:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise InfraError(f"{key}={raw!r}: a whole number from {low} to {high}")
    return int(raw)


def replica_count(env: Mapping[str, str], service: str) -> int:
    """``LEADWIRE_<SERVICE>_REPLICAS`` (1 when unset; always 1 for the others)."""
    if service not in REPLICATED:
        return 1
    return _int(env, f"LEADWIRE_{service.upper()}_REPLICAS", 1, 1, MAX_REPLICAS)


def plan(
    env: Mapping[str, str], settings: CommonSettings, services: Iterable[str]
) -> list[Replica]:
    """Every process to start for ``services``, replicas after their first."""
    step = _int(env, ENV_PORT_STEP, DEFAULT_PORT_STEP, 1, 1000)
    out: list[Replica] = []
    for service in services:
        for k in range(1, replica_count(env, service) + 1):
            shift = step * (k - 1)
            public = int(getattr(settings, f"{service}_port")) if service in PUBLIC else None
            out.append(
                Replica(
                    service=service,
                    index=k,
                    ops_port=settings.ops_port(service) + shift,
                    port=public + shift if public is not None else None,
                    ops_host=settings.ops_host,
                )
            )
    return out


def ops_url_key(name: str) -> str:
    """stack.env's key for a process's ops URL: ``LEADWIRE_PROCESSOR_2_OPS_URL``."""
    return f"LEADWIRE_{name.upper().replace('-', '_')}_OPS_URL"
