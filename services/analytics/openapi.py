"""The API's routes, and its OpenAPI 3.1 document generated from them.

A :class:`Route` names a typed handler: ``async def get_x(x_id: uuid.UUID, query: SomeQuery,
*, api: Api) -> SomeModel | None``. Its signature is the contract, read once here for both
sides: :mod:`services.analytics.api` parses the path parameters and the query with it and
serializes the returned model (``None``: 404), and :func:`document` writes the same
parameters, models and answers into the OpenAPI document, the schemas by pydantic. A route
whose handler answers for itself (a stream, a page, the ops routes) declares its media type.
So the document cannot drift from the code; a unit test checks it covers every route of
the router.
"""

from __future__ import annotations

import inspect
import typing
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import NoneType, UnionType
from typing import Any

from aiohttp import web
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import models_json_schema

from services.analytics.schemas import Problem

RawHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_UUID_SCHEMA = TypeAdapter(uuid.UUID).json_schema()


@dataclass(frozen=True)
class Signature:
    """What a typed handler takes and answers."""

    path: tuple[str, ...]  # path parameters (UUIDs), in order
    query_arg: str | None  # the argument that takes the query model
    query: type[BaseModel] | None
    response: type[BaseModel]
    can_be_missing: bool  # returns None: 404


def signature(handler: Callable[..., Awaitable[Any]]) -> Signature:
    hints = typing.get_type_hints(handler)
    path: list[str] = []
    query_arg: str | None = None
    for name, param in inspect.signature(handler).parameters.items():
        if param.kind is param.KEYWORD_ONLY:
            continue  # dependencies
        if hints[name] is uuid.UUID:
            path.append(name)
        elif isinstance(hints[name], type) and issubclass(hints[name], BaseModel):
            query_arg = name
        else:
            raise TypeError(f"{handler.__name__}: {name} is neither a path id nor a query")
    returns = hints["return"]
    members = typing.get_args(returns) if isinstance(returns, UnionType) else (returns,)
    models = [m for m in members if m is not NoneType]
    if len(models) != 1 or not issubclass(models[0], BaseModel):
        raise TypeError(f"{handler.__name__} must return one model (or None)")
    return Signature(
        path=tuple(path),
        query_arg=query_arg,
        query=hints[query_arg] if query_arg else None,
        response=models[0],
        can_be_missing=NoneType in members,
    )


@dataclass(frozen=True)
class Route:
    """A route: a typed ``handler`` (JSON models in and out, GET), a ``raw`` aiohttp
    handler that answers ``media_type`` itself, or neither (served by another router
    call: the static files, the ops routes). Every route needs a key or a session but the
    ``public`` ones (401 otherwise)."""

    path: str
    operation_id: str
    handler: Callable[..., Awaitable[Any]] | None = None
    raw: RawHandler | None = None
    method: str = "get"
    public: bool = False
    summary: str = ""  # default: the handler's first docstring line
    media_type: str = "application/json"
    description: str = "OK"  # of the 200 answer
    not_found: bool = False  # a raw route that answers 404 for an unknown id
    other_answers: Mapping[int, str] = field(default_factory=dict)
    # A path parameter that is not an id: its allowed values.
    values: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Answers with an HTML body (a page's 401: the sign-in form), and a redirect's meaning.
    html_answers: Mapping[int, str] = field(default_factory=dict)
    redirect: str | None = None
    # The schema of a form body (application/x-www-form-urlencoded).
    form: Mapping[str, Any] | None = None

    @cached_property
    def signature(self) -> Signature | None:
        return signature(self.handler) if self.handler is not None else None

    @property
    def path_params(self) -> tuple[str, ...]:
        return tuple(part[1:-1] for part in self.path.split("/") if part.startswith("{"))


def document(routes: Iterable[Route], *, info: Mapping[str, Any]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes``."""
    routes = list(routes)
    models: list[type[BaseModel]] = [Problem]
    models += [r.signature.response for r in routes if r.signature is not None]
    _, top = models_json_schema(
        [(m, "serialization") for m in dict.fromkeys(models)],
        ref_template="#/components/schemas/{model}",
    )
    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        paths.setdefault(r.path, {})[r.method] = _operation(r)
    return {
        "openapi": "3.1.0",
        "info": dict(info),
        "paths": paths,
        "components": {"schemas": top["$defs"], "securitySchemes": SECURITY_SCHEMES},
        "security": [{name: []} for name in SECURITY_SCHEMES],
    }


SECURITY_SCHEMES = {
    "apiKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key (`leadwire apikey create --workspace W --scope read`, or "
        "`--operator` for every workspace)",
    },
    "session": {
        "type": "apiKey",
        "in": "cookie",
        "name": "leadwire_session",
        "description": "The dashboard's session, opened by POST /login with a key",
    },
}


def _ref(model: type[BaseModel]) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _answer(description: str, media_type: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {media_type: {"schema": dict(schema)}}}


def _operation(route: Route) -> dict[str, Any]:
    sig = route.signature
    summary = route.summary or inspect.getdoc(route.handler or route.raw) or ""
    params = [_path_param(route, name) for name in route.path_params]
    if sig is not None and sig.query is not None:
        params += _query_params(sig.query)
    if sig is not None:
        ok = _answer(route.description, "application/json", _ref(sig.response))
    else:
        schema = {"type": "object"} if route.media_type == "application/json" else {}
        ok = _answer(route.description, route.media_type, schema or {"type": "string"})
    responses: dict[str, Any] = {"200": ok}
    if any(name not in route.values for name in route.path_params) or (sig and sig.query):
        responses["400"] = _answer("Malformed id or parameter", "application/json", _ref(Problem))
    if route.not_found or (sig is not None and sig.can_be_missing):
        responses["404"] = _answer("Unknown id", "application/json", _ref(Problem))
    if not route.public:
        responses["401"] = _answer(
            "No API key or session, or one that no longer works", "application/json", _ref(Problem)
        )
    for status, description in route.other_answers.items():
        responses[str(status)] = _answer(description, "application/json", _ref(Problem))
    for status, description in route.html_answers.items():
        responses[str(status)] = _answer(description, "text/html", {"type": "string"})
    if route.redirect is not None:
        del responses["200"]  # a form's answer is where it leads
        responses = {"303": {"description": route.redirect}, **responses}
    operation: dict[str, Any] = {
        "summary": summary.split("\n", 1)[0],
        "operationId": route.operation_id,
        "responses": responses,
    }
    if params:
        operation["parameters"] = params
    if route.form is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/x-www-form-urlencoded": {"schema": dict(route.form)}},
        }
    if route.public:
        operation["security"] = []
    return operation


def _path_param(route: Route, name: str) -> dict[str, Any]:
    if name in route.values:
        schema: dict[str, Any] = {"type": "string", "enum": list(route.values[name])}
    else:
        schema = dict(_UUID_SCHEMA)
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _query_params(model: type[BaseModel]) -> list[dict[str, Any]]:
    properties = model.model_json_schema(by_alias=True)["properties"]
    out = []
    for name, info in model.model_fields.items():
        key = info.alias or name
        schema = {k: v for k, v in properties[key].items() if k not in ("title", "description")}
        schema.pop("default", None)
        param = {"name": key, "in": "query", "required": info.is_required(), "schema": schema}
        if info.description:
            param["description"] = info.description
        out.append(param)
    return out


def check_routes(routes: Iterable[Route]) -> None:
    """Fail at start-up, not at the first request, on a handler the document cannot read."""
    for route in routes:
        sig = route.signature
        if sig is not None and set(sig.path) != set(route.path_params):
            raise TypeError(f"{route.path}: path parameters {sig.path} differ from the path")
