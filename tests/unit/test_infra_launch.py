"""What ``make up`` gives its services, without starting anything."""

from __future__ import annotations

from typing import Any

import pytest

from infra import launch

pytestmark = pytest.mark.unit


class _Stack:
    def settings_env(self) -> dict[str, str]:
        return {"LEADWIRE_KAFKA_BOOTSTRAP": "127.0.0.1:9092"}


@pytest.mark.parametrize(("cores", "workers"), [(1, 1), (2, 1), (3, 1), (4, 2), (8, 4)])
def test_the_gateway_gets_half_the_cores_at_least_one(cores: int, workers: int) -> None:
    assert launch.gateway_workers(cores) == workers


def test_make_up_runs_the_gateway_in_half_the_cores_unless_the_operator_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stack: Any = _Stack()
    monkeypatch.setattr(launch.os, "cpu_count", lambda: 2)
    monkeypatch.delenv("LEADWIRE_INGEST_WORKERS", raising=False)
    env = launch._settings_env(stack)
    assert env["LEADWIRE_INGEST_WORKERS"] == "1"
    assert env["LEADWIRE_KAFKA_BOOTSTRAP"] == "127.0.0.1:9092"

    monkeypatch.setenv("LEADWIRE_INGEST_WORKERS", "3")
    assert launch._settings_env(stack)["LEADWIRE_INGEST_WORKERS"] == "3"
