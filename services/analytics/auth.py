"""Who may read analytics, and the dashboard's sign-in.

Nothing is readable without a key: every route needs an API key
(``Authorization: Bearer lwk_...``, :mod:`shared.apikeys`) or a dashboard session
(:mod:`services.analytics.sessions`), except the public ones: the sign-in page and its
form, the dashboard's script and style sheet, and the OpenAPI document. Without one: 401
(the JSON routes in the API's problem shape; a dashboard page answers 401 with the
sign-in form). The ops routes (``/healthz``, ``/readyz``, ``/metrics``) are not here but
on the ops listener.

A workspace's key (or a session opened with one) sees that workspace only: the list of
workspaces holds it alone, and another workspace's ids answer 404, exactly as ids that
exist nowhere. An operator key sees every workspace. A live stream re-checks its
credential every ``stream_recheck_s`` and ends when it no longer works.

Sign-in: ``GET /login`` (also the body of a dashboard page's 401) is a form that posts
the key to ``POST /login``, which opens a session (a cookie, never the key) and redirects
to the dashboard; ``POST /logout`` ends it. Both refuse a POST whose ``Origin`` is another
site (403). Pages carry a Content-Security-Policy (scripts and styles from this origin
only, never framed).
"""

from __future__ import annotations

import html
import re
import uuid
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from aiohttp import web

from services.analytics.sessions import Sessions
from shared.apikeys import (
    DATABASE_ERRORS,
    KeyChecker,
    KeyRefused,
    Principal,
    api_key_middleware,
)
from shared.logs import get_logger

log = get_logger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
PUBLIC_PATHS = frozenset({"/openapi.json", "/login", "/logout"})
# Pages that check the session themselves (401 with the sign-in form, not JSON).
_PAGE = re.compile(r"^/(dashboard(/[^/]*)?/?)?$")
# Where a sign-in may lead: the dashboard's own pages only (no open redirect).
_NEXT = re.compile(r"^/(dashboard(/[0-9a-fA-F-]{36})?)?$")
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
        "form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # (same-origin, not no-referrer: with no-referrer a browser sends "Origin: null" on the
    # sign-in form's POST, which the cross-site check refuses.)
    "Referrer-Policy": "same-origin",
}


@dataclass(frozen=True)
class Access:
    """The key checker and the sessions, for the middleware, the pages and the streams."""

    checker: KeyChecker
    sessions: Sessions

    async def principal(self, request: web.Request) -> Principal:
        """Who the request speaks for: its Authorization header, else its session cookie
        (:class:`KeyRefused` when neither works; database errors propagate)."""
        authorization = request.headers.get("Authorization")
        if authorization is None:
            return await self.sessions.principal(request)
        return await self.checker.principal(authorization)

    async def still_allowed(self, request: web.Request) -> bool:
        """Whether the request's credential still works (Postgres away: yes, for now)."""
        try:
            await self.principal(request)
        except KeyRefused:
            return False
        except DATABASE_ERRORS:
            return True
        return True


ACCESS = web.AppKey("analytics_access", Access)


def sees(principal: Principal, workspace_id: uuid.UUID | None) -> bool:
    """Whether the key may see what belongs to ``workspace_id`` (None: no workspace is
    known for it, which only an operator sees)."""
    return principal.operator or (workspace_id is not None and principal.sees(workspace_id))


def is_public(request: web.Request) -> bool:
    path = request.path
    return path in PUBLIC_PATHS or path.startswith("/static/") or bool(_PAGE.match(path))


def refuse(status: int, code: str, message: str) -> web.StreamResponse:
    """A refusal in the analytics API's problem shape."""
    resp = web.Response(
        body=orjson.dumps({"error": code, "detail": message}),
        status=status,
        content_type="application/json",
    )
    if status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="leadwire"'
    elif status == 503:
        resp.headers["Retry-After"] = "2"
    return resp


def middleware(access: Access) -> Any:
    """The API-key check of every route but the public ones; a session cookie stands for a
    key when no Authorization header is sent."""
    return api_key_middleware(
        access.checker, is_public=is_public, refuse=refuse, fallback=access.sessions.principal
    )


# --- pages ------------------------------------------------------------------------------

_LOGIN = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>leadwire analytics · sign in</title>
<link rel="stylesheet" href="/static/dashboard.css">
</head>
<body>
<header><h1>leadwire analytics</h1></header>
<main>
<section class="card login">
<h2>Sign in</h2>
<p class="sub">Paste an API key (<code>leadwire apikey create --workspace W --scope read</code>).
It is checked once; the browser keeps a session, never the key.</p>
{message}
<form method="post" action="/login" autocomplete="off">
<input type="hidden" name="next" value="{next}">
<label>API key <input type="password" name="key" required maxlength="200" autofocus></label>
<button type="submit">Sign in</button>
</form>
</section>
</main>
</body>
</html>
"""


def _page(body: str | bytes, status: int = 200) -> web.Response:
    resp = web.Response(body=body, status=status, content_type="text/html", charset="utf-8")
    resp.headers.update(SECURITY_HEADERS)
    resp.headers["Cache-Control"] = "no-store"
    if status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="leadwire"'
    return resp


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


def _next(value: str | None) -> str:
    return value if value is not None and _NEXT.match(value) else "/dashboard"


def login_page(next_path: str, *, status: int = 200, message: str = "") -> web.Response:
    shown = f'<p class="error">{html.escape(message)}</p>' if message else ""
    body = _LOGIN.format(message=shown, next=html.escape(_next(next_path), quote=True))
    return _page(body, status)


async def show_login(request: web.Request) -> web.StreamResponse:
    """The sign-in form"""
    return login_page(request.query.get("next", "/dashboard"))


def _cross_site(request: web.Request) -> bool:
    """A browser's POST from another site (its Sec-Fetch-Site or Origin says so; an opaque
    "null" origin counts as another site). A request without either (curl) is not."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return True
    origin = request.headers.get("Origin")
    return origin is not None and (origin == "null" or urlsplit(origin).netloc != request.host)


async def login(request: web.Request) -> web.StreamResponse:
    """Open a session with a key: a cookie, then the dashboard (303)"""
    if _cross_site(request):
        return refuse(403, "cross_site", "sign in from the dashboard's own page")
    try:
        form = await request.post()
    except (ValueError, UnicodeDecodeError):  # not a form aiohttp can read
        return login_page("/dashboard", status=400, message="Send the sign-in form.")
    key, next_path = form.get("key"), _next(str(form.get("next", "")))
    access = request.app[ACCESS]
    try:
        session_id, principal = await access.sessions.open(key if isinstance(key, str) else "")
    except KeyRefused as exc:
        log.info("dashboard_sign_in_refused", code=exc.code)
        return login_page(next_path, status=401, message=f"That key does not work: {exc.message}.")
    except DATABASE_ERRORS:
        return login_page(next_path, status=503, message="Cannot check keys now; try again.")
    if next_path == "/dashboard" and not principal.operator:
        next_path = f"/dashboard/{principal.workspace_id}"  # a workspace key sees one
    resp = _see_other(next_path)
    access.sessions.set_cookie(resp, request, session_id)
    log.info("dashboard_signed_in", key_id=str(principal.key_id))
    return resp


async def logout(request: web.Request) -> web.StreamResponse:
    """End the session: the sign-in form (303)"""
    if _cross_site(request):
        return refuse(403, "cross_site", "sign out from the dashboard's own page")
    access = request.app[ACCESS]
    try:
        await access.sessions.close(request)
    except DATABASE_ERRORS:
        return refuse(503, "unavailable", "cannot end the session now; retry shortly")
    resp = _see_other("/login")
    access.sessions.clear_cookie(resp, request)
    return resp


@cache
def _dashboard_html() -> bytes:
    return (STATIC / "dashboard.html").read_bytes()


async def dashboard(request: web.Request) -> web.StreamResponse:
    """The live dashboard (HTML; its scripts read the API and the stream); without a
    session, the sign-in form (401)"""
    try:
        await request.app[ACCESS].sessions.principal(request)
    except KeyRefused:
        return login_page(request.path, status=401)
    except DATABASE_ERRORS:
        return _page(b"<!doctype html><title>unavailable</title><p>Try again shortly.", 503)
    if "workspace_id" in request.match_info:
        try:
            uuid.UUID(request.match_info["workspace_id"])
        except ValueError:
            return _page(b"<!doctype html><title>not found</title><p>No such workspace.", 404)
    resp = _page(_dashboard_html())
    resp.headers["Cache-Control"] = "no-cache"
    return resp
