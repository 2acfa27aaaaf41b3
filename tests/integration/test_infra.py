"""The local infra manager (``infra``) against the real servers it starts.

A throwaway stack ``infra-selftest`` on ports of its own (Kafka 28092/28093, Postgres
27432, S3 7270), so it never touches the dev or test stacks. It is destroyed afterwards.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aioboto3
import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from infra import Stack, list_processes, s3_client_config, start_process, stop_all
from infra.processes import group_members, pid_alive

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
# Below the kernel's ephemeral range (32768-60999), so no client connection can be holding them.
PORTS = {"kafka_port": 28092, "kafka_controller_port": 28093, "pg_port": 27432, "s3_port": 7270}


def _refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


async def _until(check: Callable[[], bool], what: str, deadline_s: float = 10.0) -> None:
    end = time.monotonic() + deadline_s
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not true within {deadline_s} s")
        await asyncio.sleep(0.05)


@pytest.fixture(scope="module")
async def stack() -> AsyncIterator[Stack]:
    stack = Stack.for_name("infra-selftest", ROOT, **PORTS)
    try:
        await stack.start(timeout_s=180)
        yield stack
    finally:
        await asyncio.to_thread(stop_all, stack)
        await stack.destroy()


def _s3_session_client(env: dict[str, str]) -> Any:
    return aioboto3.Session().client(
        "s3",
        endpoint_url=env["LEADWIRE_S3_ENDPOINT"],
        aws_access_key_id=env["LEADWIRE_S3_ACCESS_KEY"],
        aws_secret_access_key=env["LEADWIRE_S3_SECRET_KEY"],
        region_name=env["LEADWIRE_S3_REGION"],
        config=s3_client_config(),
    )


async def test_settings_env_points_at_the_stack(stack: Stack) -> None:
    assert stack.settings_env() == {
        "LEADWIRE_DATABASE_URL": "postgresql://postgres@127.0.0.1:27432/leadwire",
        "LEADWIRE_KAFKA_BOOTSTRAP": "127.0.0.1:28092",
        "LEADWIRE_KAFKA_REPLICATION_FACTOR": "1",
        "LEADWIRE_KAFKA_MIN_INSYNC_REPLICAS": "1",
        "LEADWIRE_S3_ENDPOINT": "http://127.0.0.1:7270",
        "LEADWIRE_S3_BUCKET": "leadwire-archive",
        "LEADWIRE_S3_ACCESS_KEY": "leadwire",
        "LEADWIRE_S3_SECRET_KEY": "leadwire-secret-key",
        "LEADWIRE_S3_REGION": "us-east-1",
    }


async def test_kafka_admin_answers_and_autocreates_four_partitions(stack: Stack) -> None:
    bootstrap = stack.settings_env()["LEADWIRE_KAFKA_BOOTSTRAP"]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:
        cluster = await admin.describe_cluster()
        assert [b["node_id"] for b in cluster["brokers"]] == [1]
        await admin.list_topics()
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        meta = await producer.send_and_wait("infra-selftest", b"hello")
        assert meta.offset >= 0
        assert len(await producer.partitions_for("infra-selftest")) == 4
    finally:
        await producer.stop()


async def test_postgres_select_1_with_test_settings(stack: Stack) -> None:
    conn = await asyncpg.connect(stack.settings_env()["LEADWIRE_DATABASE_URL"], timeout=10)
    try:
        assert await conn.fetchval("SELECT 1") == 1
        assert await conn.fetchval("SHOW fsync") == "off"  # every stack but dev runs without fsync
        assert await conn.fetchval("SHOW max_connections") == "200"
    finally:
        await conn.close()


async def test_s3_put_get_list_round_trip(stack: Stack) -> None:
    env = stack.settings_env()
    bucket = env["LEADWIRE_S3_BUCKET"]
    async with _s3_session_client(env) as s3:
        await s3.put_object(Bucket=bucket, Key="selftest/a.json", Body=b'{"ok": true}')
        got = await s3.get_object(Bucket=bucket, Key="selftest/a.json")
        assert await got["Body"].read() == b'{"ok": true}'
        listed = await s3.list_objects_v2(Bucket=bucket, Prefix="selftest/")
        assert [o["Key"] for o in listed["Contents"]] == ["selftest/a.json"]


async def test_start_again_is_a_quick_no_op(stack: Stack) -> None:
    before = {p.name: p.pid for p in list_processes(stack)}
    began = time.monotonic()
    await stack.start()
    assert time.monotonic() - began < 10
    assert {p.name: p.pid for p in list_processes(stack)} == before


async def test_one_component_restarts_with_its_data(stack: Stack) -> None:
    env = stack.settings_env()
    await stack.s3.stop()
    assert _refused(stack.config.ports.s3)
    assert stack.kafka.is_running() and stack.postgres.is_running()
    await stack.s3.start()
    async with _s3_session_client(env) as s3:
        got = await s3.get_object(Bucket=env["LEADWIRE_S3_BUCKET"], Key="selftest/a.json")
        assert await got["Body"].read() == b'{"ok": true}'


async def test_lease_keeps_the_stack_for_the_last_user(stack: Stack) -> None:
    # Another process (think: a second pytest session) holds a lease on the same stack.
    holder = (
        "import asyncio, sys; from pathlib import Path; from infra import Stack\n"
        "async def main():\n"
        f"    async with Stack.for_name('infra-selftest', Path({str(ROOT)!r}), **{PORTS!r}).lease():\n"
        "        print('leased', flush=True)\n"
        "        await asyncio.to_thread(sys.stdin.read)\n"
        "asyncio.run(main())\n"
    )
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        holder,
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdin is not None and child.stdout is not None
    assert await asyncio.wait_for(child.stdout.readline(), 60) == b"leased\n"

    async with stack.lease():
        pass
    assert all(c.is_running() for c in stack.components), "stopped while another user held it"

    child.stdin.close()
    assert await asyncio.wait_for(child.wait(), 60) == 0
    assert not any(c.is_running() for c in stack.components), "last user left it running"
    await stack.start()


async def test_stop_leaves_no_process_and_no_port(stack: Stack) -> None:
    # A tracked "service" that ignores SIGTERM and has a child: stop must still clear it.
    code = "import signal, subprocess, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); subprocess.Popen(['sleep', '300']); time.sleep(300)"
    svc_pid = start_process("selftest-svc", [sys.executable, "-c", code], {}, stack)
    await _until(lambda: len(group_members(svc_pid)) == 2, "service and its child running")
    tracked = list_processes(stack)
    assert {p.name for p in tracked} == {"kafka", "postgres", "s3", "selftest-svc"}

    await stack.stop(timeout_s=2)

    for info in tracked:
        assert not pid_alive(info.pid, info.start_ticks), (
            f"{info.name} (pid {info.pid}) still alive"
        )
        assert not group_members(info.pid), f"{info.name}: process group {info.pid} not empty"
        assert not info.path.exists(), f"{info.path} left behind"
    p = stack.config.ports
    ports = (p.kafka, p.kafka_controller, p.postgres, p.s3)
    await _until(lambda: all(_refused(port) for port in ports), f"ports {ports} refuse connections")
    assert list_processes(stack) == []
