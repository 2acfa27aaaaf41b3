"""What the testcontainers provider (tests/support/containers.py, chosen by make test where
``docker info`` answers) would start, checked without Docker: testcontainers is installed
(a declared test dependency), the images are those of the compose file and the native
stack, and the settings it hands the tests are the native stack's keys."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.config import StackConfig
from tests.support import containers

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def _default(value: str) -> str:
    """``${NAME:-default}`` -> ``default`` (the compose file without any env set)."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


class _NoDocker:
    """Stands in for testcontainers' Docker client: making a container needs no daemon."""

    def __init__(self, **_: Any) -> None:
        pass


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any, Any]:
    import testcontainers.core.container as core

    monkeypatch.setattr(core, "DockerClient", _NoDocker)
    return containers.containers()


def test_testcontainers_is_a_pinned_test_dependency() -> None:
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(d.startswith("testcontainers") for d in dev["dev"])
    lock = (ROOT / "requirements.lock").read_text().splitlines()
    assert any(line.startswith("testcontainers==") for line in lock)
    assert any(line.startswith("docker==") for line in lock)


def test_the_provider_starts_the_servers_the_compose_file_runs(made: tuple[Any, Any, Any]) -> None:
    pg, kafka, s3 = made
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert pg.image == compose["postgres"]["image"]
    assert kafka.image == compose["kafka"]["image"]
    assert s3.image == compose["s3"]["image"]
    assert kafka.env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    # The compose file's broker settings (its one-broker defaults) are the container's.
    kafka_env = {k: _default(str(v)) for k, v in compose["kafka"]["environment"].items()}
    for key, value in kafka.env.items():
        if key not in ("KAFKA_ADVERTISED_LISTENERS", "KAFKA_CONTROLLER_QUORUM_VOTERS"):
            assert kafka_env[key] == value, key
    port = int(kafka.bootstrap.rpartition(":")[2])
    assert kafka.env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://localhost:{port}"
    assert {int(k): v for k, v in kafka.ports.items()} == {9092: port}
    assert s3.env == {"ROOT_ACCESS_KEY": "leadwire", "ROOT_SECRET_KEY": "leadwire-secret-key"}
    assert "7070" in {str(p) for p in s3.ports}
    assert "posix" in str(s3._command)
    assert (pg.username, pg.dbname) == ("postgres", "leadwire")


def test_the_provider_hands_tests_the_native_stacks_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Started:
        def get_connection_url(self) -> str:
            return "postgresql+psycopg2://postgres:postgres@localhost:32768/leadwire"

        bootstrap = "localhost:32769"

        def get_container_host_ip(self) -> str:
            return "localhost"

        def get_exposed_port(self, port: int) -> int:
            return 32770

    env = containers.settings_env(Started(), Started(), Started())
    monkeypatch.delenv("LEADWIRE_KAFKA_BROKERS", raising=False)
    native = StackConfig.for_name("unit-containers", tmp_path).settings_env()
    assert set(env) == set(native)
    assert env["LEADWIRE_DATABASE_URL"].startswith("postgresql://")
    assert env["LEADWIRE_S3_ENDPOINT"] == "http://localhost:32770"
