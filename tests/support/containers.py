"""Test infra from containers, for machines with a Docker daemon (same servers)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator


@contextlib.asynccontextmanager
async def container_infra() -> AsyncIterator[dict[str, str]]:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs
    from testcontainers.kafka import KafkaContainer
    from testcontainers.postgres import PostgresContainer

    with (
        PostgresContainer(
            "postgres:15", username="postgres", password="postgres", dbname="leadwire"
        ) as pg,
        KafkaContainer("apache/kafka:4.1.1").with_kraft() as kafka,
        DockerContainer("versity/versitygw:v1.7.0")
        .with_env("ROOT_ACCESS_KEY", "leadwire")
        .with_env("ROOT_SECRET_KEY", "leadwire-secret-key")
        .with_command("--port :7070 posix --nometa /tmp")
        .with_exposed_ports(7070) as s3,
    ):
        wait_for_logs(s3, "", timeout=30)
        yield {
            "LEADWIRE_DATABASE_URL": pg.get_connection_url().replace(
                "postgresql+psycopg2://", "postgresql://"
            ),
            "LEADWIRE_KAFKA_BOOTSTRAP": kafka.get_bootstrap_server(),
            "LEADWIRE_S3_ENDPOINT": f"http://{s3.get_container_host_ip()}:{s3.get_exposed_port(7070)}",
            "LEADWIRE_S3_ACCESS_KEY": "leadwire",
            "LEADWIRE_S3_SECRET_KEY": "leadwire-secret-key",
            "LEADWIRE_S3_BUCKET": "leadwire-archive",
            "LEADWIRE_S3_REGION": "us-east-1",
        }
