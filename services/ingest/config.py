"""Webhook configuration, cached in the process so the hot path does not query Postgres.

- An entry lives ``config_ttl_s`` (60 s); a ``leadwire_config`` notification
  (``webhooks:<id>`` / ``workspaces:<id>``) drops the entries it names at once, and a
  reconnect of the listener drops everything (notifications may have been missed).
- An unknown id is remembered for ``config_negative_ttl_s``: a flood of made-up ids costs a
  dictionary lookup each, not a query, and answers as fast as a known id would.
- Concurrent misses for one id share one query (single flight).
- When Postgres is away, an expired entry is served (stale beats refusing leads); an id
  never seen raises :class:`ConfigUnavailable` (503).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.ingest import auth
from services.ingest.acceptance import NO_CRITERIA, Acceptance, from_stored
from shared.logs import get_logger
from shared.mapping import CompiledMapping, MappingError, compile_mapping, compile_stored
from shared.templates import TEMPLATES

log = get_logger(__name__)


class ConfigUnavailable(Exception):
    """The config of a webhook could not be loaded (Postgres unreachable)."""


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    id: uuid.UUID
    workspace_id: uuid.UUID
    template: str
    webhook_active: bool
    workspace_active: bool
    default_region: str
    auth_mode: str
    secrets: tuple[auth.Secret, ...]
    basic_username: str | None
    api_key_header: str
    rate_limit_per_minute: int | None
    max_body_bytes: int | None
    idempotency_field: str | None
    verify_token: str | None
    mapping: CompiledMapping | None
    # Why the webhook cannot take leads although it exists (a bad stored mapping/secret).
    problem: str | None = None
    # What the buyer ordered (acceptance.py), and the Facebook page token (facebook.py).
    acceptance: Acceptance = NO_CRITERIA
    facebook_page_token: str | None = None

    @property
    def active(self) -> bool:
        return self.webhook_active and self.workspace_active


def _epoch(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def build_config(row: dict[str, Any]) -> WebhookConfig:
    """A cache entry from a joined webhooks/workspaces row (compiles the mapping once)."""
    problem: str | None = None
    mode = row["auth_mode"]
    secrets: list[auth.Secret] = []
    try:
        if mode != "none":
            if row["secret"]:
                secrets.append(auth.make_secret(mode, row["secret"]))
            expires = _epoch(row["secret_previous_expires_at"])
            # A previous secret without an expiry is not accepted: rotations always end.
            if row["secret_previous"] and expires is not None:
                secrets.append(auth.make_secret(mode, row["secret_previous"], expires))
            if not secrets:
                problem = "auth_secret_missing"
    except auth.SecretFormatError:
        problem = "auth_secret_malformed"
    mapping: CompiledMapping | None = None
    try:
        stored = row["mapping"]
        empty = not stored or (isinstance(stored, dict) and not stored.get("entries"))
        template = TEMPLATES.get(row["template"])
        if empty and template is not None:
            # A webhook made from a template without its own mapping uses the template's.
            mapping = compile_mapping(template.mapping)
        else:
            mapping = compile_stored(stored)
    except (MappingError, ValueError, TypeError):
        problem = problem or "mapping_invalid"
    accepts, unusable = from_stored(row.get("acceptance"))
    return WebhookConfig(
        id=row["id"],
        workspace_id=row["workspace_id"],
        template=row["template"],
        webhook_active=row["status"] == "active",
        workspace_active=row["workspace_status"] == "active",
        default_region=row["default_region"],
        auth_mode=mode,
        secrets=tuple(secrets),
        basic_username=row["basic_username"],
        api_key_header=row["api_key_header"] or "X-API-Key",
        rate_limit_per_minute=row["rate_limit_per_minute"],
        max_body_bytes=row["max_body_bytes"],
        idempotency_field=row["idempotency_field"],
        verify_token=row["verify_token"],
        mapping=mapping,
        problem=problem or unusable,
        acceptance=accepts,
        facebook_page_token=row.get("facebook_page_token"),
    )


@dataclass(slots=True)
class _Entry:
    config: WebhookConfig | None
    expires: float


Loader = Callable[[uuid.UUID], Awaitable[dict[str, Any] | None]]


class ConfigCache:
    def __init__(
        self,
        load: Loader | None,
        *,
        ttl_s: float = 60.0,
        negative_ttl_s: float = 5.0,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._ttl = ttl_s
        self._negative_ttl = negative_ttl_s
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[uuid.UUID, _Entry] = OrderedDict()
        self._loading: dict[uuid.UUID, asyncio.Future[WebhookConfig | None]] = {}
        # Bumped by every invalidation: a load that started before it is not cached.
        self._generation = 0

    def set_loader(self, load: Loader) -> None:
        self._load = load

    async def get(self, webhook_id: uuid.UUID) -> WebhookConfig | None:
        entry = self._entries.get(webhook_id)
        now = self._clock()
        if entry is not None and entry.expires > now:
            return entry.config
        pending = self._loading.get(webhook_id)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[WebhookConfig | None] = asyncio.get_running_loop().create_future()
        self._loading[webhook_id] = future
        try:
            config = await self._fetch(webhook_id, entry)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning without waiters
            raise
        else:
            future.set_result(config)
            return config
        finally:
            del self._loading[webhook_id]

    async def _fetch(self, webhook_id: uuid.UUID, stale: _Entry | None) -> WebhookConfig | None:
        generation = self._generation
        try:
            if self._load is None:
                raise ConfigUnavailable("config database not connected yet")
            row = await self._load(webhook_id)
        except Exception as exc:
            if stale is not None:
                # Serve what we had; try the database again in a few seconds.
                log.warning(
                    "config_stale_served", webhook_id=str(webhook_id), error=type(exc).__name__
                )
                stale.expires = self._clock() + min(5.0, self._ttl)
                return stale.config
            if isinstance(exc, ConfigUnavailable):
                raise
            raise ConfigUnavailable(type(exc).__name__) from exc
        config = build_config(row) if row is not None else None
        if config is not None and config.problem:
            log.error("webhook_misconfigured", webhook_id=str(webhook_id), problem=config.problem)
        if generation == self._generation:
            ttl = self._ttl if config is not None else self._negative_ttl
            self._entries[webhook_id] = _Entry(config, self._clock() + ttl)
            self._entries.move_to_end(webhook_id)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return config

    # -- invalidation --------------------------------------------------------------------

    def invalidate(self, payload: str) -> None:
        """Handle a ``leadwire_config`` notification payload (``<table>:<id>``)."""
        table, _, raw_id = payload.partition(":")
        try:
            target = uuid.UUID(raw_id)
        except ValueError:
            self.clear()
            return
        self._generation += 1
        if table == "webhooks":
            self._entries.pop(target, None)
        elif table == "workspaces":
            for key in [
                k for k, e in self._entries.items() if e.config and e.config.workspace_id == target
            ]:
                del self._entries[key]
        else:
            self.clear()

    def clear(self) -> None:
        self._generation += 1
        self._entries.clear()
