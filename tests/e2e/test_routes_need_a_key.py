"""Nothing is readable without a key: every route of every service, called without one.

The six services run in this process (gateway, processor, analytics, notifier, archiver,
management API). Every aiohttp runner they start is recorded as it starts (public
listeners and ops listeners alike, so a route added later is walked too), and every route
of every runner's router is called on the port it serves, with no credential, each path
parameter an id that exists nowhere. A route must answer 401, or 404 (an unknown id),
unless it is one of the routes that are public on purpose:

- a webhook's POST and GET (vendors send leads; the id and the webhook's auth mode are
  the guard) and the status of a request under it, on the gateway;
- ``/healthz``, ``/readyz`` and ``/metrics`` (on the ops listeners);
- the documents (``/docs``, ``/openapi.json``), the dashboard's script and style sheet,
  and its sign-in form (``/login``, ``/logout``);
- the Socket.IO endpoint (``/socket.io/``): its handshake carries nothing, and joining a
  workspace's room needs the workspace's token (tests/integration/test_notifier_realtime.py).

The figures: the routes walked and their answers go to test-output/route-walk.txt.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.web_urldispatcher import StaticResource

from shared.settings import CommonSettings
from tests.support.api import api_settings, running_api
from tests.support.pipeline import running_pipeline
from tests.support.polling import eventually

pytestmark = pytest.mark.e2e

OUTPUT = Path(__file__).resolve().parents[2] / "test-output" / "route-walk.txt"
PUBLIC = (
    ("POST", r"/webhooks/\{webhook_id\}"),
    ("GET", r"/webhooks/\{webhook_id\}"),
    ("GET", r"/webhooks/\{webhook_id\}/requests/\{request_id\}"),
    ("*", r"/(healthz|readyz|metrics)"),
    ("*", r"/(docs|openapi\.json)"),
    ("*", r"/static/.*"),
    ("*", r"/(login|logout)"),
    ("*", r"/socket\.io/"),
)


def _public(method: str, template: str) -> bool:
    return any(
        (m == "*" or m == method) and re.fullmatch(pattern, template) for m, pattern in PUBLIC
    )


def _walk(runners: list[web.AppRunner]) -> list[tuple[str, str, str, str]]:
    """(base URL, method, path template, path to call) of every route served."""
    out = []
    for runner in runners:
        host, port = runner.addresses[0][:2]
        base = f"http://{host}:{port}"
        for route in runner.app.router.routes():
            resource = route.resource
            if resource is None:
                continue
            method = "GET" if route.method == "*" else route.method
            if isinstance(resource, StaticResource):
                template = resource.canonical + "/{filename}"
                out.append(
                    (
                        base,
                        method,
                        "/static/{filename}",
                        template.replace("{filename}", "dashboard.js"),
                    )
                )
                continue
            template = resource.canonical
            path = re.sub(r"\{[^}]+\}", lambda _m: str(uuid.uuid4()), template)
            out.append((base, method, template, path))
    return out


async def test_no_route_of_any_service_answers_without_a_key(
    settings: CommonSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    runners: list[web.AppRunner] = []
    setup = web.AppRunner.setup

    async def recording_setup(self: web.AppRunner) -> None:
        runners.append(self)
        await setup(self)

    monkeypatch.setattr(web.AppRunner, "setup", recording_setup)
    async with running_pipeline(settings) as pipe, running_api(api_settings(settings)):
        await eventually(
            pipe.readiness,
            until=lambda ready: all(status == 200 for status in ready.values()),
            deadline_s=60,
            what="every service ready (each has opened its listeners)",
        )
        routes = _walk([r for r in runners if r.addresses])
        answers = []
        async with aiohttp.ClientSession() as http:
            for base, method, template, path in routes:
                async with http.request(
                    method,
                    base + path,
                    allow_redirects=False,
                    data=b"" if method != "GET" else None,
                ) as resp:
                    await resp.read()
                    answers.append((base, method, template, resp.status))
    open_ = [
        f"{method} {base}{template} -> {status}"
        for base, method, template, status in answers
        if status not in (401, 404) and not _public(method, template)
    ]
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(
        "".join(
            f"{status}  {method:7} {base}{template}{'  (public)' if _public(method, template) else ''}\n"
            for base, method, template, status in sorted(answers)
        )
    )
    ports = {base for base, *_ in answers}
    # Six ops listeners, and the public ones of the gateway, notifier, analytics and API.
    assert len(ports) == 10, sorted(ports)
    assert len(answers) >= 60, len(answers)
    assert not open_, "routes that answer without a key:\n" + "\n".join(open_)
    protected = [a for a in answers if not _public(a[1], a[2])]
    assert sum(1 for a in protected if a[3] == 401) >= 40
