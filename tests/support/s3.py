from __future__ import annotations

from botocore.exceptions import ClientError

from shared.s3 import s3_client
from shared.settings import CommonSettings


async def create_bucket(settings: CommonSettings) -> None:
    async with s3_client(settings) as s3:
        try:
            await s3.create_bucket(Bucket=settings.s3_bucket)
        except ClientError as exc:
            if exc.response["Error"]["Code"] not in (
                "BucketAlreadyOwnedByYou",
                "BucketAlreadyExists",
            ):
                raise
