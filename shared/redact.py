"""Which headers carry a secret: one answer for everything that stores, publishes or logs
a request's headers.

The gateway strips them before the request reaches Kafka and ``webhook_requests``
(:func:`strip_secret_headers`), the archiver drops them from archive records whoever
produced the event, and the log redaction masks any field so named
(:func:`is_secret_header`, used by :mod:`shared.logs`).

A header is secret when its name is on :data:`SECRET_HEADERS` or says what it carries
(:data:`SECRET_NAME`: ``auth``, ``token``, ``secret``, ``signature``, ``api-key``,
``password``, ``cookie``, ``credential``, ``session``). Erring that way costs a header
nobody needed in the archive; erring the other way puts a credential in three stores.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping

# Credential and signature headers by name (all matched by SECRET_NAME too; listed so the
# known ones are named, and stay dropped whatever becomes of the pattern).
SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "webhook-signature",
        "webhook-secret",
        "x-hub-signature",
        "x-hub-signature-256",
        "x-api-key",
        "api-key",
        "x-webhook-secret",
        "x-signature",
        "x-auth-token",
        "x-access-token",
    }
)

# Any name that says it carries a credential, a signature or a session.
SECRET_NAME = re.compile(
    r"(auth|signature|secret|token|api[-_]?key|apikey|password|passwd|cookie|credential|session)",
    re.IGNORECASE,
)


@functools.lru_cache(maxsize=4096)
def is_secret_header(name: str) -> bool:
    """True for a header (or log field) name that carries a secret. Cached: the same few
    names come with every request, and the cache is bounded whatever names a sender
    makes up."""
    lower = name.lower()
    return lower in SECRET_HEADERS or SECRET_NAME.search(lower) is not None


def strip_secret_headers(headers: Mapping[str, str], extra: Iterable[str] = ()) -> dict[str, str]:
    """Headers lower-cased, minus every secret header and the names in ``extra`` (a
    webhook's own API-key header)."""
    drop = {h.lower() for h in extra}
    return {
        k.lower(): v
        for k, v in headers.items()
        if not is_secret_header(k) and k.lower() not in drop
    }
