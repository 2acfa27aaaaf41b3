"""Fetching a Facebook lead from the Graph API: ``GET {graph}/{leadgen_id}`` with the page
access token, answered ``{"id", "created_time", "ad_id", "form_id", "field_data": [{"name",
"values"}]}``.

Retried with exponential backoff (0.5 s doubling to 30 s, with jitter) while the failure
may pass: a 5xx, a 429, Facebook's rate-limit and temporary error codes (1, 2, 4, 17, 32,
341, 613, 80000-80014), a timeout (each answer is bounded by ``timeout_s``: a slow answer
is a timeout) or a refused connection; for up to ``retry_s`` in all. Anything else (a
400 for an unknown lead, an expired token: code 190, a permission missing: code 200) fails
at once. :class:`FetchFailed` says why without the token or the lead's data: the HTTP
status, Facebook's error code and type.

The token travels as the ``access_token`` query parameter, as Graph API calls take it; it
is never logged (log lines name the leadgen id, status and code only).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson

from shared.logs import get_logger

log = get_logger(__name__)

# Facebook's codes for throttling and temporary trouble (Graph API error handling docs).
RETRY_CODES = frozenset({1, 2, 4, 17, 32, 341, 613, *range(80000, 80015)})
FIELDS = "id,created_time,ad_id,form_id,field_data"


class FetchFailed(Exception):
    """The lead could not be fetched, for good (or not within the retry time)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Again(Exception):
    """A failure that may pass: try again after a pause."""


def _error_of(status: int, body: bytes) -> tuple[str, int | None]:
    """``status N (code C, Type)`` and the Graph error code, from an error answer."""
    code: int | None = None
    kind = ""
    try:
        error = orjson.loads(body).get("error") or {}
        code = error.get("code") if isinstance(error.get("code"), int) else None
        kind = str(error.get("type") or "")[:60]
    except (orjson.JSONDecodeError, AttributeError):
        pass
    detail = ", ".join(x for x in (f"code {code}" if code is not None else "", kind) if x)
    return (f"Graph API answered {status}" + (f" ({detail})" if detail else "")), code


class GraphClient:
    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 10.0,
        retry_s: float = 300.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._retry_s = retry_s
        self._sleep = sleep
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def lead(self, leadgen_id: str, token: str) -> dict[str, Any]:
        """The lead object, or :class:`FetchFailed`."""
        deadline = time.monotonic() + self._retry_s
        pause = 0.5
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._once(leadgen_id, token)
            except _Again as again:
                reason = str(again)
            if time.monotonic() + pause > deadline:
                raise FetchFailed(f"{reason}; gave up after {attempt} attempts")
            log.info("facebook_fetch_retry", leadgen_id=leadgen_id, attempt=attempt, why=reason)
            await self._sleep(pause * (0.5 + random.random() / 2))
            pause = min(pause * 2, 30.0)

    async def _once(self, leadgen_id: str, token: str) -> dict[str, Any]:
        url = f"{self._base}/{leadgen_id}"
        params = {"access_token": token, "fields": FIELDS}
        try:
            async with self._http().get(url, params=params) as resp:
                body = await resp.read()
                status = resp.status
        except TimeoutError:
            raise _Again("Graph API did not answer in time") from None
        except aiohttp.ClientError as exc:
            raise _Again(f"Graph API unreachable ({type(exc).__name__})") from None
        if status == 200:
            try:
                lead = orjson.loads(body)
            except orjson.JSONDecodeError:
                raise _Again("Graph API answered 200 with a body that is not JSON") from None
            if not isinstance(lead, dict) or not isinstance(lead.get("field_data"), list):
                raise FetchFailed("Graph API answered 200 without field_data")
            return lead
        reason, code = _error_of(status, body)
        if status >= 500 or status == 429 or code in RETRY_CODES:
            raise _Again(reason)
        raise FetchFailed(reason)
