"""Test infra from containers, for machines with a Docker daemon (same servers).

:func:`containers` makes the three containers (not started) and :func:`settings_env` gives
the services' settings for them, the same keys as the native stack's
(``infra.StackConfig.settings_env``); tests/unit/test_containers_provider.py checks both
without Docker.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

from infra.config import KAFKA_VERSION

POSTGRES_IMAGE = "postgres:15"
KAFKA_IMAGE = f"apache/kafka:{KAFKA_VERSION}"
S3_IMAGE = "versity/versitygw:v1.7.0"
S3_ACCESS_KEY = "leadwire"
S3_SECRET_KEY = "leadwire-secret-key"


def containers() -> tuple[Any, Any, Any]:
    """Postgres, Kafka (KRaft, one node) and the S3 server, configured, not started."""
    from testcontainers.community.postgres import PostgresContainer
    from testcontainers.core.container import DockerContainer

    pg = PostgresContainer(
        POSTGRES_IMAGE, username="postgres", password="postgres", dbname="leadwire"
    )
    kafka = kafka_container(DockerContainer(KAFKA_IMAGE), _free_port())
    s3 = (
        DockerContainer(S3_IMAGE)
        .with_env("ROOT_ACCESS_KEY", S3_ACCESS_KEY)
        .with_env("ROOT_SECRET_KEY", S3_SECRET_KEY)
        .with_command("--port :7070 posix --nometa /tmp")
        .with_exposed_ports(7070)
    )
    return pg, kafka, s3


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def kafka_container(container: Any, host_port: int) -> Any:
    """Apache Kafka's own image in KRaft combined mode (as in docker-compose.yml), its client
    port published on ``host_port`` and advertised there. (testcontainers' KafkaContainer
    runs Confluent's images: its KRaft mode refuses an Apache Kafka 4.x tag.)"""
    env = {
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
        "KAFKA_LISTENERS": "PLAINTEXT://:9092,CONTROLLER://:9093",
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://localhost:{host_port}",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_NUM_PARTITIONS": "4",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
    }
    for key, value in env.items():
        container = container.with_env(key, value)
    container = container.with_bind_ports(9092, host_port)
    container.bootstrap = f"localhost:{host_port}"
    return container


def settings_env(pg: Any, kafka: Any, s3: Any) -> dict[str, str]:
    """The LEADWIRE_* settings of the started containers (one broker: replication 1)."""
    return {
        "LEADWIRE_DATABASE_URL": pg.get_connection_url().replace(
            "postgresql+psycopg2://", "postgresql://"
        ),
        "LEADWIRE_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "LEADWIRE_KAFKA_REPLICATION_FACTOR": "1",
        "LEADWIRE_KAFKA_MIN_INSYNC_REPLICAS": "1",
        "LEADWIRE_S3_ENDPOINT": f"http://{s3.get_container_host_ip()}:{s3.get_exposed_port(7070)}",
        "LEADWIRE_S3_ACCESS_KEY": S3_ACCESS_KEY,
        "LEADWIRE_S3_SECRET_KEY": S3_SECRET_KEY,
        "LEADWIRE_S3_BUCKET": "leadwire-archive",
        "LEADWIRE_S3_REGION": "us-east-1",
    }


@contextlib.asynccontextmanager
async def container_infra() -> AsyncIterator[dict[str, str]]:
    from testcontainers.core.waiting_utils import wait_for_logs

    pg_c, kafka_c, s3_c = containers()
    with pg_c as pg, kafka_c as kafka, s3_c as s3:
        wait_for_logs(kafka, "Kafka Server started", timeout=120)
        wait_for_logs(s3, "", timeout=30)
        yield settings_env(pg, kafka, s3)
