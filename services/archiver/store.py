"""The archive bucket: writing records, finding, listing and pruning them (aioboto3).

Used by the archiver service and by the admin commands (`leadwire archive ...`,
`leadwire replay`). Every call is one S3 request or a bounded fan-out of them; S3
errors surface as :class:`botocore.exceptions.ClientError` / connection errors for the
caller to treat as transient.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orjson
from botocore.exceptions import BotoCoreError, ClientError

from services.archiver import records
from shared.logs import get_logger

log = get_logger(__name__)

# Errors the server returns for an operation it does not implement.
_UNSUPPORTED = frozenset({"NotImplemented", "NotImplementedError", "MethodNotAllowed", "501"})


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@dataclass(frozen=True, slots=True)
class ListedRecord:
    key: str
    parts: records.RecordKey
    last_modified: datetime | None


class ArchiveStore:
    """One bucket of archived log records, through an open aioboto3 S3 client."""

    def __init__(self, client: Any, bucket: str) -> None:
        self._s3 = client
        self.bucket = bucket

    # --- bucket --------------------------------------------------------------------

    async def ping(self, within_s: float = 2.0) -> bool:
        """True when the bucket answers a HEAD within ``within_s``."""
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
        """Set an expiration rule on the whole bucket; False if the server has no lifecycle.

        Accepted is not the same as enforced: :meth:`lifecycle_days` reads the rule back,
        and the caller decides whether to prune itself anyway.
        """
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

    # --- records -------------------------------------------------------------------

    async def put_json(self, key: str, doc: Any, *, metadata: dict[str, str] | None = None) -> None:
        await self._s3.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=orjson.dumps(doc),
            ContentType="application/json",
            Metadata=metadata or {},
        )

    async def get_json(self, key: str) -> Any | None:
        """The decoded object, or None when there is no such key."""
        try:
            resp = await self._s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if error_code(exc) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise
        async with resp["Body"] as body:
            data = await body.read()
        return orjson.loads(data)

    async def metadata(self, key: str) -> dict[str, str] | None:
        try:
            resp = await self._s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if error_code(exc) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise
        return {k.lower(): v for k, v in (resp.get("Metadata") or {}).items()}

    async def find(self, request_id: uuid.UUID) -> str | None:
        """The record key of a request, from its pointer object."""
        doc = await self.get_json(records.pointer_key(request_id))
        if not isinstance(doc, dict) or not isinstance(doc.get("key"), str):
            return None
        return str(doc["key"])

    # --- listing -------------------------------------------------------------------

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

    async def keys(self, prefix: str) -> AsyncIterator[tuple[str, datetime | None]]:
        async for page in self._pages(Prefix=prefix):
            for obj in page.get("Contents", []) or []:
                yield obj["Key"], obj.get("LastModified")

    async def children(self, prefix: str) -> list[str]:
        """The next level of "folders" under ``prefix`` (each ending with ``/``)."""
        out: list[str] = []
        async for page in self._pages(Prefix=prefix, Delimiter="/"):
            out.extend(p["Prefix"] for p in page.get("CommonPrefixes", []) or [])
        return out

    async def records_for_days(
        self, workspace_id: uuid.UUID, webhook_id: uuid.UUID, days: Iterable[date]
    ) -> AsyncIterator[ListedRecord]:
        """Every record of a webhook received on the given UTC days (key order)."""
        for day in days:
            async for key, modified in self.keys(records.day_prefix(workspace_id, webhook_id, day)):
                parts = records.parse_record_key(key)
                if parts is not None:
                    yield ListedRecord(key=key, parts=parts, last_modified=modified)

    async def count_records(self, prefix: str = "") -> int:
        """How many record objects (pointers excluded) are under ``prefix``."""
        n = 0
        async for key, _ in self.keys(prefix):
            if records.parse_record_key(key) is not None:
                n += 1
        return n

    # --- deleting ------------------------------------------------------------------

    async def delete(self, keys: list[str]) -> int:
        """Delete keys (1000 per request); returns how many the server confirmed."""
        deleted = 0
        for start in range(0, len(keys), 1000):
            chunk = keys[start : start + 1000]
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
