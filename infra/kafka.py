"""Apache Kafka 4.x, KRaft single node (broker + controller), from Maven Central jars.

Install: ``mvn dependency:copy-dependencies`` with ``infra/kafka-pom.xml`` into
``~/.cache/leadwire/kafka-<version>/libs`` (once per machine). Start: format the storage
once (cluster id kept in ``<state>/kafka/cluster.id``), then
``java -Xms256m -Xmx512m ... kafka.Kafka server.properties``. Ready when an aiokafka admin
client can describe the cluster and list topics.

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
from infra.config import ENV_KAFKA_PORT, HOST, KAFKA_VERSION, PACKAGE_DIR
from infra.errors import InfraError
from infra.processes import async_file_lock, port_listening, spawn
from infra.progress import progress
from infra.toolchain import ensure_java, ensure_maven, run

POM_TEMPLATE = PACKAGE_DIR / "kafka-pom.xml"
LOG4J2_CONFIG = PACKAGE_DIR / "log4j2.properties"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.11.0:copy-dependencies"

JVM_FLAGS = (
    "-server",
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


def _prop(value: str) -> str:
    return value.replace("\\", "\\\\")


class Kafka(Component):
    name = "kafka"
    port_env = ENV_KAFKA_PORT
    stop_timeout = 30.0

    @property
    def port(self) -> int:
        return self.config.ports.kafka

    @property
    def controller_port(self) -> int:
        return self.config.ports.kafka_controller

    def ports(self) -> list[int]:
        return [self.port, self.controller_port]

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def home(self) -> Path:
        return self.config.state_dir / "kafka"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def server_log(self) -> Path:
        return self.config.logs_dir / "kafka-server.log"

    @property
    def libs_dir(self) -> Path:
        return kafka_libs_dir(self.config.cache_dir)

    async def install(self) -> None:
        await ensure_java()
        await ensure_kafka_jars(self.config.cache_dir)

    def server_properties(self) -> str:
        p = self.config.ports
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{HOST}:{p.kafka_controller}",
            "listeners": f"PLAINTEXT://{HOST}:{p.kafka},CONTROLLER://{HOST}:{p.kafka_controller}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{p.kafka}",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": _prop(str(self.data_dir)),
            "num.partitions": "4",
            "auto.create.topics.enable": "true",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.num.partitions": "4",
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # After a kill -9 the new broker cannot register until the old registration's
            # session expires (default 9 s): keep that short for crash/restart tests.
            "broker.heartbeat.interval.ms": "500",
            "broker.session.timeout.ms": "4000",
        }
        if self.config.scram:
            admin = self.config.kafka_passwords()[kafka_auth.ADMIN]
            settings.update(kafka_auth.server_properties(HOST, p.kafka, p.kafka_controller, admin))
        lines = [
            f"# generated by infra/kafka.py for stack {self.config.name!r}; rewritten on every start"
        ]
        lines += [f"{key}={value}" for key, value in settings.items()]
        return "\n".join(lines) + "\n"

    def _java(self, java: str, *jvm_flags: str) -> list[str]:
        return [
            java,
            *jvm_flags,
            f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
            f"-Dkafka.logs.dir={self.config.logs_dir}",
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
        marker = self.home / "auth"  # how the storage was formatted: none or scram
        if (self.data_dir / "meta.properties").is_file():
            formatted = marker.read_text().strip() if marker.is_file() else "none"
            if self.config.scram and formatted != "scram":
                raise InfraError(
                    f"kafka: stack {self.config.name!r} was formatted without SCRAM users; "
                    f"`python -m infra destroy --stack {self.config.name}` (deletes its data) "
                    "and start again, or unset LEADWIRE_KAFKA_AUTH"
                )
        else:
            id_file = self.home / "cluster.id"
            if not id_file.is_file():
                id_file.write_text(random_cluster_id() + "\n")
            cluster_id = id_file.read_text().strip()
            progress("kafka", f"formatting storage in {self.data_dir} (cluster id {cluster_id})")
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
                what="kafka storage format",
                timeout_s=120,
                log_path=self.log_path,
            )
            marker.write_text(self.config.kafka_auth + "\n")
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
            return bool(cluster.get("brokers"))
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
