"""The stack's Kafka: one node, or a cluster of them (``LEADWIRE_KAFKA_BROKERS=3``).

A cluster is three processes in KRaft combined mode (each a broker and a controller), each
with its own ports, data directory, pidfile and log (``kafka``, ``kafka-2``, ``kafka-3``),
all formatted with one cluster id, and a three-voter controller quorum. Every topic is
replicated three times with ``min.insync.replicas=2``: with the producer's ``acks=all`` a
write is acknowledged only once two brokers have it, so losing any one broker loses
nothing acknowledged, and with one broker left writes are refused, never acknowledged.

:class:`Kafka` starts the nodes together (a node is ready once a quorum has formed and the
cluster lists it), stops them together, and gives the fault tests what they aim at: a
partition's leader, the active controller, one node killed (``kill -9``) or stopped.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

from infra.component import Component, ComponentStatus
from infra.config import StackConfig
from infra.errors import InfraError
from infra.kafka import KafkaNode, ensure_cluster_id
from infra.processes import PidInfo, pid_alive, pidfile_path
from infra.progress import progress


class Kafka(Component):
    """Every Kafka node of the stack, started, stopped and watched as one component."""

    name = "kafka"
    port_env = KafkaNode.port_env
    stop_timeout = KafkaNode.stop_timeout

    def __init__(self, config: StackConfig) -> None:
        super().__init__(config)
        self.nodes = [KafkaNode(config, n) for n in range(1, config.kafka_brokers + 1)]

    def node(self, node_id: int) -> KafkaNode:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise InfraError(f"kafka: no node {node_id} (the stack has {len(self.nodes)})")

    @property
    def port(self) -> int:
        return self.nodes[0].port

    @property
    def controller_port(self) -> int:
        return self.nodes[0].controller_port

    def ports(self) -> list[int]:
        return [port for node in self.nodes for port in node.ports()]

    @property
    def bootstrap(self) -> str:
        return self.config.kafka_bootstrap

    @property
    def address(self) -> str:
        return self.bootstrap

    @property
    def log_path(self) -> Path:
        return self.nodes[0].log_path

    def admin_kwargs(self) -> dict[str, object]:
        return self.nodes[0].admin_kwargs()

    async def install(self) -> None:
        await self.nodes[0].install()

    async def _launch(self, timeout_s: float) -> None:
        raise InfraError("kafka: a cluster starts node by node (Kafka.start)")

    async def probe(self) -> bool:
        return all(await asyncio.gather(*(node.probe() for node in self.nodes)))

    def pid_info(self) -> PidInfo | None:
        """Node 1's (any node's: :meth:`is_running`)."""
        return self.nodes[0].pid_info()

    def is_running(self) -> bool:
        return any(node.is_running() for node in self.nodes)

    async def start(self, timeout_s: float = 120.0) -> None:
        """Every node at once (a quorum needs most of the voters up), each awaited until
        the cluster lists it; no-op for the nodes already running."""
        self.config.ensure_dirs()
        ensure_cluster_id(self.nodes[0].cluster_home)
        began = time.monotonic()
        results = await asyncio.gather(
            *(node.start(timeout_s) for node in self.nodes), return_exceptions=True
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]
        if len(self.nodes) > 1:
            progress(
                "kafka",
                f"cluster of {len(self.nodes)} ready on {self.bootstrap} "
                f"({time.monotonic() - began:.1f} s; replication "
                f"{self.config.kafka_replication_factor}, min.insync.replicas "
                f"{self.config.kafka_min_insync_replicas})",
            )

    def stop_sync(self, timeout_s: float | None = None) -> bool:
        """Every node at once: a node stopping alone after the others would wait for a
        quorum to approve its controlled shutdown, which no longer exists."""
        if len(self.nodes) == 1:
            return self.nodes[0].stop_sync(timeout_s)
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=len(self.nodes)) as pool:
            stopped = list(pool.map(lambda n: n.stop_sync(timeout_s), self.nodes))
        return any(stopped)

    async def statuses(self) -> list[ComponentStatus]:
        return list(await asyncio.gather(*(node.status() for node in self.nodes)))

    async def status(self) -> ComponentStatus:
        return await self.nodes[0].status()

    # -- what the fault tests aim at ---------------------------------------------------------
    async def kill9(self, node_id: int, timeout_s: float = 30.0) -> int:
        """``kill -9`` one node (no controlled shutdown, no flush): its pid."""
        node = self.node(node_id)
        info = node.pid_info()
        if info is None:
            raise InfraError(f"{node.name}: not running")
        os.killpg(info.pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout_s
        while pid_alive(info.pid, info.start_ticks):
            if time.monotonic() > deadline:
                raise InfraError(f"{node.name}: pid {info.pid} survived SIGKILL")
            await asyncio.sleep(0.05)
        pidfile_path(self.config.run_dir, node.name).unlink(missing_ok=True)
        return info.pid

    def active_controller(self) -> int | None:
        """The node leading the controller quorum, as the running nodes last recorded it
        (KRaft's ``quorum-state`` file: the newest epoch's leader); None if unknown."""
        best: tuple[int, int] | None = None
        for node in self.nodes:
            if not node.is_running():
                continue
            state = quorum_state(node.data_dir)
            if state is None or state[1] < 0:
                continue
            if best is None or state[0] > best[0]:
                best = state
        return best[1] if best else None

    async def partition_leaders(self, topic: str) -> dict[int, int]:
        """partition -> the node leading it (-1: none), from the cluster's metadata."""
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap,
            client_id="leadwire-infra-leaders",
            request_timeout_ms=5000,
            **self.admin_kwargs(),
        )
        await asyncio.wait_for(admin.start(), 15)
        try:
            described = await asyncio.wait_for(admin.describe_topics([topic]), 15)
        finally:
            await asyncio.wait_for(admin.close(), 5)
        return {
            p["partition"]: p["leader"]
            for t in described
            if t["error_code"] == 0
            for p in t["partitions"]
        }


def quorum_state(data_dir: Path) -> tuple[int, int] | None:
    """(leader epoch, leader id) from a node's ``__cluster_metadata-0/quorum-state``."""
    try:
        doc = json.loads((data_dir / "__cluster_metadata-0" / "quorum-state").read_text())
        return int(doc.get("leaderEpoch", -1)), int(doc.get("leaderId", -1))
    except (OSError, ValueError, TypeError, AttributeError):
        return None
