"""A5: Kafka with SCRAM. A private broker of this test's own (``kafka_auth="scram"``: the
users made at format time, ``allow.everyone.if.no.acl.found=false``, the ACLs of
infra/kafka_auth.py) refuses a client without credentials or with a wrong password, and
refuses a service's user what its ACLs do not grant; the whole pipeline, each service
logged in as its own user, takes a lead through the gateway to a processed, counted and
archived request. Postgres and S3 are the test stack's."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaError,
    TopicAuthorizationFailedError,
)
from pydantic import SecretStr

from infra import Stack
from infra.kafka_auth import ADMIN, SERVICES, acl_plan, apply_acls, user_of
from shared import topics
from shared.kafka import client_config, ensure_topics
from shared.settings import CommonSettings
from tests.conftest import ROOT
from tests.support.archiver import wait_archived
from tests.support.ingest import create_webhook
from tests.support.pipeline import running_pipeline
from tests.support.polling import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Below the ephemeral range (32768-60999), where a client connection may hold a port.
PRIVATE_KAFKA_PORT = 24292


def _login(user: str, password: str) -> dict[str, Any]:
    """The settings of a client logging in as ``user``."""
    return {
        "kafka_security_protocol": "SASL_PLAINTEXT",
        "kafka_sasl_mechanism": "SCRAM-SHA-512",
        "kafka_sasl_username": user,
        "kafka_sasl_password": SecretStr(password),
    }


async def _refused_at_bootstrap(**kwargs: Any) -> type[BaseException]:
    producer = AIOKafkaProducer(
        bootstrap_servers=f"127.0.0.1:{PRIVATE_KAFKA_PORT}", request_timeout_ms=3000, **kwargs
    )
    try:
        await asyncio.wait_for(producer.start(), 20)
    except (KafkaError, OSError, TimeoutError) as exc:
        return type(exc)
    finally:
        await producer.stop()
    raise AssertionError(f"a client with {sorted(kwargs) or 'no credentials'} got in")


async def _can_write(settings: CommonSettings, logical: str) -> bool:
    producer = AIOKafkaProducer(**client_config(settings), request_timeout_ms=5000)
    await producer.start()
    try:
        await asyncio.wait_for(producer.send_and_wait(settings.topic(logical), b"probe"), 15)
        return True
    except TopicAuthorizationFailedError:
        return False
    finally:
        await producer.stop()


async def _can_join(settings: CommonSettings, logical: str, group: str) -> bool:
    consumer = AIOKafkaConsumer(settings.topic(logical), **client_config(settings), group_id=group)
    try:
        await consumer.start()
        await asyncio.wait_for(consumer.getmany(timeout_ms=2000), 15)
        return True
    except (TopicAuthorizationFailedError, GroupAuthorizationFailedError):
        return False
    finally:
        await consumer.stop()


@pytest.mark.timeout(600)
async def test_without_credentials_refused_with_them_the_pipeline_works(
    settings: CommonSettings,
) -> None:
    stack = Stack.for_name("kafka-scram", ROOT, kafka_port=PRIVATE_KAFKA_PORT, kafka_auth="scram")
    await stack.start(components=["kafka"], timeout_s=180)
    try:
        passwords = stack.config.kafka_passwords()
        bootstrap = f"127.0.0.1:{PRIVATE_KAFKA_PORT}"
        admin = settings.model_copy(
            update={"kafka_bootstrap": bootstrap, **_login(ADMIN, passwords[ADMIN])}
        )
        prefix = settings.topic_prefix
        await ensure_topics(admin, topics.ALL)
        await apply_acls(bootstrap, passwords[ADMIN], acl_plan(prefix, prefix))

        # No credentials, a wrong password, a user that does not exist: no way in.
        assert await _refused_at_bootstrap() is KafkaConnectionError
        wrong = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512"}
        user = user_of("ingest")
        await _refused_at_bootstrap(**wrong, sasl_plain_username=user, sasl_plain_password="x")
        await _refused_at_bootstrap(
            **wrong, sasl_plain_username="mallory", sasl_plain_password=passwords[user]
        )

        own = {s: _login(user_of(s), passwords[user_of(s)]) for s in SERVICES}
        as_ = {s: admin.model_copy(update=own[s]) for s in SERVICES}
        # A user may do what its service does, and nothing else: the gateway cannot
        # publish an outcome-less alert or read the raw topic; the processor cannot skip
        # the gateway by writing the raw topic itself.
        assert await _can_write(as_["ingest"], topics.RAW)
        assert not await _can_write(as_["ingest"], topics.ALERTS)
        assert not await _can_write(as_["processor"], topics.RAW)
        assert not await _can_join(as_["ingest"], topics.RAW, f"{prefix}processor")
        assert not await _can_join(as_["analytics"], topics.OUTCOMES, f"{prefix}processor")

        hook = await create_webhook(settings.database_url, region="US")
        async with running_pipeline(
            admin,
            per_service={s: own[s] for s in SERVICES if s != "api"},
            ip_rate_per_minute=0,
            create_topics=False,  # made by the admin above: the gateway's user may not
        ) as pipe:
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    pipe.gateway.hook_url(hook),
                    json={"phone_number": "+14155550123", "firstname": "Scram"},
                    headers={"Prefer": "wait=20"},
                ) as resp,
            ):
                answer = await resp.json()
            assert resp.status == 200 and answer["status"] == "processed", answer
            await eventually(
                pipe.settled, deadline_s=120, interval_s=1.0, what="every lag 0, all ready"
            )
            _, figures = await eventually(
                lambda: pipe.analytics.get(f"/analytics/webhooks/{hook.id}"),
                until=lambda r: r[0] == 200 and r[1]["metrics"]["total_requests"] >= 1,
                deadline_s=60,
                what="the lead counted",
            )
            await wait_archived(admin, 1, deadline_s=60)
        # The probe message the gateway's user wrote on the raw topic (not an event) was
        # dead-lettered by the processor; the lead went through.
        assert figures["metrics"]["successful_requests"] == 1
    finally:
        await stack.destroy()
