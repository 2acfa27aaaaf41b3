"""The S3 client configuration every S3 user shares (archiver, CLI, tests).

botocore >= 1.36 sends checksum headers that some S3-compatible servers reject, so
checksums are computed only when the operation requires them; addressing is path-style.
"""

from __future__ import annotations

from typing import Any

import aioboto3
from botocore.config import Config

from shared.settings import CommonSettings

CLIENT_CONFIG = Config(
    s3={"addressing_style": "path"},
    request_checksum_calculation="when_required",
    response_checksum_validation="when_required",
    retries={"max_attempts": 2, "mode": "standard"},
    connect_timeout=5,
    read_timeout=30,
)


def s3_client(settings: CommonSettings, session: aioboto3.Session | None = None) -> Any:
    """An async context manager yielding an S3 client for the configured endpoint."""
    session = session or aioboto3.Session()
    return session.client(
        "s3",
        endpoint_url=settings.s3_endpoint,
        aws_access_key_id=settings.s3_access_key,
        aws_secret_access_key=settings.s3_secret_key.get_secret_value(),
        region_name=settings.s3_region,
        config=CLIENT_CONFIG,
    )
