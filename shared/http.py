"""Health, readiness and Prometheus metrics for every service, and serving an app.

They are served on the service's ops listener (:meth:`shared.service.Service.serve_ops`),
never beside its public routes: metrics name every webhook id the service has seen, and
readiness details name topics and errors.

- ``/healthz``: the process is alive and its event loop turns (always 200).
- ``/readyz``: every named check passes (200), else 503 naming the checks that failed.
- ``/metrics``: Prometheus text format from the default registry, or, when
  ``PROMETHEUS_MULTIPROC_DIR`` is set (several worker processes behind one port), the
  figures of every worker process added up.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)

# A check answers ready or not; it may add details for the answer (``(ok, details)``),
# e.g. the consumer runner names the topic, partition, offset and error it is stuck on.
CheckResult = bool | tuple[bool, dict[str, Any]]
ReadyCheck = Callable[[], Awaitable[CheckResult] | CheckResult]


def add_ops_routes(
    app: web.Application, *, service: str, checks: Mapping[str, ReadyCheck] | None = None
) -> None:
    checks = dict(checks or {})

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "service": service})

    async def readyz(_request: web.Request) -> web.Response:
        failed: list[str] = []
        details: dict[str, Any] = {}
        for name, check in checks.items():
            ok, detail = await run_check(check)
            if not ok:
                failed.append(name)
            if detail:
                details[name] = detail
        body: dict[str, Any] = {"status": "not ready" if failed else "ready", "service": service}
        if failed:
            body["failed"] = failed
        if details:
            body["details"] = details
        return web.json_response(body, status=503 if failed else 200)

    registry = _metrics_registry()

    async def metrics(_request: web.Request) -> web.Response:
        resp = web.Response(body=generate_latest(registry))
        resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return resp

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)


def _metrics_registry() -> CollectorRegistry:
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


async def run_check(check: ReadyCheck) -> tuple[bool, dict[str, Any]]:
    """``(ok, details)`` of one readiness check; an error or a 3 s silence is not ready."""
    try:
        result = check()
        if inspect.isawaitable(result):
            result = await asyncio.wait_for(result, 3.0)
    except Exception as exc:
        return False, {"error": type(exc).__name__}
    if isinstance(result, tuple):
        return bool(result[0]), dict(result[1])
    return bool(result), {}


def ops_app(service: str, checks: Mapping[str, ReadyCheck] | None = None) -> web.Application:
    """An application with only the ops routes."""
    app = web.Application()
    add_ops_routes(app, service=service, checks=checks)
    return app


async def serve(
    app: web.Application, host: str, port: int, *, reuse_port: bool = False
) -> web.AppRunner:
    """Start serving ``app``; the caller awaits ``runner.cleanup()`` to stop."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None, backlog=1024)
    await site.start()
    return runner
