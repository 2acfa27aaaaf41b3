"""Where the test session's Kafka, Postgres and S3 come from (``LEADWIRE_TEST_INFRA``)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

REQUIRED = (
    "LEADWIRE_DATABASE_URL",
    "LEADWIRE_KAFKA_BOOTSTRAP",
    "LEADWIRE_S3_ENDPOINT",
    "LEADWIRE_S3_ACCESS_KEY",
    "LEADWIRE_S3_SECRET_KEY",
)


def docker_answers() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def chosen_provider() -> str:
    provider = os.environ.get("LEADWIRE_TEST_INFRA", "").strip().lower()
    if provider:
        return provider
    return "testcontainers" if docker_answers() else "native"


@contextlib.asynccontextmanager
async def provide_infra(root: Path) -> AsyncIterator[dict[str, str]]:
    provider = chosen_provider()
    print(f"\n[leadwire] test infra provider: {provider}", file=sys.stderr)
    if provider == "external":
        missing = [k for k in REQUIRED if not os.environ.get(k)]
        if missing:
            raise RuntimeError(f"LEADWIRE_TEST_INFRA=external needs {', '.join(missing)} set")
        yield {k: v for k, v in os.environ.items() if k.startswith("LEADWIRE_")}
    elif provider == "native":
        from infra import Stack

        stack = Stack.for_name("test", root)
        if os.environ.get("LEADWIRE_KEEP_STACK") == "1":
            # Left running after the session (quick re-runs while developing).
            await stack.start()
            yield stack.settings_env()
        else:
            # Stopped when the last concurrent session using it ends.
            async with stack.lease():
                yield stack.settings_env()
    elif provider == "testcontainers":
        from tests.support.containers import container_infra

        async with container_infra() as env:
            yield env
    else:
        raise RuntimeError(
            f"LEADWIRE_TEST_INFRA={provider!r}: use native, testcontainers or external"
        )
