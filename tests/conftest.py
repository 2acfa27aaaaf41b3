"""Session-wide real infrastructure, and per-test settings with names of their own.

The provider is chosen by ``LEADWIRE_TEST_INFRA``:

- ``native`` (default where no Docker daemon answers): the project's infra manager starts
  Kafka, Postgres and S3 as local processes (the ``test`` stack, its own ports);
- ``testcontainers`` (when a Docker daemon answers): containers of the same servers;
- ``external``: the ``LEADWIRE_*`` env vars point at running services.

Every test that asks for ``settings`` gets a database cloned from a migrated template, a
topic prefix and a bucket of its own, so tests never clean up after each other.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from shared.db import migrate
from shared.settings import CommonSettings
from tests.support.infra import provide_infra

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("ingest", "processor", "notifier", "analytics", "archiver", "api")


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [f"leadwire test infra: {os.environ.get('LEADWIRE_TEST_INFRA', 'auto')}"]


@pytest.fixture(scope="session")
async def infra_env() -> AsyncIterator[dict[str, str]]:
    """LEADWIRE_* settings of real Kafka, Postgres and S3 for the whole session."""
    async with provide_infra(ROOT) as env:
        yield env


@pytest.fixture(scope="session")
async def template_db(infra_env: dict[str, str]) -> AsyncIterator[str]:
    """A migrated database that every test's database is cloned from (one per session,
    so parallel sessions never drop each other's)."""
    admin_url = infra_env["LEADWIRE_DATABASE_URL"]
    name = f"leadwire_template_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    await migrate(_with_db(admin_url, name))
    yield name
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
    except asyncpg.PostgresError:
        pass  # still cloned from somewhere; harmless, dropped with the stack's data
    finally:
        await conn.close()


def _with_db(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
async def database_url(infra_env: dict[str, str], template_db: str) -> str:
    """A fresh, migrated database for this test (cloned from the template)."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    conn = await asyncpg.connect(infra_env["LEADWIRE_DATABASE_URL"])
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    finally:
        await conn.close()
    return _with_db(infra_env["LEADWIRE_DATABASE_URL"], name)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to this test's database (``shared.db.connect``: jsonb as Python values)."""
    from shared.db import connect

    conn = await connect(database_url)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
def unique() -> str:
    """A short unique token for names in this test."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
async def settings(
    infra_env: dict[str, str], database_url: str, unique: str
) -> AsyncIterator[CommonSettings]:
    """Settings for this test: its own database, topic prefix and bucket. The test's
    topics are deleted after it (a broker holding thousands of finished tests' partitions
    slows every later topic creation and metadata request)."""
    from tests.support.net import free_port
    from tests.support.s3 import create_bucket
    from tests.support.topics import delete_topics_with_prefix

    bucket = f"t-{unique}"
    env = {
        **infra_env,
        "LEADWIRE_DATABASE_URL": database_url,
        "LEADWIRE_TOPIC_PREFIX": f"t{unique}.",
        "LEADWIRE_S3_BUCKET": bucket,
        "LEADWIRE_KAFKA_TIMEOUT_S": "5",
        # Ops listeners of their own: the defaults (9080-9085) are make up's.
        **{f"LEADWIRE_{name.upper()}_OPS_PORT": str(free_port()) for name in SERVICES},
    }
    s = settings_from(env)
    await create_bucket(s)
    yield s
    await delete_topics_with_prefix(s.kafka_bootstrap, s.topic_prefix)


def settings_from(env: dict[str, str]) -> CommonSettings:
    """CommonSettings built from explicit LEADWIRE_* values (not the process env)."""
    fields = {
        k.removeprefix("LEADWIRE_").lower(): v
        for k, v in env.items()
        if k.startswith("LEADWIRE_")
        and k.removeprefix("LEADWIRE_").lower() in CommonSettings.model_fields
    }
    return CommonSettings(**fields)


@pytest.fixture
def settings_env(settings: CommonSettings) -> dict[str, str]:
    """The test's settings as LEADWIRE_* env vars, for subprocesses (services, CLI)."""
    from tests.support.processes import env_for

    return env_for(settings)
