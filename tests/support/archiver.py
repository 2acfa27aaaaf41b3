"""Test helpers for the archiver: settings, the service in-process, readers for the
bucket, webhooks in SQL, and an in-memory S3 double. (Outcome events, with canary
secrets, come from :mod:`tests.support.events`.)"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from botocore.exceptions import ClientError, EndpointConnectionError

from services.archiver import records
from services.archiver.settings import ArchiverSettings
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
    """The test's settings as archiver settings, with a group and a port of its own."""
    values = settings.model_dump()
    values["s3_secret_key"] = settings.s3_secret_key.get_secret_value()
    values["archiver_group"] = f"{settings.topic_prefix}archiver"
    values["archiver_port"] = free_port()
    values.update(overrides)
    return ArchiverSettings(**values)


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


async def wait_records(settings: CommonSettings, count: int, deadline_s: float = 30) -> list[str]:
    """The bucket's record keys once there are ``count`` (AssertionError if more)."""
    keys = await eventually(
        lambda: record_keys(settings),
        until=lambda k: len(k) >= count,
        deadline_s=deadline_s,
        what=f"{count} records",
    )
    assert len(keys) == count, f"{len(keys)} records, expected {count}"
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
