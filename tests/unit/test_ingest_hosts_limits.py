"""Rate limits across several gateway hosts (LEADWIRE_INGEST_HOSTS): each process takes
1 / (hosts x workers) of a webhook's limit, so all of them together hold the limit."""

from __future__ import annotations

import uuid

import pytest

from services.ingest.config import WebhookConfig
from services.ingest.intake import Answered
from services.ingest.service import _deps
from services.ingest.settings import IngestSettings
from services.ingest.steps import limit_webhook

pytestmark = pytest.mark.unit


def _webhook(limit: int) -> WebhookConfig:
    return WebhookConfig(
        id=uuid.uuid4(),
        workspace_id=uuid.uuid4(),
        template="generic",
        webhook_active=True,
        workspace_active=True,
        default_region="US",
        auth_mode="none",
        secrets=(),
        basic_username=None,
        api_key_header="",
        rate_limit_per_minute=limit,
        max_body_bytes=None,
        idempotency_field=None,
        verify_token=None,
        mapping=None,
    )


def _accepted(hosts: int, workers: int, limit: int, tries: int) -> int:
    """Requests one process of ``hosts`` x ``workers`` lets through at once."""
    settings = IngestSettings(ingest_hosts=hosts)
    deps = _deps(settings, workers=workers, clock=lambda: 0.0)
    hook = _webhook(limit)
    accepted = 0
    for _ in range(tries):
        try:
            limit_webhook(hook, deps)
            accepted += 1
        except Answered:
            pass
    return accepted


@pytest.mark.parametrize(("hosts", "workers"), [(1, 1), (2, 1), (3, 2)])
def test_every_process_takes_its_share_and_together_they_hold_the_limit(
    hosts: int, workers: int
) -> None:
    limit = 60
    each = _accepted(hosts, workers, limit, tries=100)
    assert each == limit // (hosts * workers)
    assert each * hosts * workers == limit


def test_one_host_is_the_default() -> None:
    assert IngestSettings().ingest_hosts == 1
