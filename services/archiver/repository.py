"""The archive bucket, in one place: what the archiver and the admin commands need of it
(:class:`Archive`), the S3 implementation (:class:`S3Archive`, aioboto3) and an in-memory
fake beside it (:class:`FakeArchive`) for unit tests; and a client-less reader
(:class:`S3Reader`, one signed GET per read) for ``archive show``, where creating an S3
client would cost more than the read itself.

Every call is one S3 request or a bounded fan-out of them. An object the store can never
accept raises :class:`ArchiveRejected`; any other error (S3 away, a timeout, a 5xx)
propagates as it is, for the caller to treat as transient.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp
import orjson
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import BotoCoreError, ClientError

from services.archiver.metrics import S3_ERRORS
from shared.logs import get_logger
from shared.settings import CommonSettings

log = get_logger(__name__)

# Errors the server returns for an operation it does not implement.
_UNSUPPORTED = frozenset({"NotImplemented", "NotImplementedError", "MethodNotAllowed", "501"})
# Errors a retry can never fix (the object itself is unacceptable).
_PERMANENT = frozenset({"EntityTooLarge", "KeyTooLongError", "MetadataTooLarge", "InvalidArgument"})
_NOT_FOUND = frozenset({"NoSuchKey", "404", "NotFound"})
_DELETE_CHUNK = 1000


class ArchiveRejected(Exception):
    """The store refuses this object for good (too large, bad key): retrying cannot help."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class ObjectReader(Protocol):
    """Reading objects: all :func:`services.archiver.search.read_record` needs."""

    async def get_bytes(
        self, key: str, *, start: int | None = None, length: int | None = None
    ) -> bytes | None:
        """The object (or ``length`` bytes of it from ``start``), or None when there is no
        such key."""
        ...

    async def get_json(self, key: str) -> Any | None:
        """The decoded object, or None when there is no such key."""
        ...


class Archive(ObjectReader, Protocol):
    """One bucket of archived log records."""

    bucket: str

    async def ping(self, within_s: float = 2.0) -> bool:
        """True when the bucket answers within ``within_s``."""
        ...

    async def ensure_bucket(self) -> None:
        """Create the bucket if it is missing."""
        ...

    async def apply_lifecycle(self, days: int) -> bool:
        """Expire objects after ``days``; False when the store has no lifecycle rules."""
        ...

    async def put_bytes(self, key: str, data: bytes, *, content_type: str) -> None:
        """Store ``data`` at ``key`` (overwriting); :class:`ArchiveRejected` if never storable."""
        ...

    def keys(self, prefix: str) -> AsyncIterator[str]:
        """Every key under ``prefix``, in key order."""
        ...

    async def children(self, prefix: str) -> list[str]:
        """The next level of "folders" under ``prefix`` (each ending with ``/``)."""
        ...

    async def delete(self, keys: list[str]) -> int:
        """Delete ``keys``; returns how many were deleted."""
        ...


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3Archive:
    """:class:`Archive` on one bucket, through an open aioboto3 S3 client."""

    def __init__(self, client: Any, bucket: str) -> None:
        self._s3 = client
        self.bucket = bucket

    # --- bucket --------------------------------------------------------------------

    async def ping(self, within_s: float = 2.0) -> bool:
        try:
            await asyncio.wait_for(self._s3.head_bucket(Bucket=self.bucket), within_s)
            return True
        except (TimeoutError, ClientError, BotoCoreError, OSError):
            return False

    async def ensure_bucket(self) -> None:
        try:
            await self._s3.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            if error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
                raise
        try:
            await self._s3.create_bucket(Bucket=self.bucket)
            log.info("archive_bucket_created", bucket=self.bucket)
        except ClientError as exc:
            if error_code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise

    async def apply_lifecycle(self, days: int) -> bool:
        try:
            await self._s3.put_bucket_lifecycle_configuration(
                Bucket=self.bucket,
                LifecycleConfiguration={
                    "Rules": [
                        {
                            "ID": "leadwire-archive-retention",
                            "Status": "Enabled",
                            "Filter": {"Prefix": ""},
                            "Expiration": {"Days": days},
                        }
                    ]
                },
            )
        except ClientError as exc:
            if (
                error_code(exc) in _UNSUPPORTED
                or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 501
            ):
                return False
            raise
        return True

    # --- objects -------------------------------------------------------------------

    async def put_bytes(self, key: str, data: bytes, *, content_type: str) -> None:
        try:
            await self._s3.put_object(
                Bucket=self.bucket, Key=key, Body=data, ContentType=content_type
            )
        except ClientError as exc:
            code = error_code(exc)
            S3_ERRORS.labels(code or "unknown").inc()
            if code in _PERMANENT:
                raise ArchiveRejected(code) from exc
            raise
        except Exception as exc:
            S3_ERRORS.labels(type(exc).__name__).inc()
            raise

    async def _if_found(self, request: Awaitable[dict[str, Any]]) -> dict[str, Any] | None:
        """The answer to an object request, or None when there is no such key."""
        try:
            return await request
        except ClientError as exc:
            if error_code(exc) in _NOT_FOUND:
                return None
            raise

    async def get_bytes(
        self, key: str, *, start: int | None = None, length: int | None = None
    ) -> bytes | None:
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if start is not None:
            end = "" if length is None else str(start + length - 1)
            args["Range"] = f"bytes={start}-{end}"
        resp = await self._if_found(self._s3.get_object(**args))
        if resp is None:
            return None
        async with resp["Body"] as body:
            data: bytes = await body.read()
        return data

    async def get_json(self, key: str) -> Any | None:
        data = await self.get_bytes(key)
        return orjson.loads(data) if data is not None else None

    # --- listing and deleting ------------------------------------------------------

    async def _pages(self, **kwargs: Any) -> AsyncIterator[dict[str, Any]]:
        token: str | None = None
        while True:
            args = dict(kwargs, Bucket=self.bucket)
            if token:
                args["ContinuationToken"] = token
            page = await self._s3.list_objects_v2(**args)
            yield page
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")
            if not token:
                return

    async def keys(self, prefix: str) -> AsyncIterator[str]:
        async for page in self._pages(Prefix=prefix):
            for obj in page.get("Contents", []) or []:
                yield obj["Key"]

    async def children(self, prefix: str) -> list[str]:
        out: list[str] = []
        async for page in self._pages(Prefix=prefix, Delimiter="/"):
            out.extend(p["Prefix"] for p in page.get("CommonPrefixes", []) or [])
        return out

    async def delete(self, keys: list[str]) -> int:
        """Delete keys (1000 per request); returns how many the server confirmed."""
        deleted = 0
        for start in range(0, len(keys), _DELETE_CHUNK):
            chunk = keys[start : start + _DELETE_CHUNK]
            resp = await self._s3.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": False},
            )
            errors = resp.get("Errors") or []
            if errors:
                first = errors[0]
                raise RuntimeError(
                    f"S3 refused to delete {len(errors)} object(s), e.g. {first.get('Key')}: "
                    f"{first.get('Code')} {first.get('Message')}"
                )
            deleted += len(chunk)
        return deleted


class ReadRefused(Exception):
    """S3 answered a read with an error (not a missing key)."""

    def __init__(self, status: int, code: str) -> None:
        super().__init__(f"{status} {code}")
        self.status = status
        self.code = code


_ERROR_CODE = re.compile(rb"<Code>([^<]+)</Code>")


class S3Reader:
    """:class:`ObjectReader` with one SigV4-signed HTTP GET per read (botocore's signer,
    aiohttp), path-style like :mod:`shared.s3`. No S3 client: making one loads the S3
    service model, ~100-200 ms, several times a ranged read of a segment member."""

    def __init__(self, http: aiohttp.ClientSession, settings: CommonSettings) -> None:
        self._http = http
        self._base = f"{settings.s3_endpoint.rstrip('/')}/{quote(settings.s3_bucket)}/"
        self._auth = S3SigV4Auth(
            Credentials(settings.s3_access_key, settings.s3_secret_key.get_secret_value()),
            "s3",
            settings.s3_region,
        )

    async def get_bytes(
        self, key: str, *, start: int | None = None, length: int | None = None
    ) -> bytes | None:
        headers: dict[str, str] = {}
        if start is not None:
            headers["Range"] = f"bytes={start}-{'' if length is None else start + length - 1}"
        request = AWSRequest(
            method="GET", url=self._base + quote(key, safe="/-_.~"), headers=headers
        )
        self._auth.add_auth(request)
        async with self._http.get(request.url, headers=dict(request.headers.items())) as resp:
            body = await resp.read()
            if resp.status in (200, 206):
                return body
            found = _ERROR_CODE.search(body)
            code = found.group(1).decode() if found else str(resp.status)
            if resp.status == 404 and code in _NOT_FOUND | {"404"}:
                return None
            raise ReadRefused(resp.status, code)

    async def get_json(self, key: str) -> Any | None:
        data = await self.get_bytes(key)
        return orjson.loads(data) if data is not None else None


@dataclass
class FakeArchive:
    """:class:`Archive` in memory, for unit tests. ``down = True`` makes every call fail
    like an unreachable store; ``rejected`` maps keys to the code their put is refused
    with for good; ``puts`` counts stored objects."""

    bucket: str = "fake"
    objects: dict[str, bytes] = field(default_factory=dict)
    down: bool = False
    puts: int = 0
    lifecycle: bool = False
    rejected: dict[str, str] = field(default_factory=dict)

    def _check(self) -> None:
        if self.down:
            raise ConnectionError("archive unreachable")

    async def ping(self, within_s: float = 2.0) -> bool:
        return not self.down

    async def ensure_bucket(self) -> None:
        self._check()

    async def apply_lifecycle(self, days: int) -> bool:
        self._check()
        return self.lifecycle

    async def put_bytes(self, key: str, data: bytes, *, content_type: str) -> None:
        self._check()
        if key in self.rejected:
            raise ArchiveRejected(self.rejected[key])
        self.objects[key] = bytes(data)
        self.puts += 1

    async def get_bytes(
        self, key: str, *, start: int | None = None, length: int | None = None
    ) -> bytes | None:
        self._check()
        found = self.objects.get(key)
        if found is None or start is None:
            return found
        return found[start : None if length is None else start + length]

    async def get_json(self, key: str) -> Any | None:
        data = await self.get_bytes(key)
        return orjson.loads(data) if data is not None else None

    async def keys(self, prefix: str) -> AsyncIterator[str]:
        self._check()
        for key in sorted(k for k in self.objects if k.startswith(prefix)):
            yield key

    async def children(self, prefix: str) -> list[str]:
        self._check()
        below = {
            prefix + k[len(prefix) :].split("/", 1)[0] + "/"
            for k in self.objects
            if k.startswith(prefix) and "/" in k[len(prefix) :]
        }
        return sorted(below)

    async def delete(self, keys: list[str]) -> int:
        self._check()
        for key in keys:
            self.objects.pop(key, None)
        return len(keys)  # as S3 does: deleting a missing key succeeds
