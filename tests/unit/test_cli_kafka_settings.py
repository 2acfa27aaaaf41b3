"""The CLI reaches a SCRAM broker as the services do: its Kafka login comes from the
environment or, unset there, from the stack's stack.env, and every Kafka client it opens
is built by shared.kafka.client_config."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.context import load_settings
from shared.kafka import client_config

pytestmark = pytest.mark.unit


def test_the_cli_logs_in_to_kafka_as_stack_env_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("SECURITY_PROTOCOL", "SASL_MECHANISM", "SASL_USERNAME", "SASL_PASSWORD"):
        monkeypatch.delenv(f"LEADWIRE_KAFKA_{name}", raising=False)
    stack_env = tmp_path / "stack.env"
    stack_env.write_text(
        "LEADWIRE_KAFKA_BOOTSTRAP=127.0.0.1:31112\n"
        "LEADWIRE_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT\n"
        "LEADWIRE_KAFKA_SASL_MECHANISM=SCRAM-SHA-512\n"
        "LEADWIRE_KAFKA_SASL_USERNAME=admin\n"
        "LEADWIRE_KAFKA_SASL_PASSWORD='from-stack-env'\n"
    )
    monkeypatch.setenv("LEADWIRE_STACK_ENV", str(stack_env))
    config = client_config(load_settings())
    assert config["security_protocol"] == "SASL_PLAINTEXT"
    assert (config["sasl_plain_username"], config["sasl_plain_password"]) == (
        "admin",
        "from-stack-env",
    )
    # The environment wins over the file.
    monkeypatch.setenv("LEADWIRE_KAFKA_SASL_USERNAME", "operator")
    assert client_config(load_settings())["sasl_plain_username"] == "operator"
