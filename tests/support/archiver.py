"""Test helpers for the archiver: settings, the service in-process, readers for the
bucket and the index (and a check that they agree), first-layout objects as the archiver
used to write them, webhooks in SQL, and an in-memory S3 double. (Outcome events, with
canary secrets, come from :mod:`tests.support.events`.)"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
from botocore.exceptions import ClientError, EndpointConnectionError

from services.archiver import records, segments
from services.archiver.handlers import Hooks
from services.archiver.repository import Archive
from services.archiver.settings import ArchiverSettings
from shared.events import Outcome
from shared.s3 import s3_client
from shared.settings import CommonSettings
from tests.support.net import free_port
from tests.support.polling import eventually

# The fields every archived record has (the archive's format, written out by hand).
RECORD_FIELDS = {
    "log_id",
    "webhook_id",
    "workspace_id",
    "timestamp",
    "request",
    "processing",
    "result",
    "error",
}

# A vendor body {phone_number, mail, fname}: a mapping that misses it, and the fix.
WRONG_MAPPING = [
    {"source": "phone", "target": "phone", "transform": "e164"},
    {"source": "email", "target": "email", "transform": "lowercase"},
]
FIXED_MAPPING = [
    {"source": "phone_number", "target": "phone", "transform": "e164"},
    {"source": "mail", "target": "email", "transform": "lowercase"},
    {"source": "fname", "target": "first_name"},
]


def archiver_settings(settings: CommonSettings, **overrides: Any) -> ArchiverSettings:
    """The test's settings as archiver settings, with a group and an ops port of its own."""
    values = settings.model_dump()
    values["s3_secret_key"] = settings.s3_secret_key.get_secret_value()
    values["archiver_group"] = f"{settings.topic_prefix}archiver"
    values["archiver_ops_port"] = free_port()
    values.update(overrides)
    return ArchiverSettings(**values)


# --- the bucket and the index ------------------------------------------------------------


async def bucket_objects(settings: CommonSettings, prefix: str = "") -> dict[str, bytes]:
    """Every object in the test's bucket (under ``prefix``): key -> body."""
    out: dict[str, bytes] = {}
    async with s3_client(settings) as s3:
        paginator = s3.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=settings.s3_bucket, Prefix=prefix):
            for obj in page.get("Contents", []) or []:
                resp = await s3.get_object(Bucket=settings.s3_bucket, Key=obj["Key"])
                async with resp["Body"] as body:
                    out[obj["Key"]] = await body.read()
    return out


async def segment_objects(settings: CommonSettings) -> dict[str, bytes]:
    """Every segment object: key -> the gzip bytes as stored."""
    objects = await bucket_objects(settings, segments.PREFIX)
    return {k: v for k, v in objects.items() if segments.parse_segment_key(k)}


def segment_records(objects: dict[str, bytes]) -> list[tuple[str, int, dict[str, Any]]]:
    """(segment key, 1-based line, record) of every line of every segment."""
    return [
        (key, n, orjson.loads(line))
        for key, data in sorted(objects.items())
        for n, line in enumerate(segments.decode(data), start=1)
    ]


async def archived_records(settings: CommonSettings) -> list[dict[str, Any]]:
    """Every record in the bucket's segments (a request twice is there twice)."""
    return [r for _, _, r in segment_records(await segment_objects(settings))]


async def index_rows(settings: CommonSettings) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(settings.database_url)
    try:
        return [dict(r) for r in await conn.fetch("SELECT * FROM archive_index")]
    finally:
        await conn.close()


async def index_count(settings: CommonSettings) -> int:
    conn = await asyncpg.connect(settings.database_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM archive_index"))
    finally:
        await conn.close()


async def wait_archived(settings: CommonSettings, count: int, deadline_s: float = 30) -> None:
    """Until the index holds ``count`` rows (AssertionError if more)."""
    n = await eventually(
        lambda: index_count(settings),
        until=lambda n: n >= count,
        deadline_s=deadline_s,
        what=f"{count} archived requests",
    )
    assert n == count, f"{n} archived requests, expected {count}"


@dataclass
class Agreement:
    """The bucket's segments against the index."""

    lines: int
    rows: int
    duplicates: list[str]  # request ids on more than one line
    unindexed: list[str]  # lines whose request has no row, or a row pointing elsewhere
    dangling: list[str]  # rows whose segment, line or member does not hold their request

    def assert_ok(self) -> None:
        assert not self.duplicates, f"requests archived twice: {self.duplicates[:5]}"
        assert not self.unindexed, f"segment lines without their index row: {self.unindexed[:5]}"
        assert not self.dangling, f"index rows not matching the bucket: {self.dangling[:5]}"
        assert self.lines == self.rows


async def agreement(settings: CommonSettings) -> Agreement:
    """Every index row's line (and gzip member) holds its request, every segment line has
    its index row, and no request is on two lines."""
    objects = await segment_objects(settings)
    lines = segment_records(objects)
    rows = {str(r["request_id"]): r for r in await index_rows(settings)}
    at: dict[str, list[tuple[str, int]]] = {}
    for key, n, record in lines:
        at.setdefault(str(record["request_id"]), []).append((key, n))
    dangling: list[str] = []
    for rid, row in rows.items():
        data = objects.get(row["segment_key"], b"")
        member = data[row["member_offset"] : row["member_offset"] + row["member_length"]]
        try:
            in_member = segments.decode(member)[row["line"] - row["member_first_line"]]
            ok = orjson.loads(in_member)["request_id"] == rid
        except Exception:
            ok = False
        if not ok or (row["segment_key"], row["line"]) not in at.get(rid, []):
            dangling.append(rid)
    return Agreement(
        lines=len(lines),
        rows=len(rows),
        duplicates=[rid for rid, places in at.items() if len(places) > 1],
        unindexed=[
            rid
            for rid, places in at.items()
            if rid not in rows or (rows[rid]["segment_key"], rows[rid]["line"]) not in places
        ],
        dangling=dangling,
    )


@contextlib.asynccontextmanager
async def running_archiver(
    settings: ArchiverSettings, *, hooks: Hooks | None = None
) -> AsyncIterator[asyncio.Task[None]]:
    """The archiver in-process (``run_archiver``); stopped (drained) on exit."""
    from services.archiver.service import run_archiver

    stop = asyncio.Event()
    task = asyncio.create_task(run_archiver(settings, stop, hooks=hooks or Hooks()))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


# --- the first layout -------------------------------------------------------------------


async def write_legacy(archive: Archive, outcome: Outcome) -> str:
    """Store ``outcome`` as the archiver did before segments: one object per request and
    a ``by-request/`` pointer naming it. Returns the record's key."""
    key = records.record_key(
        outcome.workspace_id, outcome.webhook_id, outcome.received_at, outcome.request_id
    )
    await archive.put_bytes(
        key, orjson.dumps(records.build_record(outcome)), content_type="application/json"
    )
    pointer = {"request_id": str(outcome.request_id), "key": key, "status": outcome.status}
    await archive.put_bytes(
        records.pointer_key(outcome.request_id),
        orjson.dumps(pointer),
        content_type="application/json",
    )
    return key


# --- Postgres --------------------------------------------------------------------------


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

    async def get_object(self, *, Key: str, Range: str | None = None, **_: Any) -> dict[str, Any]:
        self._check()
        if Key not in self.objects:
            raise _not_found("GetObject")
        body = self.objects[Key].body
        if Range is not None:
            first, _sep, last = Range.removeprefix("bytes=").partition("-")
            body = body[int(first) : int(last) + 1 if last else None]
        return {"Body": _Body(body)}

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
