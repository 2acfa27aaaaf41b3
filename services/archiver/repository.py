"""The archive bucket, in one place: what the archiver and the admin commands need of it
(:class:`Archive`), the S3 implementation (:class:`S3Archive`, aioboto3) and an in-memory
fake beside it (:class:`FakeArchive`) for unit tests.

Every call is one S3 request or a bounded fan-out of them. An object the store can never
accept raises :class:`ArchiveRejected` (the caller dead-letters it); any other error
(S3 away, a timeout, a 5xx) propagates as it is, for the caller to treat as transient.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from botocore.exceptions import BotoCoreError, ClientError

from services.archiver.metrics import S3_ERRORS
from shared.logs import get_logger

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


class Archive(Protocol):
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

    async def put_json(self, key: str, doc: Any, *, metadata: dict[str, str] | None = None) -> None:
        """Store ``doc`` at ``key`` (overwriting); :class:`ArchiveRejected` if never storable."""
        ...

    async def get_json(self, key: str) -> Any | None:
        """The decoded object, or None when there is no such key."""
        ...

    async def metadata(self, key: str) -> dict[str, str] | None:
        """The object's user metadata (lower-case names), or None when there is no such key."""
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

    async def put_json(self, key: str, doc: Any, *, metadata: dict[str, str] | None = None) -> None:
        try:
            await self._s3.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=orjson.dumps(doc),
                ContentType="application/json",
                Metadata=metadata or {},
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

    async def get_json(self, key: str) -> Any | None:
        resp = await self._if_found(self._s3.get_object(Bucket=self.bucket, Key=key))
        if resp is None:
            return None
        async with resp["Body"] as body:
            data = await body.read()
        return orjson.loads(data)

    async def metadata(self, key: str) -> dict[str, str] | None:
        resp = await self._if_found(self._s3.head_object(Bucket=self.bucket, Key=key))
        if resp is None:
            return None
        return {k.lower(): v for k, v in (resp.get("Metadata") or {}).items()}

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


@dataclass
class FakeArchive:
    """:class:`Archive` in memory, for unit tests. ``down = True`` makes every call fail
    like an unreachable store; ``rejected`` maps keys to the code their put is refused
    with for good."""

    bucket: str = "fake"
    objects: dict[str, tuple[bytes, dict[str, str]]] = field(default_factory=dict)
    down: bool = False
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

    async def put_json(self, key: str, doc: Any, *, metadata: dict[str, str] | None = None) -> None:
        self._check()
        if key in self.rejected:
            raise ArchiveRejected(self.rejected[key])
        self.objects[key] = (orjson.dumps(doc), {k.lower(): v for k, v in (metadata or {}).items()})

    async def get_json(self, key: str) -> Any | None:
        self._check()
        found = self.objects.get(key)
        return orjson.loads(found[0]) if found is not None else None

    async def metadata(self, key: str) -> dict[str, str] | None:
        self._check()
        found = self.objects.get(key)
        return dict(found[1]) if found is not None else None

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
