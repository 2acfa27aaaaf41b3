"""S3 put/get/list through aioboto3 against the real S3-compatible server."""

from __future__ import annotations

import pytest

from shared.s3 import s3_client
from shared.settings import CommonSettings

pytestmark = pytest.mark.integration


async def test_put_get_list_round_trip(settings: CommonSettings) -> None:
    async with s3_client(settings) as s3:
        for i in range(3):
            await s3.put_object(
                Bucket=settings.s3_bucket,
                Key=f"ws/wh/2026/11/29/r{i}.json",
                Body=b'{"ok": true}',
                ContentType="application/json",
            )
        obj = await s3.get_object(Bucket=settings.s3_bucket, Key="ws/wh/2026/11/29/r1.json")
        assert await obj["Body"].read() == b'{"ok": true}'
        listed = await s3.list_objects_v2(Bucket=settings.s3_bucket, Prefix="ws/wh/2026/11/")
        assert sorted(o["Key"] for o in listed["Contents"]) == [
            f"ws/wh/2026/11/29/r{i}.json" for i in range(3)
        ]
        # overwriting a key keeps one object (what makes archive writes idempotent)
        await s3.put_object(Bucket=settings.s3_bucket, Key="ws/wh/2026/11/29/r1.json", Body=b"{}")
        listed = await s3.list_objects_v2(Bucket=settings.s3_bucket, Prefix="ws/")
        assert listed["KeyCount"] == 3
