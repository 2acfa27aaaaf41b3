"""docker-compose.yml describes the same system the code runs: services, ports, env vars."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from pathlib import Path

import pytest
import yaml
from pydantic_settings import BaseSettings

from shared.settings import ENV_PREFIX, CommonSettings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("ingest", "processor", "notifier", "analytics", "archiver", "api")
# The services with a public listener (the processor and the archiver have only ops).
PUBLIC = ("ingest", "notifier", "analytics", "api")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def known_env_vars() -> set[str]:
    """Every LEADWIRE_* variable some settings class of the code reads."""
    classes: list[type[BaseSettings]] = [CommonSettings]
    for name in SERVICES:
        module_name = f"services.{name}.settings"
        if importlib.util.find_spec(f"services.{name}") and importlib.util.find_spec(module_name):
            module = importlib.import_module(module_name)
            classes += [
                c
                for _, c in inspect.getmembers(module, inspect.isclass)
                if issubclass(c, BaseSettings) and c.__module__ == module_name
            ]
    return {f"{ENV_PREFIX}{field.upper()}" for c in classes for field in c.model_fields}


def test_infra_and_every_service_are_there(compose: dict) -> None:
    services = compose["services"]
    assert {"kafka", "postgres", "s3", *SERVICES} <= set(services)
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"


@pytest.mark.parametrize("name", SERVICES)
def test_service_runs_its_module_with_a_healthcheck_on_its_ops_listener(
    compose: dict, name: str
) -> None:
    service = compose["services"][name]
    assert service["command"] == ["python", "-m", f"services.{name}"]
    assert (ROOT / "services" / name / "__main__.py").exists(), (
        f"services/{name}/__main__.py missing"
    )
    ops = CommonSettings.model_fields[f"{name}_ops_port"].default
    assert service["environment"][f"LEADWIRE_{name.upper()}_OPS_PORT"] == str(ops)
    assert f"127.0.0.1:{ops}/readyz" in " ".join(service["healthcheck"]["test"])
    if name in PUBLIC:
        port = CommonSettings.model_fields[f"{name}_port"].default
        assert service["environment"][f"LEADWIRE_{name.upper()}_PORT"] == str(port)
    for dep in ("kafka", "postgres", "s3"):
        assert service["depends_on"][dep]["condition"] == "service_healthy"


def test_only_the_gateway_and_the_management_api_are_published(compose: dict) -> None:
    published = {
        name: service["ports"]
        for name, service in compose["services"].items()
        if "ports" in service
    }
    assert published == {"ingest": ["8080:8080"], "api": ["8085:8085"]}


def test_ops_listeners_stay_on_loopback(compose: dict) -> None:
    for name in SERVICES:
        env = compose["services"][name]["environment"]
        assert env.get("LEADWIRE_OPS_HOST", "127.0.0.1") == "127.0.0.1", name
        # A wildcard host only where a public listener needs it.
        if env.get("LEADWIRE_HTTP_HOST") == "0.0.0.0":
            assert name in PUBLIC, name
    assert CommonSettings.model_fields["ops_host"].default == "127.0.0.1"
    ports = [
        CommonSettings.model_fields[f"{n}_{kind}"].default
        for n in SERVICES
        for kind in ("port", "ops_port")
        if f"{n}_{kind}" in CommonSettings.model_fields
    ]
    assert len(ports) == len(set(ports)) == len(SERVICES) + len(PUBLIC)


def test_env_vars_are_the_ones_the_code_reads(compose: dict) -> None:
    env = compose["x-leadwire-env"]
    known = known_env_vars()
    unknown = sorted(k for k in env if k not in known)
    assert not unknown, f"compose sets variables no settings class reads: {unknown}"
    for required in (
        "LEADWIRE_DATABASE_URL",
        "LEADWIRE_KAFKA_BOOTSTRAP",
        "LEADWIRE_S3_ENDPOINT",
        "LEADWIRE_S3_BUCKET",
        "LEADWIRE_S3_ACCESS_KEY",
        "LEADWIRE_S3_SECRET_KEY",
    ):
        assert required in env
    assert env["LEADWIRE_KAFKA_BOOTSTRAP"] == "${LEADWIRE_KAFKA_BOOTSTRAP:-kafka:9092}"
    assert (
        env["LEADWIRE_DATABASE_URL"].startswith("postgresql://")
        and "@postgres:5432/" in env["LEADWIRE_DATABASE_URL"]
    )
    assert env["LEADWIRE_S3_ENDPOINT"] == "http://s3:7070"
