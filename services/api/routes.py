"""The management API's route table: each operation's method, path, handler and who may
call it. The same table makes the router (:mod:`services.api.app`) and the OpenAPI
document (:func:`openapi_document`).

Who may call (the document's ``x-leadwire-scope``):

- ``read``: any key that sees the path's workspace (a read or manage key of it, or an
  operator key);
- ``manage``: a manage key that sees it (a read key gets 403);
- ``operator``: an operator's manage key (a workspace's key gets 403).

A key that does not see the path's workspace gets 404, as for a workspace that does not
exist, before any other check: ids of other workspaces cannot be probed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any, Literal

from services.api import handlers as h
from services.api import pipeline as p
from services.api import readouts as r
from services.api import suppressions as sup
from services.api import webhook_options as wo
from services.api.models import ErrorBody
from shared.openapi import Handler, Route, document, signature

Scope = Literal["read", "manage", "operator"]
# (/healthz, /readyz and /metrics are on the ops listener, LEADWIRE_API_OPS_PORT.)
PUBLIC_PATHS = frozenset({"/openapi.json", "/docs"})

_WS = "/v1/workspaces/{workspace_id}"
_HOOK = f"{_WS}/webhooks/{{webhook_id}}"


def _errors(scope: Scope, path: str, has_body: bool, extra: Mapping[int, str]) -> dict[int, str]:
    out = {401: "No API key, or one that is unknown, revoked or expired"}
    if scope != "read" or "{workspace_id}" in path:
        out[403] = (
            "The key may not do this (a read key writing, a workspace key doing an operator's work)"
        )
    if "{" in path:
        out[404] = "No such object, or one of a workspace the key does not see"
    if has_body or extra.get(400):
        out[400] = "Invalid request: errors name each field"
    if has_body:
        out[413] = "Body too large"
        out[415] = "The body is not JSON"
    out[503] = "Postgres unavailable: retry after `Retry-After` seconds"
    out.update(extra)
    return out


def _route(
    method: str,
    path: str,
    operation_id: str,
    handler: Handler,
    scope: Scope,
    *,
    status: int = 200,
    tag: str,
    errors: Mapping[int, str] | None = None,
) -> Route:
    has_body = signature(handler).body is not None
    return Route(
        method,
        path,
        operation_id,
        handler,
        status=status,
        tags=(tag,),
        errors=_errors(scope, path, has_body, errors or {}),
        extensions={"x-leadwire-scope": scope},
    )


_r = _route
_TAKEN = {409: "The name is taken in this workspace"}
_KAFKA = "Postgres or Kafka unavailable: retry after `Retry-After` seconds"

ROUTES: tuple[Route, ...] = (
    _r("get", "/v1/whoami", "whoami", h.whoami, "read", tag="keys"),
    # workspaces
    _r("get", "/v1/workspaces", "listWorkspaces", h.list_workspaces, "read", tag="workspaces"),
    _r(
        "post",
        "/v1/workspaces",
        "createWorkspace",
        h.create_workspace,
        "operator",
        status=201,
        tag="workspaces",
        errors={409: "A workspace of that name exists"},
    ),
    _r("get", _WS, "getWorkspace", h.get_workspace, "read", tag="workspaces"),
    _r("patch", _WS, "updateWorkspace", sup.update_workspace, "manage", tag="workspaces"),
    _r(
        "get",
        f"{_WS}/suppressions",
        "listSuppressions",
        sup.list_suppressions,
        "read",
        tag="suppression",
    ),
    _r(
        "post",
        f"{_WS}/suppressions",
        "addSuppressions",
        sup.add_suppressions,
        "manage",
        tag="suppression",
    ),
    _r(
        "post",
        f"{_WS}/suppressions/remove",
        "removeSuppressions",
        sup.remove_suppressions,
        "manage",
        tag="suppression",
    ),
    _r(
        "post",
        f"{_WS}/disable",
        "disableWorkspace",
        h.disable_workspace,
        "operator",
        tag="workspaces",
    ),
    _r(
        "post",
        f"{_WS}/enable",
        "enableWorkspace",
        h.enable_workspace,
        "operator",
        tag="workspaces",
    ),
    # webhooks
    _r("get", f"{_WS}/webhooks", "listWebhooks", h.list_webhooks, "read", tag="webhooks"),
    _r(
        "post",
        f"{_WS}/webhooks",
        "createWebhook",
        h.create_webhook,
        "manage",
        status=201,
        tag="webhooks",
        errors=_TAKEN,
    ),
    _r("get", _HOOK, "getWebhook", h.get_webhook, "read", tag="webhooks"),
    _r(
        "patch",
        _HOOK,
        "updateWebhook",
        h.update_webhook,
        "manage",
        tag="webhooks",
        errors=_TAKEN,
    ),
    _r("get", f"{_HOOK}/lead-buying", "getLeadBuying", wo.get_lead_buying, "read", tag="webhooks"),
    _r(
        "patch",
        f"{_HOOK}/lead-buying",
        "updateLeadBuying",
        wo.update_lead_buying,
        "manage",
        tag="webhooks",
    ),
    _r(
        "post",
        f"{_HOOK}/disable",
        "disableWebhook",
        h.disable_webhook,
        "manage",
        tag="webhooks",
    ),
    _r("post", f"{_HOOK}/enable", "enableWebhook", h.enable_webhook, "manage", tag="webhooks"),
    _r(
        "post",
        f"{_HOOK}/rotate-secret",
        "rotateWebhookSecret",
        h.rotate_secret,
        "manage",
        tag="webhooks",
        errors={409: "The webhook's auth mode has no secret (none)"},
    ),
    # mappings and templates
    _r("get", f"{_HOOK}/mapping", "getMapping", h.get_mapping, "read", tag="mappings"),
    _r("put", f"{_HOOK}/mapping", "setMapping", h.set_mapping, "manage", tag="mappings"),
    _r("post", f"{_HOOK}/mapping/test", "testMapping", h.test_mapping, "read", tag="mappings"),
    _r("get", "/v1/templates", "listTemplates", h.list_templates, "read", tag="mappings"),
    _r("get", "/v1/templates/{name}", "getTemplate", h.get_template, "read", tag="mappings"),
    # boards and rules
    _r("get", f"{_WS}/boards", "listBoards", h.list_boards, "read", tag="boards"),
    _r(
        "post",
        f"{_WS}/boards",
        "createBoard",
        h.create_board,
        "manage",
        status=201,
        tag="boards",
        errors=_TAKEN,
    ),
    _r("get", f"{_WS}/rules", "listRules", h.list_rules, "read", tag="boards"),
    _r("post", f"{_WS}/rules", "createRule", h.create_rule, "manage", status=201, tag="boards"),
    _r(
        "delete",
        f"{_WS}/rules/{{rule_id}}",
        "deleteRule",
        h.delete_rule,
        "manage",
        tag="boards",
    ),
    # API keys
    _r("get", f"{_WS}/api-keys", "listApiKeys", h.list_api_keys, "read", tag="keys"),
    _r(
        "post",
        f"{_WS}/api-keys",
        "createApiKey",
        h.create_api_key,
        "manage",
        status=201,
        tag="keys",
    ),
    _r("get", f"{_WS}/api-keys/{{key_id}}", "getApiKey", h.get_api_key, "read", tag="keys"),
    _r(
        "delete",
        f"{_WS}/api-keys/{{key_id}}",
        "revokeApiKey",
        h.revoke_api_key,
        "manage",
        tag="keys",
    ),
    # notifications
    _r(
        "get",
        f"{_WS}/notifications",
        "getNotifications",
        p.get_notifications,
        "read",
        tag="notifications",
    ),
    _r(
        "put",
        f"{_WS}/notifications/rules",
        "setNotificationRule",
        p.set_notification_rule,
        "manage",
        tag="notifications",
    ),
    _r(
        "delete",
        f"{_WS}/notifications/rules/{{event}}/{{channel}}",
        "deleteNotificationRule",
        p.delete_notification_rule,
        "manage",
        tag="notifications",
    ),
    _r(
        "put",
        f"{_WS}/notifications/high-priority",
        "setHighPriority",
        p.set_high_priority,
        "manage",
        tag="notifications",
    ),
    _r(
        "delete",
        f"{_WS}/notifications/high-priority",
        "clearHighPriority",
        p.clear_high_priority,
        "manage",
        tag="notifications",
    ),
    _r(
        "post",
        f"{_WS}/notifications/realtime-token",
        "issueRealtimeToken",
        p.issue_realtime_token,
        "manage",
        tag="notifications",
        errors={409: "A token exists and rotate is false"},
    ),
    # archive and replay
    _r(
        "get",
        f"{_WS}/archive",
        "searchArchive",
        p.search_archive,
        "read",
        tag="archive",
        errors={400: "Invalid query"},
    ),
    _r(
        "get",
        f"{_WS}/archive/{{request_id}}",
        "getArchivedRequest",
        p.get_archived,
        "read",
        tag="archive",
    ),
    _r(
        "post",
        f"{_HOOK}/replays",
        "replayWebhook",
        p.replay,
        "manage",
        tag="archive",
        errors={409: "The webhook or its workspace is disabled (a dry run still works)"},
    ),
    # analytics' figures
    _r(
        "get",
        f"{_WS}/analytics",
        "getWorkspaceFigures",
        r.workspace_figures,
        "read",
        tag="analytics",
    ),
    _r(
        "get",
        f"{_HOOK}/analytics",
        "getWebhookFigures",
        r.webhook_figures,
        "read",
        tag="analytics",
    ),
    _r(
        "get", f"{_WS}/vendors", "getVendorScorecards", r.vendor_scorecards, "read", tag="analytics"
    ),
    # dead letters
    _r(
        "get",
        f"{_WS}/deadletters",
        "listDeadLetters",
        r.list_deadletters,
        "read",
        tag="deadletters",
        errors={400: "Invalid query", 503: _KAFKA},
    ),
    _r(
        "get",
        f"{_WS}/deadletters/{{deadletter_id}}",
        "getDeadLetter",
        r.get_deadletter,
        "read",
        tag="deadletters",
        errors={503: _KAFKA},
    ),
    _r(
        "post",
        f"{_WS}/deadletters/retry",
        "retryDeadLetters",
        r.retry_deadletters,
        "manage",
        tag="deadletters",
        errors={503: _KAFKA},
    ),
    # contacts
    _r(
        "get",
        f"{_WS}/contacts/{{contact_id}}",
        "getContact",
        p.get_contact,
        "read",
        tag="contacts",
    ),
    _r(
        "get",
        f"{_WS}/duplicates",
        "listDuplicates",
        p.list_duplicates,
        "read",
        tag="contacts",
        errors={400: "Invalid query"},
    ),
)


INFO = {
    "title": "leadwire management API",
    "version": "1",
    "description": (
        "What the `leadwire` CLI offers for a workspace, over JSON: webhooks, mappings, "
        "boards and rules, notification rules, API keys, the archive and replay. Send an "
        "API key as `Authorization: Bearer <key>` (`leadwire apikey create`). A key sees "
        "one workspace (an operator key: every one); another workspace's objects answer "
        "404. A `read` key reads; a `manage` key also changes. Errors answer "
        '`{"success": false, "errors": [{"field", "code", "message"}]}`.'
    ),
}
SECURITY = {
    "type": "http",
    "scheme": "bearer",
    "description": "An API key: `leadwire apikey create --workspace W --scope read|manage`",
}


def scope_of(route: Route) -> Scope:
    scope: Scope = route.extensions["x-leadwire-scope"]
    return scope


@cache
def openapi_document() -> dict[str, Any]:
    return document(ROUTES, info=INFO, error_model=ErrorBody, security_scheme=SECURITY)


def route_table(routes: Iterable[Route] = ROUTES) -> list[tuple[str, str, str]]:
    """(method, path, who may call) of every route: the table of docs/api.md."""
    return [(r.method.upper(), r.path, scope_of(r)) for r in routes]
