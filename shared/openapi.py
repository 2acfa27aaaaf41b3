"""OpenAPI 3.1 documents generated from typed handlers, and a plain HTML page that
renders one (no CDN, no scripts).

A :class:`Route` names a typed handler: ``async def create_x(workspace_id: uuid.UUID,
body: XCreate, *, deps...) -> XModel``. Its signature is the contract, read once here
(:func:`signature`) for both sides: the service's router parses the path parameters, the
query (a model argument named ``query``) and the JSON body (a model argument named
``body``) with it and serializes the returned model; :func:`document` writes the same
parameters, models and answers into the document, the schemas by pydantic. So the
document cannot drift from the code. Keyword-only arguments are dependencies, not part of
the contract.
"""

from __future__ import annotations

import enum
import html
import inspect
import typing
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import orjson
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import models_json_schema

REF = "#/components/schemas/{model}"
Handler = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class Signature:
    """What a typed handler takes and answers."""

    path: Mapping[str, Any]  # path parameter -> its type (uuid.UUID, an enum, str)
    query: type[BaseModel] | None
    body: type[BaseModel] | None
    response: type[BaseModel]
    dependencies: tuple[str, ...]


def signature(handler: Handler) -> Signature:
    hints = typing.get_type_hints(handler)
    path: dict[str, Any] = {}
    query = body = None
    deps: list[str] = []
    for name, param in inspect.signature(handler).parameters.items():
        hint = hints[name]
        if param.kind is param.KEYWORD_ONLY:
            deps.append(name)
        elif name in ("query", "body"):
            if not (isinstance(hint, type) and issubclass(hint, BaseModel)):
                raise TypeError(f"{handler.__name__}: {name} must be a pydantic model")
            query, body = (hint, body) if name == "query" else (query, hint)
        elif (
            hint is uuid.UUID
            or hint is str
            or (isinstance(hint, type) and issubclass(hint, enum.Enum))
        ):
            path[name] = hint
        else:
            raise TypeError(f"{handler.__name__}: {name} is neither a path parameter nor a model")
    response = hints["return"]
    if not (isinstance(response, type) and issubclass(response, BaseModel)):
        raise TypeError(f"{handler.__name__} must return one pydantic model")
    return Signature(path=path, query=query, body=body, response=response, dependencies=tuple(deps))


@dataclass(frozen=True)
class Route:
    """An operation: ``method`` and ``path`` served by a typed ``handler``."""

    method: str
    path: str
    operation_id: str
    handler: Handler
    status: int = 200
    summary: str = ""  # default: the handler's first docstring line
    description: str = ""  # default: the rest of the handler's docstring
    # Other answers than ``status`` (error bodies), with what each means.
    errors: Mapping[int, str] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    public: bool = False  # no credential needed
    extensions: Mapping[str, Any] = field(default_factory=dict)  # x-... keys

    @cached_property
    def signature(self) -> Signature:
        return signature(self.handler)

    @property
    def path_params(self) -> tuple[str, ...]:
        return tuple(part[1:-1] for part in self.path.split("/") if part.startswith("{"))


def check_routes(routes: Iterable[Route]) -> None:
    """Fail at start-up, not at the first request, on a handler the document cannot read."""
    seen: set[tuple[str, str]] = set()
    for route in routes:
        if set(route.signature.path) != set(route.path_params):
            raise TypeError(f"{route.path}: path parameters differ from {route.handler.__name__}'s")
        if (route.method, route.path) in seen:
            raise TypeError(f"{route.method.upper()} {route.path} twice")
        seen.add((route.method, route.path))


def ref(model: type[BaseModel]) -> dict[str, Any]:
    return {"$ref": REF.format(model=model.__name__)}


def document(
    routes: Iterable[Route],
    *,
    info: Mapping[str, Any],
    error_model: type[BaseModel],
    security_scheme: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes``. Error answers use ``error_model``; routes
    that are not public require ``security_scheme`` (named ``apiKey``)."""
    routes = list(routes)
    models: list[tuple[type[BaseModel], Any]] = [(error_model, "serialization")]
    for r in routes:
        sig = r.signature
        models.append((sig.response, "serialization"))
        if sig.body is not None:
            models.append((sig.body, "validation"))
    _, top = models_json_schema(list(dict.fromkeys(models)), ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        paths.setdefault(r.path, {})[r.method] = _operation(r, error_model, top["$defs"])
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": dict(info),
        "paths": paths,
        "components": {"schemas": top["$defs"]},
    }
    if security_scheme is not None:
        doc["components"]["securitySchemes"] = {"apiKey": dict(security_scheme)}
    return doc


def _answer(description: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": dict(schema)}}}


def _operation(route: Route, error_model: type[BaseModel], defs: dict[str, Any]) -> dict[str, Any]:
    sig = route.signature
    doc = inspect.getdoc(route.handler) or ""
    first, _, rest = doc.partition("\n")
    params = [_path_param(name, sig.path[name]) for name in route.path_params]
    if sig.query is not None:
        params += _query_params(sig.query)
    responses = {str(route.status): _answer(route.summary or first, ref(sig.response))}
    for status, meaning in sorted(route.errors.items()):
        responses[str(status)] = _answer(meaning, ref(error_model))
    operation: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary or first,
        "responses": responses,
    }
    description = route.description or rest.strip()
    if description:
        operation["description"] = description
    if route.tags:
        operation["tags"] = list(route.tags)
    if params:
        operation["parameters"] = params
    if sig.body is not None:
        body_name = _defined_name(sig.body, defs)
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": REF.format(model=body_name)}}},
        }
    if not route.public:
        operation["security"] = [{"apiKey": []}]
    operation.update(route.extensions)
    return operation


def _defined_name(model: type[BaseModel], defs: Mapping[str, Any]) -> str:
    """A model used both as a body and an answer may be split in two schemas."""
    for name in (f"{model.__name__}-Input", model.__name__):
        if name in defs:
            return name
    raise KeyError(model.__name__)


def _path_param(name: str, hint: Any) -> dict[str, Any]:
    schema = TypeAdapter(hint).json_schema()
    schema.pop("title", None)
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _query_params(model: type[BaseModel]) -> list[dict[str, Any]]:
    top = model.model_json_schema(by_alias=True, ref_template=REF)
    properties = top["properties"]
    out = []
    for name, info in model.model_fields.items():
        key = info.alias or name
        schema = {k: v for k, v in properties[key].items() if k not in ("title", "description")}
        schema.pop("default", None)
        # A parameter left out is absent, never null: ``X | None`` is X in a query.
        options = [o for o in schema.get("anyOf", []) if o != {"type": "null"}]
        if "anyOf" in schema and len(options) == 1:
            del schema["anyOf"]
            schema.update(options[0])
        param = {"name": key, "in": "query", "required": info.is_required(), "schema": schema}
        if info.description:
            param["description"] = info.description
        out.append(param)
    return out


# --- the HTML page --------------------------------------------------------------------


def _schema_text(schema: Any) -> str:
    return orjson.dumps(schema, option=orjson.OPT_INDENT_2).decode()


def _operation_html(path: str, method: str, op: dict[str, Any]) -> list[str]:
    e = html.escape
    parts = [f"<h2><code>{e(method.upper())} {e(path)}</code> — {e(op.get('summary', ''))}</h2>"]
    if op.get("description"):
        parts.append(f"<p>{e(op['description'])}</p>")
    params = op.get("parameters", [])
    if params:
        parts.append(
            "<table><tr><th>parameter</th><th>in</th><th>required</th><th>description</th></tr>"
        )
        for p in params:
            parts.append(
                f"<tr><td><code>{e(p['name'])}</code></td><td>{e(p['in'])}</td>"
                f"<td>{'yes' if p.get('required') else 'no'}</td>"
                f"<td>{e(p.get('description', ''))}</td></tr>"
            )
        parts.append("</table>")
    body = op.get("requestBody")
    if body:
        types = ", ".join(e(t) for t in body["content"])
        schema = next(iter(body["content"].values())).get("schema", {})
        target = schema.get("$ref", "").rsplit("/", 1)[-1]
        link = f" (<a href='#{e(target)}'>{e(target)}</a>)" if target else ""
        parts.append(f"<p>Request body: {types}{link}. {e(body.get('description', ''))}</p>")
    parts.append("<table><tr><th>status</th><th>meaning</th></tr>")
    for code, resp in op["responses"].items():
        parts.append(f"<tr><td>{e(code)}</td><td>{e(resp['description'])}</td></tr>")
    parts.append("</table>")
    return parts


def render_html(spec: dict[str, Any], *, preface: str = "") -> str:
    """The document as one readable page; ``preface`` is HTML put before the operations."""
    e = html.escape
    info = spec["info"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{e(info['title'])}</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;"
        "padding:0 1rem;line-height:1.45}code,pre{background:#f4f4f4;padding:.1rem .3rem}"
        "pre{padding:.6rem;overflow:auto}h2{border-top:1px solid #ddd;padding-top:1rem}"
        "table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.2rem .5rem;"
        "text-align:left;vertical-align:top}</style>",
        "</head><body>",
        f"<h1>{e(info['title'])} <small>{e(info['version'])}</small></h1>",
        f"<p>{e(info.get('description', ''))}</p>",
        "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a> (OpenAPI 3.1)</p>",
        preface,
    ]
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            parts += _operation_html(path, method, op)
    parts.append("<h2>Schemas</h2>")
    for name, schema in spec["components"]["schemas"].items():
        parts.append(f"<h3 id='{e(name)}'>{e(name)}</h3><pre>{e(_schema_text(schema))}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)
