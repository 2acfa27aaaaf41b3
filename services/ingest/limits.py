"""Request limits: token buckets, bounded body reads, JSON shape bounds, the client address."""

from __future__ import annotations

import asyncio
import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    """One token bucket per key (a webhook id, a client address), bounded in number.

    ``take(key, rate_per_minute, burst)`` returns 0 when a token was taken, else the
    seconds until one is available (for ``Retry-After``). The least recently used buckets
    are forgotten past ``max_keys`` (a forgotten bucket starts full again).
    """

    def __init__(
        self, *, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._buckets: OrderedDict[Any, _Bucket] = OrderedDict()
        self._max_keys = max_keys
        self._clock = clock

    def take(self, key: Any, rate_per_minute: float, burst: float) -> float:
        now = self._clock()
        rate = rate_per_minute / 60.0
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(tokens=burst, updated=now)
            self._buckets[key] = bucket
            if len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(burst, bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / rate if rate > 0 else 60.0

    def __len__(self) -> int:
        return len(self._buckets)


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


class BodyTooLarge(Exception):
    pass


class BodyTimeout(Exception):
    pass


async def read_body(request: web.BaseRequest, *, limit: int, timeout_s: float) -> bytes:
    """The whole body, at most ``limit`` bytes, within ``timeout_s`` (slow drips get 408).

    A declared Content-Length over the limit is refused before reading anything; a
    chunked body is refused as soon as it passes the limit, so memory stays bounded.
    """
    declared = request.content_length
    if declared is not None and declared > limit:
        raise BodyTooLarge
    content = request.content
    if content.is_eof():
        # The whole body came with the headers (most webhooks): nothing to wait for.
        body = content.read_nowait()
        if len(body) > limit:
            raise BodyTooLarge
        return body
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                chunk = await content.readany()
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge
                chunks.append(chunk)
    except TimeoutError as exc:
        raise BodyTimeout from exc
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class JsonShapeError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def check_json_shape(value: Any, *, max_depth: int, max_keys: int) -> None:
    """Refuse documents nested deeper than ``max_depth`` or with more than ``max_keys``
    object members plus array items (iterative: a hostile document cannot blow the stack)."""
    count = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Iterable[Any] = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > max_depth:
            raise JsonShapeError("too_deep", f"JSON nesting deeper than {max_depth} levels")
        count += len(node)
        if count > max_keys:
            raise JsonShapeError("too_many_fields", f"more than {max_keys} JSON fields")
        for child in children:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))


class ClientAddress:
    """The client's address: the peer, or the X-Forwarded-For hop a trusted proxy added."""

    def __init__(self, trusted_proxies: str) -> None:
        self._trusted = [
            ipaddress.ip_network(cidr.strip(), strict=False)
            for cidr in trusted_proxies.split(",")
            if cidr.strip()
        ]

    def _is_trusted(self, addr: str) -> bool:
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        return any(ip in net for net in self._trusted)

    def of(self, request: web.BaseRequest) -> str:
        peer = request.remote or "unknown"
        if not self._trusted or not self._is_trusted(peer):
            return peer
        forwarded = request.headers.get("X-Forwarded-For", "")
        # Walk from the nearest hop back; the first address not ours is the client.
        for hop in reversed([h.strip() for h in forwarded.split(",") if h.strip()]):
            if not self._is_trusted(hop):
                try:
                    return str(ipaddress.ip_address(hop))
                except ValueError:
                    return peer
        return peer
