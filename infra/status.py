"""``make status``: every process of a stack as a table, each consumer with its partitions.

    PROCESS      PID    STATE  ADDRESS                 DETAIL
    kafka        4711   ready  127.0.0.1:19092         node 1, active controller, leads 9 of 24
    ...
    processor    4801   ready  http://127.0.0.1:9081   leadwire-processor: webhooks.raw 0,1
    processor-2  4802   ready  http://127.0.0.1:9091   leadwire-processor: webhooks.raw 2,3

The partitions are read from Kafka itself (each consumer group's description: its members
and their assignment; a member's client id ends with its process id), not from the
services. Readiness is each process's ``/readyz`` on its ops listener (the URLs make up
wrote to stack.env), a Kafka node's the cluster listing it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from infra.replicas import ops_url_key, service_of
from infra.stack import Stack
from shared.kafka import client_config
from shared.settings import CommonSettings

GROUP_PREFIX = "leadwire-"


@dataclass(frozen=True)
class Row:
    process: str
    pid: str
    state: str
    address: str
    detail: str = ""


def settings_of(env: Mapping[str, str]) -> CommonSettings:
    fields = CommonSettings.model_fields
    values = {
        k.removeprefix("LEADWIRE_").lower(): v
        for k, v in env.items()
        if k.startswith("LEADWIRE_") and k.removeprefix("LEADWIRE_").lower() in fields
    }
    return CommonSettings.model_validate(values)


async def assignments(settings: CommonSettings) -> dict[int, list[str]]:
    """pid -> "group: topic p,p" for every member of every leadwire consumer group."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

    admin = AIOKafkaAdminClient(**client_config(settings), request_timeout_ms=5000)
    await asyncio.wait_for(admin.start(), 10)
    try:
        listed = await asyncio.wait_for(admin.list_consumer_groups(), 10)
        groups = sorted(g[0] for g in listed if str(g[0]).startswith(GROUP_PREFIX))
        # One group per request: aiokafka 0.14 fails to decode a Kafka 4.x answer that
        # describes several groups at once (a buffer underrun).
        described = [
            r
            for g in groups
            for r in await asyncio.wait_for(admin.describe_consumer_groups([g]), 10)
        ]
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(admin.close(), 5)
    out: dict[int, list[str]] = defaultdict(list)
    for response in described:
        for group in response.to_object()["groups"]:
            for member in group["members"]:
                pid = str(member["client_id"]).rpartition("-")[2]
                if not pid.isdigit() or not member["member_assignment"]:
                    continue
                decoded = ConsumerProtocolMemberAssignment.decode(member["member_assignment"])
                parts = [
                    f"{_short(topic, settings)} {_ranges(sorted(partitions))}"
                    for topic, partitions in sorted(decoded.assignment)
                    if partitions
                ]
                out[int(pid)].append(f"{group['group']}: {'; '.join(parts) or 'no partitions'}")
    return out


def _short(topic: str, settings: CommonSettings) -> str:
    return topic.removeprefix(settings.topic_prefix)


def _ranges(numbers: list[int]) -> str:
    """[0, 1, 2, 5] -> "0-2,5"."""
    spans: list[list[int]] = []
    for n in numbers:
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in spans)


async def _ready(http: aiohttp.ClientSession, url: str) -> str:
    try:
        async with http.get(f"{url}/readyz", timeout=aiohttp.ClientTimeout(total=3)) as r:
            return "ready" if r.status == 200 else f"NOT READY ({r.status})"
    except (aiohttp.ClientError, TimeoutError, OSError):
        return "no answer"


async def _kafka_rows(stack: Stack) -> list[Row]:
    kafka = stack.kafka
    controller = kafka.active_controller() if len(kafka.nodes) > 1 else None
    leaders: dict[int, int] = defaultdict(int)
    total = 0
    with contextlib.suppress(Exception):
        found = await _all_leaders(stack) if kafka.is_running() else {}
        for leader in found.values():
            leaders[leader] += 1
            total += 1
    rows = []
    for node, status in zip(kafka.nodes, await kafka.statuses(), strict=True):
        detail = [f"node {node.node_id}"]
        if controller == node.node_id:
            detail.append("active controller")
        if total and status.running:
            detail.append(f"leads {leaders.get(node.node_id, 0)} of {total} partitions")
        rows.append(
            Row(
                node.name,
                str(status.pid or "-"),
                ("ready" if status.ready else "NOT READY") if status.running else "stopped",
                node.bootstrap,
                ", ".join(detail),
            )
        )
    return rows


async def _all_leaders(stack: Stack) -> dict[tuple[str, int], int]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(
        bootstrap_servers=stack.kafka.bootstrap,
        request_timeout_ms=5000,
        **stack.kafka.admin_kwargs(),
    )
    await asyncio.wait_for(admin.start(), 10)
    try:
        names = [t for t in await asyncio.wait_for(admin.list_topics(), 10)]
        described = await asyncio.wait_for(admin.describe_topics(names), 10)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(admin.close(), 5)
    return {
        (t["topic"], p["partition"]): p["leader"]
        for t in described
        if t["error_code"] == 0
        for p in t["partitions"]
    }


async def rows(stack: Stack, env: Mapping[str, str]) -> list[Row]:
    """Every infra process (each Kafka node), then every service process."""
    out = await _kafka_rows(stack)
    for status in await stack.status():
        if status.name in ("postgres", "s3"):
            state = ("ready" if status.ready else "NOT READY") if status.running else "stopped"
            out.append(Row(status.name, str(status.pid or "-"), state, status.address))
    services = stack.services()
    held: dict[int, list[str]] = {}
    if services and stack.kafka.is_running():
        try:
            held = await assignments(settings_of(env))
        except Exception as exc:  # Kafka away: the table without partitions
            out.append(Row("(groups)", "-", "unknown", "", f"{type(exc).__name__}: {exc}"))
    async with aiohttp.ClientSession() as http:
        for proc in sorted(services, key=lambda p: (service_of(p.name), len(p.name), p.name)):
            url = env.get(ops_url_key(proc.name), "")
            state = await _ready(http, url) if url else "running"
            detail = " | ".join(held.get(proc.pid, []))
            out.append(Row(proc.name, str(proc.pid), state, url or "-", detail))
    return out


def render(found: list[Row], header: str) -> str:
    table: list[tuple[Any, ...]] = [("PROCESS", "PID", "STATE", "ADDRESS", "DETAIL")]
    table += [(r.process, r.pid, r.state, r.address, r.detail) for r in found]
    widths = [max(len(str(row[i])) for row in table) for i in range(4)]
    lines = [header]
    for row in table:
        cells = [str(row[i]).ljust(widths[i]) for i in range(4)]
        lines.append("  ".join([*cells, str(row[4])]).rstrip())
    return "\n".join(lines)


def header(stack: Stack) -> str:
    c = stack.config
    kafka = (
        f"kafka: {c.kafka_brokers} brokers (replication {c.kafka_replication_factor}, "
        f"min.insync.replicas {c.kafka_min_insync_replicas})"
        if c.kafka_brokers > 1
        else "kafka: 1 broker"
    )
    auth = ", SCRAM" if c.scram else ""
    return (
        f"stack {c.name} ({c.state_dir}): {kafka}{auth}; postgres {c.ports.postgres} "
        f"(fsync {'on' if c.pg_fsync else 'off'}); s3 {c.ports.s3}"
    )
