"""Management API settings (env prefix ``LEADWIRE_``), read once in ``__main__``. Its port
is ``LEADWIRE_API_PORT`` (8085), with the other services' ports in CommonSettings."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from shared.settings import CommonSettings


class ApiSettings(CommonSettings):
    # Archive search, show and replay read the bucket: its S3 keys are checked in production.
    uses_s3: ClassVar[bool] = True

    # A key's last use is written at most this often (per key and process).
    api_key_touch_interval_s: float = Field(default=60.0, ge=0)
    # The largest request body read; a mapping or a sample body fits well within it.
    api_max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=16 * 1024 * 1024)
    # A replay through the API handles at most this many archived requests at once (the
    # CLI has no bound); a wider window is refused with a hint to narrow it.
    api_replay_max_requests: int = Field(default=10_000, ge=1, le=100_000)
    # Analytics' sketch accuracy (the same variable analytics reads): the figures' read-outs
    # take percentiles from its sketches.
    analytics_sketch_accuracy: float = Field(default=0.01, gt=0, lt=0.5)
