"""Apache Kafka 4.x in KRaft combined mode (each node a broker and a controller), from
Maven Central jars: one node here (:class:`KafkaNode`); the cluster of them is
:mod:`infra.kafka_cluster`.

Install: ``mvn dependency:copy-dependencies`` with ``infra/kafka-pom.xml`` into
``~/.cache/leadwire/kafka-<version>/libs`` (once per machine). Start: format the storage
once (the cluster's id kept in ``<state>/kafka/cluster.id``, every node formatted with it),
then ``java -Xms256m -Xmx512m ... kafka.Kafka server.properties``. A node is ready when an
aiokafka admin client connected to it alone sees it among the cluster's brokers.

With ``LEADWIRE_KAFKA_AUTH=scram`` the client listener takes SCRAM-SHA-512 logins only:
the users are created when the storage is formatted, and the ACLs of each service come
after (kafka_auth.py).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import shutil
import uuid
from pathlib import Path

from infra import kafka_auth
from infra.component import Component
from infra.config import (
    ENV_KAFKA_PORT,
    HOST,
    KAFKA_VERSION,
    PACKAGE_DIR,
    StackConfig,
    formatted_brokers,
)
from infra.errors import InfraError
from infra.processes import async_file_lock, port_listening, spawn
from infra.progress import progress
from infra.toolchain import ensure_java, ensure_maven, run

POM_TEMPLATE = PACKAGE_DIR / "kafka-pom.xml"
LOG4J2_CONFIG = PACKAGE_DIR / "log4j2.properties"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.11.0:copy-dependencies"

JVM_FLAGS = (
    "-server",
    # C1 only. With C2 as well, a fresh broker spends about half its CPU compiling for
    # minutes on end (40-50 % of its CPU at rest and under load, read per thread from
    # /proc): on 2 cores that halves what Kafka costs per lead (bench cost: ~600 -> ~320
    # µs), and the broker is ready sooner. A long-lived broker on a big machine may drop it.
    "-XX:TieredStopAtLevel=1",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)


def kafka_libs_dir(cache_dir: Path, version: str = KAFKA_VERSION) -> Path:
    return cache_dir / f"kafka-{version}" / "libs"


def _pom_text(version: str) -> str:
    return POM_TEMPLATE.read_text().replace("@KAFKA_VERSION@", version)


def _jars_complete(libs: Path, stamp: Path, digest: str, version: str) -> bool:
    try:
        return (
            stamp.read_text().strip() == digest and (libs / f"kafka_2.13-{version}.jar").is_file()
        )
    except OSError:
        return False


async def ensure_kafka_jars(cache_dir: Path, version: str = KAFKA_VERSION) -> Path:
    """The broker's runtime classpath dir, fetched with Maven unless already cached."""
    pom = _pom_text(version)
    digest = hashlib.sha256(pom.encode()).hexdigest()
    base = cache_dir / f"kafka-{version}"
    libs, stamp = base / "libs", base / "libs.sha256"
    if _jars_complete(libs, stamp, digest, version):
        return libs
    async with async_file_lock(
        cache_dir / "locks" / f"kafka-{version}.lock", 1200, "fetching Kafka jars"
    ):
        if _jars_complete(libs, stamp, digest, version):
            return libs
        mvn = await ensure_maven()
        await ensure_java()
        base.mkdir(parents=True, exist_ok=True)
        pom_path = base / "kafka-pom.xml"
        pom_path.write_text(pom)
        tmp = base / f"libs.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        progress(
            "kafka",
            f"fetching Kafka {version} jars from Maven Central (first run only) into {libs}",
        )
        await run(
            [
                mvn,
                "-B",
                "-q",
                "-f",
                str(pom_path),
                DEPENDENCY_PLUGIN,
                "-DincludeScope=runtime",
                f"-DoutputDirectory={tmp}",
            ],
            what="mvn copy-dependencies (Kafka jars)",
            cwd=base,
            timeout_s=1200,
            log_path=cache_dir / "logs" / f"kafka-{version}-mvn.log",
        )
        if not (tmp / f"kafka_2.13-{version}.jar").is_file():
            raise InfraError(f"mvn finished but {tmp} has no kafka_2.13-{version}.jar")
        shutil.rmtree(libs, ignore_errors=True)
        os.replace(tmp, libs)
        stamp.write_text(digest + "\n")
    return libs


def random_cluster_id() -> str:
    """Same format as ``kafka-storage random-uuid``: URL-safe base64 of 16 random bytes."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def ensure_cluster_id(home: Path) -> str:
    """The cluster's id, kept in ``<home>/cluster.id`` (made the first time)."""
    home.mkdir(parents=True, exist_ok=True)
    id_file = home / "cluster.id"
    if not id_file.is_file():
        id_file.write_text(random_cluster_id() + "\n")
    return id_file.read_text().strip()


def _prop(value: str) -> str:
    return value.replace("\\", "\\\\")


class KafkaNode(Component):
    """One Kafka process (broker and controller). Node 1 is ``kafka`` (pidfile, log,
    ``<state>/kafka/``), node N of a cluster ``kafka-N`` (``<state>/kafka-N/``); every node
    has its own ports (:meth:`Ports.kafka_node`) and data directory. The cluster is
    :class:`infra.kafka_cluster.Kafka`."""

    port_env = ENV_KAFKA_PORT
    stop_timeout = 30.0

    def __init__(self, config: StackConfig, node_id: int = 1) -> None:
        super().__init__(config)
        self.node_id = node_id
        self.name = "kafka" if node_id == 1 else f"kafka-{node_id}"

    @property
    def port(self) -> int:
        return self.config.ports.kafka_node(self.node_id)[0]

    @property
    def controller_port(self) -> int:
        return self.config.ports.kafka_node(self.node_id)[1]

    def ports(self) -> list[int]:
        return [self.port, self.controller_port]

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def home(self) -> Path:
        return self.config.state_dir / self.name

    @property
    def cluster_home(self) -> Path:
        """Where the cluster's id and format markers live: node 1's home."""
        return self.config.state_dir / "kafka"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def server_log(self) -> Path:
        return self.config.logs_dir / f"{self.name}-server.log"

    @property
    def libs_dir(self) -> Path:
        return kafka_libs_dir(self.config.cache_dir)

    async def install(self) -> None:
        await ensure_java()
        await ensure_kafka_jars(self.config.cache_dir)

    def server_properties(self) -> str:
        c = self.config
        nodes = range(1, c.kafka_brokers + 1)
        voters = ",".join(f"{n}@{HOST}:{c.ports.kafka_node(n)[1]}" for n in nodes)
        replicas, min_isr = str(c.kafka_replication_factor), str(c.kafka_min_insync_replicas)
        settings = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://{HOST}:{self.port},CONTROLLER://{HOST}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{self.port}",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": _prop(str(self.data_dir)),
            "num.partitions": "4",
            "auto.create.topics.enable": "true",
            # On a cluster every topic (the internal ones too) has 3 replicas, and an
            # acks=all write needs 2 of them in sync: acknowledged means on two disks.
            "default.replication.factor": replicas,
            "min.insync.replicas": min_isr,
            "offsets.topic.num.partitions": "4",
            "offsets.topic.replication.factor": replicas,
            "transaction.state.log.num.partitions": "4",
            "transaction.state.log.replication.factor": replicas,
            "transaction.state.log.min.isr": min_isr,
            "share.coordinator.state.topic.replication.factor": replicas,
            "share.coordinator.state.topic.min.isr": min_isr,
            "group.initial.rebalance.delay.ms": "0",
            # After a kill -9 the new broker cannot register until the old registration's
            # session expires (default 9 s): keep that short for crash/restart tests.
            "broker.heartbeat.interval.ms": "500",
            "broker.session.timeout.ms": "4000",
        }
        if c.scram:
            admin = c.kafka_passwords()[kafka_auth.ADMIN]
            settings.update(
                kafka_auth.server_properties(HOST, self.port, self.controller_port, admin)
            )
        lines = [
            f"# generated by infra/kafka.py for stack {c.name!r}, node {self.node_id} of "
            f"{c.kafka_brokers}; rewritten on every start"
        ]
        lines += [f"{key}={value}" for key, value in settings.items()]
        return "\n".join(lines) + "\n"

    def _java(self, java: str, *jvm_flags: str) -> list[str]:
        return [
            java,
            *jvm_flags,
            f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
            f"-Dkafka.logs.dir={self.config.logs_dir}",
            f"-Dleadwire.kafka.log={self.name}-server",
            "-cp",
            f"{self.libs_dir}/*",
        ]

    async def _launch(self, timeout_s: float) -> None:
        java = await ensure_java()
        self.home.mkdir(parents=True, exist_ok=True)
        props = self.home / "server.properties"
        props.touch(mode=0o600)
        props.chmod(0o600)  # with SCRAM it holds the admin's password
        props.write_text(self.server_properties())
        if (self.data_dir / "meta.properties").is_file():
            self._check_formatted_as_configured()
        else:
            await self._format(java, props)
        heap = (f"-Xms{self.config.kafka_heap_min}", f"-Xmx{self.config.kafka_heap_max}")
        argv = [*self._java(java, *heap, *JVM_FLAGS), "kafka.Kafka", str(props)]
        spawn(
            self.name,
            argv,
            run_dir=self.config.run_dir,
            log_path=self.log_path,
            cwd=self.home,
            kind="infra",
        )

    def _check_formatted_as_configured(self) -> None:
        """A stack's storage keeps its authentication and its cluster's size: refuse to
        start it otherwise (a quorum of other voters would not even elect a leader)."""
        name = self.config.name
        marker = self.home / "auth"  # how the storage was formatted: none or scram
        formatted = marker.read_text().strip() if marker.is_file() else "none"
        if self.config.scram and formatted != "scram":
            raise InfraError(
                f"kafka: stack {name!r} was formatted without SCRAM users; "
                f"`python -m infra destroy --stack {name}` (deletes its data) "
                "and start again, or unset LEADWIRE_KAFKA_AUTH"
            )
        brokers = formatted_brokers(self.config.state_dir) or 1
        if brokers != self.config.kafka_brokers:
            raise InfraError(
                f"kafka: stack {name!r} was formatted as {brokers} broker(s), not "
                f"{self.config.kafka_brokers}; set LEADWIRE_KAFKA_BROKERS={brokers}, or "
                f"`python -m infra destroy --stack {name}` (deletes its data) and start again"
            )

    async def _format(self, java: str, props: Path) -> None:
        """Format this node's storage with the cluster's id (one for every node)."""
        cluster_id = ensure_cluster_id(self.cluster_home)
        progress(self.name, f"formatting storage in {self.data_dir} (cluster id {cluster_id})")
        await run(
            [
                *self._java(java),
                "kafka.tools.StorageTool",
                "format",
                "--ignore-formatted",
                "-t",
                cluster_id,
                "-c",
                str(props),
                *self._scram_users(),
            ],
            what=f"kafka storage format (node {self.node_id})",
            timeout_s=120,
            log_path=self.log_path,
        )
        (self.home / "auth").write_text(self.config.kafka_auth + "\n")
        (self.cluster_home / "brokers").write_text(f"{self.config.kafka_brokers}\n")

    def _scram_users(self) -> list[str]:
        """``--add-scram`` arguments of the format (none without SCRAM)."""
        return kafka_auth.format_args(self.config.kafka_passwords()) if self.config.scram else []

    def admin_kwargs(self) -> dict[str, object]:
        """How an admin client logs in (nothing to add without SCRAM)."""
        if not self.config.scram:
            return {}
        password = self.config.kafka_passwords()[kafka_auth.ADMIN]
        return kafka_auth.client_kwargs(kafka_auth.ADMIN, password)

    async def probe(self) -> bool:
        if not port_listening(self.port):
            return False
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap,
            client_id="leadwire-infra-probe",
            request_timeout_ms=5000,
            **self.admin_kwargs(),
        )
        try:
            await asyncio.wait_for(admin.start(), 10)
            cluster = await asyncio.wait_for(admin.describe_cluster(), 10)
            await asyncio.wait_for(admin.list_topics(), 10)
            # Registered and unfenced: the cluster lists this node among its brokers.
            return any(b.get("node_id") == self.node_id for b in cluster.get("brokers", []))
        except Exception:
            return False
        finally:
            try:
                await asyncio.wait_for(admin.close(), 5)
            except Exception:
                pass

    def _failure_log(self) -> Path:
        # The JVM's own stdout has startup crashes; the log4j file has broker errors.
        if self.server_log.is_file() and self.server_log.stat().st_size > 0:
            return self.server_log
        return self.log_path
