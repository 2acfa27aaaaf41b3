"""Test helpers for the archiver: synthetic outcome events (with canary secrets), an
in-memory S3 double, and readers for the bucket and the raw topic."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer
from botocore.exceptions import ClientError, EndpointConnectionError

from services.archiver import records
from services.archiver.settings import ArchiverSettings
from shared import topics
from shared.events import (
    ContactSummary,
    ErrorInfo,
    FieldError,
    LeadFailed,
    LeadProcessed,
    LeadReceived,
    LeadRejected,
    MappedLead,
    Processing,
    RawRequest,
    decode_raw,
    outcome_event_id,
)
from shared.kafka import Message, Publisher
from shared.s3 import s3_client
from shared.settings import CommonSettings

# Secret-bearing headers a careless producer might leave on an event. The archiver must
# drop every one of them; the values are canaries searched for in every stored object.
CANARY_HEADERS = {
    "Authorization": "Bearer canary-authz-7f3a91",
    "webhook-signature": "v1,canary-sig-c0ffee",
    "X-Hub-Signature-256": "sha256=canary-hub-5ea1ed",
    "X-API-Key": "canary-apikey-b16b00",
    "X-Custom-Token": "canary-token-d00d",
    "Cookie": "session=canary-cookie-ab12",
    "X-Vendor-Secret": "canary-secret-feed",
}
CANARY_VALUES = tuple(
    part for value in CANARY_HEADERS.values() for part in [value.split("canary-", 1)[1]]
)
SAFE_HEADERS = {"Content-Type": "application/json", "User-Agent": "vendor-sender/1.0"}


def archiver_settings(settings: CommonSettings, **overrides: Any) -> ArchiverSettings:
    """The test's settings as archiver settings, with a group and a port of its own."""
    values = settings.model_dump()
    values["s3_secret_key"] = settings.s3_secret_key.get_secret_value()
    values["archiver_group"] = f"{settings.topic_prefix}archiver"
    values["archiver_port"] = free_port()
    values.update(overrides)
    return ArchiverSettings(**values)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_port() -> int:
    """A free port below the ephemeral range, for a server the test stops and restarts
    (no client connection can take it meanwhile, and infra need not reserve it)."""
    import random

    from infra.processes import ephemeral_range, port_bindable

    low, _ = ephemeral_range()
    for _ in range(200):
        port = random.randrange(20000, min(low, 32768) - 1)
        if port_bindable(port):
            return port
    raise RuntimeError("no free port below the ephemeral range")


# --- synthetic outcomes ---------------------------------------------------------------


def _request(payload: dict[str, Any], *, canaries: bool) -> RawRequest:
    headers = dict(SAFE_HEADERS)
    if canaries:
        headers.update(CANARY_HEADERS)
    return RawRequest(
        method="POST",
        path="/webhooks/x",
        headers=headers,
        content_type="application/json",
        payload=payload,
    )


def _common(
    *,
    workspace_id: uuid.UUID,
    webhook_id: uuid.UUID,
    received_at: datetime | None,
    payload: dict[str, Any] | None,
    canaries: bool,
    request_id: uuid.UUID | None = None,
    replay_of: uuid.UUID | None = None,
) -> dict[str, Any]:
    rid = request_id or uuid.uuid4()
    received = received_at or datetime.now(UTC)
    payload = (
        payload
        if payload is not None
        else {"phone": "+14155550100", "email": f"{rid.hex[:8]}@example.com"}
    )
    return {
        "event_id": outcome_event_id(rid),
        "request_id": rid,
        "workspace_id": workspace_id,
        "webhook_id": webhook_id,
        "occurred_at": received + timedelta(milliseconds=40),
        "received_at": received,
        "request": _request(payload, canaries=canaries),
        "processing": Processing(
            start=received,
            end=received + timedelta(milliseconds=40),
            duration_ms=40.0,
            steps={"authentication": 1.0, "field_mapping": 2.0, "contact_processing": 30.0},
        ),
        "replay_of": replay_of,
    }


def processed(
    workspace_id: uuid.UUID,
    webhook_id: uuid.UUID,
    *,
    received_at: datetime | None = None,
    payload: dict[str, Any] | None = None,
    lead: MappedLead | None = None,
    canaries: bool = True,
    request_id: uuid.UUID | None = None,
) -> LeadProcessed:
    common = _common(
        workspace_id=workspace_id,
        webhook_id=webhook_id,
        received_at=received_at,
        payload=payload,
        canaries=canaries,
        request_id=request_id,
    )
    contact_id = uuid.uuid4()
    return LeadProcessed(
        **common,
        lead=lead or MappedLead(phone="+14155550100"),
        lead_id=uuid.uuid4(),
        contact=ContactSummary(
            id=contact_id, phone="+14155550100", board_id=uuid.uuid4(), board_name="Sales"
        ),
        action="created",
        match_type="new",
        is_new_contact=True,
        rule_applied=True,
    )


def failed(
    workspace_id: uuid.UUID,
    webhook_id: uuid.UUID,
    *,
    received_at: datetime | None = None,
    payload: dict[str, Any] | None = None,
    canaries: bool = True,
    request_id: uuid.UUID | None = None,
) -> LeadFailed:
    common = _common(
        workspace_id=workspace_id,
        webhook_id=webhook_id,
        received_at=received_at,
        payload=payload,
        canaries=canaries,
        request_id=request_id,
    )
    return LeadFailed(**common, error=ErrorInfo(type="poison", message="could not be processed"))


def rejected(
    workspace_id: uuid.UUID,
    webhook_id: uuid.UUID,
    *,
    received_at: datetime | None = None,
    payload: dict[str, Any] | None = None,
    canaries: bool = True,
    request_id: uuid.UUID | None = None,
) -> LeadRejected:
    common = _common(
        workspace_id=workspace_id,
        webhook_id=webhook_id,
        received_at=received_at,
        payload=payload,
        canaries=canaries,
        request_id=request_id,
    )
    return LeadRejected(
        **common,
        status_code=422,
        reason="validation_failed",
        errors=[FieldError(field="phone", code="required", message="phone or email is required")],
    )


def mixed_outcomes(
    n: int, workspace_id: uuid.UUID, webhook_id: uuid.UUID, *, received_at: datetime | None = None
) -> list[LeadProcessed | LeadFailed | LeadRejected]:
    """``n`` outcomes cycling processed, failed, rejected."""
    makers = (processed, failed, rejected)
    return [makers[i % 3](workspace_id, webhook_id, received_at=received_at) for i in range(n)]


async def publish_outcomes(
    settings: CommonSettings, events: Iterable[Any], *, chunk: int = 200
) -> None:
    items = [(str(e.workspace_id), e) for e in events]
    async with Publisher(settings, client_id="test-outcomes") as pub:
        for start in range(0, len(items), chunk):
            await pub.publish_many(topics.OUTCOMES, items[start : start + chunk])


def as_messages(events: list[Any], start: int = 0, topic: str = "outcomes") -> list[Message[Any]]:
    """Events as consumed messages (partition 0, consecutive offsets from ``start``)."""
    return [
        Message(
            topic=topic, partition=0, offset=start + i, key=None, value=e, raw=b"", timestamp_ms=0
        )
        for i, e in enumerate(events)
    ]


# --- the bucket -----------------------------------------------------------------------


async def bucket_objects(settings: CommonSettings) -> dict[str, bytes]:
    """Every object in the test's bucket: key -> body."""
    out: dict[str, bytes] = {}
    async with s3_client(settings) as s3:
        paginator = s3.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=settings.s3_bucket):
            for obj in page.get("Contents", []) or []:
                resp = await s3.get_object(Bucket=settings.s3_bucket, Key=obj["Key"])
                async with resp["Body"] as body:
                    out[obj["Key"]] = await body.read()
    return out


async def record_keys(settings: CommonSettings) -> list[str]:
    keys: list[str] = []
    async with s3_client(settings) as s3:
        paginator = s3.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=settings.s3_bucket):
            keys.extend(
                o["Key"]
                for o in page.get("Contents", []) or []
                if records.parse_record_key(o["Key"]) is not None
            )
    return keys


@contextlib.asynccontextmanager
async def running_archiver(settings: ArchiverSettings) -> AsyncIterator[asyncio.Task[None]]:
    """The archiver in-process (``run_archiver``); stopped (drained) on exit."""
    from services.archiver.service import run_archiver

    stop = asyncio.Event()
    task = asyncio.create_task(run_archiver(settings, stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


# --- Postgres and the raw topic ---------------------------------------------------------


async def create_webhook(
    conn: asyncpg.Connection,
    *,
    mapping: list[dict[str, Any]],
    name: str = "vendor",
    region: str = "US",
) -> tuple[uuid.UUID, uuid.UUID]:
    """A workspace and a webhook with ``mapping``; returns (workspace_id, webhook_id).

    ``conn`` comes from :func:`shared.db.connect` (jsonb encoded from Python values)."""
    workspace_id, webhook_id = uuid.uuid4(), uuid.uuid4()
    await conn.execute(
        "INSERT INTO workspaces (id, name, default_region) VALUES ($1, $2, $3)",
        workspace_id,
        f"ws-{workspace_id.hex[:8]}",
        region,
    )
    await conn.execute(
        "INSERT INTO webhooks (id, workspace_id, name, mapping) VALUES ($1, $2, $3, $4::jsonb)",
        webhook_id,
        workspace_id,
        name,
        mapping,
    )
    return workspace_id, webhook_id


async def read_raw(
    settings: CommonSettings, *, idle_s: float = 2.0, expect: int | None = None
) -> list[LeadReceived]:
    """Every message on the raw topic (a fresh group from offset 0), until ``expect`` are read
    or nothing new arrived for ``idle_s`` seconds."""
    consumer = AIOKafkaConsumer(
        settings.topic(topics.RAW),
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"test-raw-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    out: list[LeadReceived] = []
    try:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while loop.time() - last < idle_s:
            batch = await consumer.getmany(timeout_ms=200)
            for records_ in batch.values():
                for r in records_:
                    out.append(decode_raw(r.value))
                    last = loop.time()
            if expect is not None and len(out) >= expect:
                # Keep reading briefly so an unexpected extra message is seen too.
                expect = None
                last = loop.time() - idle_s + 0.5
    finally:
        await consumer.stop()
    return out


# --- an in-memory S3 for unit tests -----------------------------------------------------


@dataclass
class _Obj:
    body: bytes
    metadata: dict[str, str]
    last_modified: datetime


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    async def __aenter__(self) -> _Body:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def read(self) -> bytes:
        return self._data


def _not_found(op: str, code: str = "NoSuchKey") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "not found"}}, op)


@dataclass
class FakeS3:
    """The subset of the aioboto3 S3 client the archive uses, in memory.

    ``down = True`` makes every call fail like an unreachable endpoint; ``fail_keys``
    makes puts of those keys fail with the given error code; ``page_size`` forces paging.
    """

    objects: dict[str, _Obj] = field(default_factory=dict)
    down: bool = False
    fail_keys: dict[str, str] = field(default_factory=dict)
    page_size: int = 1000
    lifecycle: bool = False
    puts: int = 0
    put_attempts: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    put_delay_s: float = 0.0

    def _check(self) -> None:
        if self.down:
            raise EndpointConnectionError(endpoint_url="http://fake-s3")

    async def head_bucket(self, **_: Any) -> dict[str, Any]:
        self._check()
        return {}

    async def create_bucket(self, **_: Any) -> dict[str, Any]:
        self._check()
        return {}

    async def put_bucket_lifecycle_configuration(self, **_: Any) -> dict[str, Any]:
        self._check()
        if not self.lifecycle:
            raise ClientError(
                {"Error": {"Code": "NotImplemented", "Message": "no"}},
                "PutBucketLifecycleConfiguration",
            )
        return {}

    async def put_object(
        self, *, Key: str, Body: bytes, Metadata: dict[str, str] | None = None, **_: Any
    ) -> dict[str, Any]:
        self.put_attempts += 1
        if self.down:  # an unreachable endpoint fails slowly (connect timeouts, retries)
            await asyncio.sleep(self.put_delay_s)
        self._check()
        if Key in self.fail_keys:
            raise ClientError(
                {"Error": {"Code": self.fail_keys[Key], "Message": "refused"}}, "PutObject"
            )
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.put_delay_s)
            self._check()
            self.objects[Key] = _Obj(bytes(Body), dict(Metadata or {}), datetime.now(UTC))
            self.puts += 1
        finally:
            self.in_flight -= 1
        return {}

    async def get_object(self, *, Key: str, **_: Any) -> dict[str, Any]:
        self._check()
        if Key not in self.objects:
            raise _not_found("GetObject")
        return {"Body": _Body(self.objects[Key].body)}

    async def head_object(self, *, Key: str, **_: Any) -> dict[str, Any]:
        self._check()
        if Key not in self.objects:
            raise _not_found("HeadObject", "404")
        return {"Metadata": dict(self.objects[Key].metadata)}

    async def list_objects_v2(
        self,
        *,
        Prefix: str = "",
        Delimiter: str | None = None,
        ContinuationToken: str | None = None,
        **_: Any,
    ) -> dict[str, Any]:
        self._check()
        keys = sorted(k for k in self.objects if k.startswith(Prefix))
        entries: list[tuple[str, bool]] = []  # (key or common prefix, is_prefix)
        seen: set[str] = set()
        for k in keys:
            rest = k[len(Prefix) :]
            if Delimiter and Delimiter in rest:
                cp = Prefix + rest.split(Delimiter, 1)[0] + Delimiter
                if cp not in seen:
                    seen.add(cp)
                    entries.append((cp, True))
            else:
                entries.append((k, False))
        start = int(ContinuationToken or 0)
        page = entries[start : start + self.page_size]
        truncated = start + self.page_size < len(entries)
        resp: dict[str, Any] = {
            "Contents": [
                {"Key": k, "LastModified": self.objects[k].last_modified} for k, p in page if not p
            ],
            "CommonPrefixes": [{"Prefix": k} for k, p in page if p],
            "IsTruncated": truncated,
        }
        if truncated:
            resp["NextContinuationToken"] = str(start + self.page_size)
        return resp

    async def delete_objects(self, *, Delete: dict[str, Any], **_: Any) -> dict[str, Any]:
        self._check()
        for obj in Delete["Objects"]:
            self.objects.pop(obj["Key"], None)
        return {"Deleted": Delete["Objects"]}


# --- Kafka positions and the CLI --------------------------------------------------------


async def group_caught_up(
    settings: CommonSettings, group: str, topic: str = topics.OUTCOMES
) -> bool:
    """True when ``group`` has committed the end offset of every partition of ``topic``."""
    from aiokafka import TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    full = settings.topic(topic)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        (described,) = await admin.describe_topics([full])
        tps = [TopicPartition(full, p["partition"]) for p in described.get("partitions", [])]
        ends = await consumer.end_offsets(tps)
        return bool(tps) and all(
            ends[tp] == 0 or (tp in committed and committed[tp].offset >= ends[tp]) for tp in tps
        )
    finally:
        await consumer.stop()
        await admin.close()


async def run_cli(env: dict[str, str], *args: str, timeout_s: float = 60) -> tuple[int, str, str]:
    """``leadwire ARGS`` as a subprocess; (exit code, stdout, stderr)."""
    import sys

    from tests.support.processes import ROOT

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli.main",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
