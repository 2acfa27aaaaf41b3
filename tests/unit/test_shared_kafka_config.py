"""D1: the producer is idempotent with acks=all; a test fails if defaults creep back."""

from __future__ import annotations

import ssl

import certifi
import pytest
from pydantic import SecretStr

from shared.kafka import ConsumerRunner, Publisher, client_config, ensure_topics, producer_config
from shared.kafka import admin as admin_module
from shared.settings import CommonSettings

pytestmark = pytest.mark.unit


def test_producer_config_is_idempotent_acks_all() -> None:
    config = producer_config(CommonSettings())
    assert config["enable_idempotence"] is True
    assert config["acks"] == "all"


async def test_publisher_builds_an_idempotent_acks_all_producer() -> None:
    publisher = Publisher(CommonSettings())
    producer = publisher.producer
    try:
        # aiokafka keeps acks=all as -1 on its sender; idempotence creates a txn manager.
        assert producer._sender._acks == -1
        assert producer._txn_manager is not None
    finally:
        await producer.client.close()


def test_clients_connect_plaintext_by_default() -> None:
    config = client_config(CommonSettings(kafka_bootstrap="k:9092"))
    assert config == {"bootstrap_servers": "k:9092", "security_protocol": "PLAINTEXT"}


def test_every_client_gets_scram_over_tls_when_set() -> None:
    ca = certifi.where()  # any PEM bundle stands for the cluster's CA file
    settings = CommonSettings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_username="leadwire-processor",
        kafka_sasl_password=SecretStr("s3cret"),
        kafka_ssl_cafile=ca,
    )
    config = client_config(settings)
    assert config["security_protocol"] == "SASL_SSL"
    assert config["sasl_mechanism"] == "SCRAM-SHA-512"
    assert config["sasl_plain_username"] == "leadwire-processor"
    assert config["sasl_plain_password"] == "s3cret"
    context = config["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    # The producer, the consumer runner and the admin client are built from it.
    assert producer_config(settings).items() >= config.items()


async def test_the_consumer_runner_and_admin_client_use_the_security_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = CommonSettings(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_username="leadwire-archiver",
        kafka_sasl_password=SecretStr("pw"),
    )

    async def handler(messages: object) -> None:
        return None

    publisher = Publisher(settings)
    runner: ConsumerRunner[bytes] = ConsumerRunner(
        settings,
        topics=["outcomes"],
        group_id="g",
        decode=bytes,
        handler=handler,
        publisher=publisher,
    )
    try:
        for client in (runner.consumer._client, publisher.producer.client):
            assert client._security_protocol == "SASL_PLAINTEXT"
            assert client._sasl_mechanism == "SCRAM-SHA-512"
            assert client._sasl_plain_username == "leadwire-archiver"
            assert client._sasl_plain_password == "pw"
    finally:
        await runner.consumer._client.close()
        await publisher.producer.client.close()

    built: list[dict[str, object]] = []

    class Admin:
        def __init__(self, **kwargs: object) -> None:
            built.append(kwargs)

        async def start(self) -> None:
            raise OSError("no broker in a unit test")

        async def close(self) -> None:
            return None

    monkeypatch.setattr(admin_module, "AIOKafkaAdminClient", Admin)
    with pytest.raises(OSError):
        await ensure_topics(settings, ["outcomes"])
    assert built and built[0].items() >= client_config(settings).items()


def test_a_secret_never_shows_in_the_settings_repr() -> None:
    settings = CommonSettings(kafka_sasl_password=SecretStr("hunter2-kafka"))
    assert "hunter2-kafka" not in repr(settings)
