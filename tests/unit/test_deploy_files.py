"""The deployment files: the service image carries runtime dependencies only, runs as a
non-root user and has a healthcheck; the compose file's cluster profile is three brokers
with replication 3 and min.insync.replicas 2."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DEV_TOOLS = {"pytest", "mypy", "ruff", "schemathesis", "hypothesis", "testcontainers"}


def _name(text: str) -> str:
    return re.sub(r"[-_.]+", "-", text).lower()


def _pins(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    return {_name(n): v for n, _, v in (line.partition("==") for line in lines if "==" in line)}


def _final_stage() -> list[str]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    ]
    last_from = max(i for i, line in enumerate(lines) if line.startswith("FROM "))
    return lines[last_from:]


def test_the_image_installs_the_runtime_lock_only() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "requirements.runtime.lock" in text
    assert "requirements.lock" not in text.replace("requirements.runtime.lock", "")
    assert "[dev]" not in text
    runtime = _pins(ROOT / "requirements.runtime.lock")
    assert not DEV_TOOLS & set(runtime), DEV_TOOLS & set(runtime)
    # The same versions as the tested lock.
    full = _pins(ROOT / "requirements.lock")
    assert {n: full.get(n) for n in runtime} == runtime


def test_the_runtime_lock_holds_every_runtime_dependency_and_theirs() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    runtime = _pins(ROOT / "requirements.runtime.lock")
    todo, seen = [Requirement(d) for d in deps], set()
    while todo:
        req = todo.pop()
        if req.marker and not req.marker.evaluate({"extra": ""}):
            continue
        name = _name(req.name)
        if name in seen:
            continue
        seen.add(name)
        assert name in runtime, f"{name} (needed by the services) is not in the image"
        todo += [Requirement(r) for r in metadata.distribution(req.name).requires or []]


def test_the_image_runs_as_a_user_and_checks_its_health() -> None:
    stage = _final_stage()
    users = [line.split()[1] for line in stage if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert any(line.startswith("HEALTHCHECK ") and "HEALTHCHECK_URL" in line for line in stage)
    assert "HEALTHCHECK_URL=http://127.0.0.1:9080/readyz" in " ".join(stage)  # the ops port
    # The test and lint tools never reach the final stage's files.
    assert not any("pip install" in line and "-e" in line.split() for line in stage)


def test_the_cluster_profile_is_three_brokers_replicating_three_times() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    brokers = [n for n in services if n.startswith("kafka")]
    assert sorted(brokers) == ["kafka", "kafka-2", "kafka-3"]
    assert services["kafka-2"]["profiles"] == services["kafka-3"]["profiles"] == ["cluster"]
    ids = {services[b]["environment"]["KAFKA_NODE_ID"] for b in brokers}
    assert ids == {"1", "2", "3"}
    env = dict(
        line.split("=", 1)
        for line in (ROOT / "compose.cluster.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert env["COMPOSE_PROFILES"] == "cluster"
    assert env["KAFKA_VOTERS"].count("@") == 3
    assert (env["KAFKA_REPLICATION"], env["KAFKA_MIN_ISR"]) == ("3", "2")
    assert len(env["LEADWIRE_KAFKA_BOOTSTRAP"].split(",")) == 3
    for b in brokers:  # every broker reads those settings
        kenv = services[b]["environment"]
        assert "KAFKA_VOTERS" in kenv["KAFKA_CONTROLLER_QUORUM_VOTERS"]
        assert "KAFKA_REPLICATION" in kenv["KAFKA_DEFAULT_REPLICATION_FACTOR"]
        assert "KAFKA_MIN_ISR" in kenv["KAFKA_MIN_INSYNC_REPLICAS"]
