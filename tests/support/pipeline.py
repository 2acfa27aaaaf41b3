"""The whole pipeline in this event loop, on a test's settings: gateway, processor,
analytics, notifier and archiver, each with a consumer group and an ops listener of its own
(so parallel tests never share a group), and how to tell it has settled: every group's lag
read from Kafka itself, every service's ``/readyz``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from services.notifier.service import CONSUMED_TOPICS as NOTIFIER_TOPICS
from services.processor.service import run_processor
from shared import topics
from shared.kafka import ensure_topics
from shared.settings import CommonSettings
from tests.support.analytics import RunningAnalytics, analytics_settings, running_analytics
from tests.support.archiver import archiver_settings, running_archiver
from tests.support.ingest import Gateway, running_gateway
from tests.support.net import free_port
from tests.support.notifier import notifier_settings, running_notifier
from tests.support.processor import processor_settings
from tests.support.topics import group_lag


@dataclass
class Pipeline:
    settings: CommonSettings
    gateway: Gateway
    analytics: RunningAnalytics
    # consumer group -> the logical topics it reads
    groups: dict[str, tuple[str, ...]]
    # service -> its /readyz (on its ops listener)
    ready_urls: dict[str, str]
    # service -> the base URL of its public listener (the processor and archiver have none)
    public_urls: dict[str, str] = field(default_factory=dict)

    async def lags(self) -> dict[str, int | None]:
        """``group/topic`` -> messages not committed (from Kafka: end minus committed)."""
        return {
            f"{group}/{logical}": await group_lag(self.settings, group, logical)
            for group, logicals in self.groups.items()
            for logical in logicals
        }

    async def readiness(self) -> dict[str, int]:
        """service -> the status of its /readyz (0: no answer)."""
        out: dict[str, int] = {}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            for service, url in self.ready_urls.items():
                try:
                    async with http.get(url) as resp:
                        out[service] = resp.status
                except (aiohttp.ClientError, TimeoutError):
                    out[service] = 0
        return out

    async def settled(self) -> bool:
        """Every group caught up and every service ready."""
        lags = await self.lags()
        ready = await self.readiness()
        return all(v == 0 for v in lags.values()) and all(v == 200 for v in ready.values())


@contextlib.asynccontextmanager
async def _processor(settings: CommonSettings, port: int, **overrides: Any) -> AsyncIterator[None]:
    """The processor with its ops listener (the processors() helper runs it without)."""
    cfg = processor_settings(
        settings,
        processor_group=f"{settings.topic_prefix}processor",
        processor_ops_port=port,
        **overrides,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(run_processor(cfg, stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


@contextlib.asynccontextmanager
async def running_pipeline(
    settings: CommonSettings,
    *,
    per_service: Mapping[str, Mapping[str, Any]] | None = None,
    **gateway_overrides: Any,
) -> AsyncIterator[Pipeline]:
    """All five services until the block ends (then each stopped cleanly).
    ``per_service``: settings of one service's own (e.g. its Kafka user), by name."""
    own = dict(per_service or {})
    await ensure_topics(settings, topics.ALL, partitions=4)
    prefix = settings.topic_prefix
    processor_port = free_port()
    counting = analytics_settings(
        settings,
        analytics_group=f"{prefix}analytics",
        analytics_deadletter_group=f"{prefix}analytics-deadletters",
        **own.get("analytics", {}),
    )
    archiving = archiver_settings(settings, **own.get("archiver", {}))
    notifying = notifier_settings(
        settings, notify_group_id=f"{prefix}notifier", **own.get("notifier", {})
    )
    async with (
        running_gateway(settings, **{**own.get("ingest", {}), **gateway_overrides}) as gateway,
        _processor(settings, processor_port, **own.get("processor", {})),
        running_analytics(counting) as analytics,
        running_notifier(notifying),
        running_archiver(archiving),
    ):
        yield Pipeline(
            settings=settings,
            gateway=gateway,
            analytics=analytics,
            groups={
                f"{prefix}processor": (topics.RAW,),
                counting.analytics_group: (topics.OUTCOMES,),
                counting.analytics_deadletter_group: (topics.DEADLETTER,),
                notifying.notify_group_id: tuple(NOTIFIER_TOPICS),
                archiving.archiver_group: (topics.OUTCOMES,),
            },
            ready_urls={
                "ingest": f"{gateway.ops_url}/readyz",
                "processor": f"http://127.0.0.1:{processor_port}/readyz",
                "analytics": f"{analytics.ops_url}/readyz",
                "notifier": f"{notifying.ops_url('notifier')}/readyz",
                "archiver": f"{archiving.ops_url('archiver')}/readyz",
            },
            public_urls={
                "ingest": gateway.url,
                "analytics": analytics.url,
                "notifier": f"http://{notifying.http_host}:{notifying.notifier_port}",
            },
        )
