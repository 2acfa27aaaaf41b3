"""The local broker with SCRAM (infra/kafka_auth.py): each service's ACLs are what its
code needs and no more, users and passwords are made once per stack and handed to the
right process, and the broker's settings take SCRAM logins only."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from infra.config import StackConfig
from infra.kafka import KafkaNode as Kafka
from infra.kafka_auth import ADMIN, SERVICES, acl_plan, user_of
from shared import topics

pytestmark = pytest.mark.unit


def _grants(service: str) -> set[str]:
    return {a.describe() for a in acl_plan("leadwire.", "leadwire-", [service])}


def test_the_plan_uses_the_real_topic_names() -> None:
    named = {a.name.removeprefix("leadwire.") for a in acl_plan("leadwire.", "x") if "." in a.name}
    assert named <= set(topics.ALL)


def test_the_gateway_writes_leads_its_rejections_and_facebook_leads_to_fetch() -> None:
    assert _grants("ingest") == {
        "User:leadwire-ingest WRITE topic leadwire.webhooks.raw",
        "User:leadwire-ingest WRITE topic leadwire.outcomes",
        # Facebook notifications' leads, fetched by the gateway's own consumer group.
        "User:leadwire-ingest WRITE topic leadwire.webhooks.fetch",
        "User:leadwire-ingest READ topic leadwire.webhooks.fetch",
        "User:leadwire-ingest READ group leadwire-ingest*",
        "User:leadwire-ingest WRITE topic leadwire.deadletter",
    }


def test_only_the_gateway_and_the_api_replays_write_the_raw_topic() -> None:
    writers = {
        a.principal
        for a in acl_plan("leadwire.", "leadwire-")
        if a.name == "leadwire.webhooks.raw" and a.operation == 4
    }
    assert writers == {"User:leadwire-ingest", "User:leadwire-api"}


def test_consumers_read_their_topics_in_their_own_groups() -> None:
    assert _grants("processor") == {
        "User:leadwire-processor READ topic leadwire.webhooks.raw",
        "User:leadwire-processor WRITE topic leadwire.outcomes",
        "User:leadwire-processor WRITE topic leadwire.deadletter",
        "User:leadwire-processor WRITE topic leadwire.alerts",
        "User:leadwire-processor READ group leadwire-processor*",
    }
    assert "User:leadwire-archiver READ topic leadwire.outcomes" in _grants("archiver")
    assert not any("webhooks.raw" in g for g in _grants("archiver"))
    assert "User:leadwire-analytics READ group leadwire-analytics*" in _grants("analytics")


def test_scram_stack_settings(tmp_path: Path) -> None:
    config = StackConfig.for_name("unit-scram", tmp_path, kafka_auth="scram")
    passwords = config.kafka_passwords()
    assert set(passwords) == {ADMIN, *map(user_of, SERVICES)}
    assert config.kafka_passwords() == passwords  # made once, kept
    saved = config.state_dir / "kafka" / "scram.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    env = config.settings_env()
    assert env["LEADWIRE_KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
    assert env["LEADWIRE_KAFKA_SASL_USERNAME"] == ADMIN
    mine = config.service_env("processor")
    assert mine["LEADWIRE_KAFKA_SASL_USERNAME"] == "leadwire-processor"
    assert mine["LEADWIRE_KAFKA_SASL_PASSWORD"] == passwords["leadwire-processor"]
    props = Kafka(config).server_properties()
    assert "listeners=SASL_PLAINTEXT://127.0.0.1:" in props
    assert "allow.everyone.if.no.acl.found=false" in props
    assert "PLAINTEXT://127.0.0.1" not in props.replace("SASL_PLAINTEXT://", "")


def test_without_scram_nothing_changes(tmp_path: Path) -> None:
    config = StackConfig.for_name("unit-plain", tmp_path, kafka_auth="none")
    assert "LEADWIRE_KAFKA_SECURITY_PROTOCOL" not in config.settings_env()
    assert config.service_env("ingest") == {}
    assert "sasl" not in Kafka(config).server_properties()
