"""The management API's aiohttp application: the route table bound to its typed handlers,
behind the API-key check (:func:`shared.apikeys.api_key_middleware`), with every refusal
in the gateway's error shape: ``{"success": false, "errors": [{field, code, message}]}``.

For each request to a route: the key is checked (401); the path's ids are read (a
malformed one names nothing: 404); a key that does not see the path's workspace gets 404,
as for a workspace that does not exist; then the route's scope (403); then the query and
the JSON body are parsed into the handler's models (400 naming each field, 413, 415);
then the handler runs, and its model is the answer. Postgres away: 503 with Retry-After.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel, TypeAdapter, ValidationError

from services.api import admin, metrics
from services.api.handlers import Context
from services.api.routes import PUBLIC_PATHS, ROUTES, openapi_document, scope_of
from shared.apikeys import (
    DATABASE_ERRORS,
    PRINCIPAL,
    KeyChecker,
    Principal,
    api_key_middleware,
    error_body,
)
from shared.logs import get_logger
from shared.openapi import Route, check_routes, render_html

log = get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Api:
    """What the routes work with."""

    repo: admin.Repository
    ctx: Context


API = web.AppKey("management_api", Api)


def _json(data: Any, status: int = 200) -> web.Response:
    try:
        body = orjson.dumps(data)
    except TypeError:  # an integer past 64 bits, or a lone surrogate, from a sample body
        body = json.dumps(data, ensure_ascii=True).encode()
    return web.Response(body=body, status=status, content_type="application/json")


def _error(status: int, field: str, code: str, message: str) -> web.Response:
    body = error_body([{"field": field, "code": code, "message": message}])
    resp = web.Response(body=body, status=status, content_type="application/json")
    if status == 503:
        resp.headers["Retry-After"] = "2"
    return resp


def _refuse(status: int, code: str, message: str) -> web.StreamResponse:
    if status == 401:
        metrics.KEY_REFUSALS.labels(code).inc()
    resp = _error(status, "authorization", code, message)
    if status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="leadwire"'
    return resp


def _validation_errors(exc: ValidationError, where: str) -> web.Response:
    errors = [
        {
            "field": ".".join(str(part) for part in e["loc"]) or where,
            "code": e["type"],
            "message": e["msg"],
        }
        for e in exc.errors(include_url=False, include_input=False)
    ]
    return web.Response(body=error_body(errors), status=400, content_type="application/json")


_HTTP_CODES = {
    404: ("not_found", "no such path"),
    405: ("method_not_allowed", "this path does not take that method"),
    413: ("body_too_large", "the body is too large"),
}


@web.middleware
async def _answers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refusals in the error shape; counts and times every answer by route."""
    started = time.perf_counter()
    resource = request.match_info.route.resource
    operation = f"{request.method} {resource.canonical}" if resource else "unmatched"
    try:
        resp = await handler(request)
    except admin.AdminError as exc:
        resp = _error(exc.status, exc.field, exc.code, exc.message)
    except web.HTTPException as exc:
        code, message = _HTTP_CODES.get(exc.status, ("http_error", exc.reason))
        resp = _error(exc.status, "", code, message)
        if exc.status == 405:
            resp.headers["Allow"] = exc.headers.get("Allow", "")
    except DATABASE_ERRORS as exc:
        log.warning(
            "api_database_unavailable",
            path=resource.canonical if resource else "",
            error=type(exc).__name__,
        )
        resp = _error(503, "", "unavailable", "Postgres is unavailable; retry shortly")
    metrics.REQUESTS.labels(operation, str(resp.status)).inc()
    metrics.LATENCY.labels(operation).observe(time.perf_counter() - started)
    return resp


def _path_value(request: web.Request, name: str, hint: Any) -> Any:
    raw = request.match_info[name]
    try:
        return uuid.UUID(raw) if hint is uuid.UUID else TypeAdapter(hint).validate_python(raw)
    except (ValueError, ValidationError):
        what = name.removesuffix("_id").replace("_", " ")
        raise admin.NotFound(f"no such {what}", field=name) from None


def _query(request: web.Request, model: type[BaseModel]) -> BaseModel:
    """The query string as ``model`` (an empty parameter is an absent one)."""
    names = [info.alias or name for name, info in model.model_fields.items()]
    raw = {name: value for name in names if (value := request.query.get(name))}
    return model.model_validate(raw)


async def _body(request: web.Request, model: type[BaseModel]) -> BaseModel:
    raw = await request.read()  # over client_max_size: 413
    if raw.strip() and request.content_type != "application/json":
        raise admin.AdminError(
            "send the body as application/json", code="unsupported_media_type", field="body"
        ).with_status(415)
    return model.model_validate_json(raw if raw.strip() else b"{}")


async def _check_access(route: Route, api: Api, principal: Principal, args: dict[str, Any]) -> None:
    workspace_id = args.get("workspace_id")
    if workspace_id is not None and (
        not principal.sees(workspace_id) or await api.repo.workspace(workspace_id) is None
    ):
        raise admin.NotFound("no such workspace", field="workspace_id")
    scope = scope_of(route)
    if scope == "operator" and not (principal.operator and principal.can_manage):
        raise admin.Forbidden("only an operator's manage key may do this")
    if scope == "manage" and not principal.can_manage:
        raise admin.Forbidden("this key may only read")


def _endpoint(route: Route) -> Handler:
    """Bind a typed handler to aiohttp (see the module's order of checks)."""
    sig = route.signature
    handler = route.handler

    async def endpoint(request: web.Request) -> web.StreamResponse:
        api, principal = request.app[API], request[PRINCIPAL]
        args: dict[str, Any] = {n: _path_value(request, n, t) for n, t in sig.path.items()}
        await _check_access(route, api, principal, args)
        try:
            if sig.query is not None:
                args["query"] = _query(request, sig.query)
        except ValidationError as exc:
            return _validation_errors(exc, "query")
        try:
            if sig.body is not None:
                args["body"] = await _body(request, sig.body)
        except ValidationError as exc:
            return _validation_errors(exc, "body")
        deps = {"repo": api.repo, "ctx": api.ctx, "principal": principal}
        answer = await handler(**args, **{name: deps[name] for name in sig.dependencies})
        return _json(answer.model_dump(mode="json", by_alias=True), route.status)

    return endpoint


async def _openapi(_request: web.Request) -> web.Response:
    return _json(openapi_document())


async def _docs(_request: web.Request) -> web.Response:
    return web.Response(text=render_html(openapi_document()), content_type="text/html")


def _is_public(request: web.Request) -> bool:
    return request.path in PUBLIC_PATHS


def create_app(api: Api, checker: KeyChecker, *, max_body_bytes: int) -> web.Application:
    """The API (the ops routes are on the ops listener: ``Service.serve_ops``)."""
    check_routes(ROUTES)
    app = web.Application(
        middlewares=[_answers, api_key_middleware(checker, is_public=_is_public, refuse=_refuse)],
        client_max_size=max_body_bytes,
    )
    app[API] = api
    for route in ROUTES:
        app.router.add_route(route.method.upper(), route.path, _endpoint(route))
    app.router.add_get("/openapi.json", _openapi, allow_head=False)
    app.router.add_get("/docs", _docs, allow_head=False)
    return app
