"""Removing secrets from what is stored or published (headers of archived requests)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

# Headers that carry credentials or signatures; never stored, published or archived.
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
    }
)


def strip_secret_headers(headers: Mapping[str, str], extra: Iterable[str] = ()) -> dict[str, str]:
    """Headers lower-cased, minus every credential or signature header."""
    drop = SECRET_HEADERS | {h.lower() for h in extra}
    return {k.lower(): v for k, v in headers.items() if k.lower() not in drop}
