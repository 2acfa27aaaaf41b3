"""``leadwire rule add|list|remove``: board rules.

Rules of a workspace are evaluated in (priority, created_at) order; the first rule whose
webhook (when set) and every ``--when`` condition match sets the contact's board.
Conditions are stored in ``board_rules.conditions`` as ``[{"field", "op", "value"}]``:
``--when product=Solar`` is ``{"field": "product", "op": "eq", "value": "Solar"}``,
``--when lead_status~in:new,hot`` is ``{"op": "in", "value": ["new", "hot"]}``. A field is
a lead field (product, lead_status, ...) or a custom field's name.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import asyncpg
import typer

from cli import repository as repo
from cli.context import run_db
from cli.options import Workspace, WorkspaceFilter
from cli.output import CliError, JsonFlag, emit, table
from shared.mapping import CUSTOM_PREFIX

rule_app = typer.Typer(
    name="rule",
    help="Board rules: which board a contact lands on, by webhook and field values.",
    no_args_is_help=True,
)

_FIELD = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-.]{0,99}$")
MAX_VALUE = 200
MAX_IN_VALUES = 100
_WHEN_HINT = "write --when FIELD=VALUE (equals) or --when FIELD~in:A,B (one of)"


def register(app: typer.Typer) -> None:
    app.add_typer(rule_app, name="rule")


def parse_condition(text: str) -> dict[str, Any]:
    """One ``--when`` into ``{"field", "op", "value"}``; CliError (usage) when malformed."""
    eq, tilde = text.find("="), text.find("~")
    if eq < 0 and tilde < 0:
        raise CliError(f"cannot read the condition {text!r}", hint=_WHEN_HINT, exit_code=2)
    if tilde >= 0 and (eq < 0 or tilde < eq):
        field, rest = text[:tilde], text[tilde + 1 :]
        op, sep, raw = rest.partition(":")
        op = op.strip().lower()
        if not sep or op not in ("in", "eq"):
            raise CliError(
                f"unknown operator in {text!r}: after '~' comes in:A,B (or eq:VALUE)",
                hint=_WHEN_HINT,
                exit_code=2,
            )
    else:
        field, raw, op = text[:eq], text[eq + 1 :], "eq"
    field = field.strip()
    if field.startswith(CUSTOM_PREFIX):
        field = field[len(CUSTOM_PREFIX) :]
    if field == "webhook":
        raise CliError("match a webhook with --webhook, not --when", exit_code=2)
    if not _FIELD.match(field):
        raise CliError(
            f"bad field name {field!r} in {text!r}",
            hint="a field is a lead field (product, lead_status, ...) or a custom field's name",
            exit_code=2,
        )
    value: Any
    if op == "in":
        value = [v.strip() for v in raw.split(",")]
        if not raw.strip() or any(not v for v in value):
            raise CliError(f"empty value in {text!r}", hint="write FIELD~in:A,B,C", exit_code=2)
        if len(value) > MAX_IN_VALUES:
            raise CliError(f"at most {MAX_IN_VALUES} values in one condition", exit_code=2)
        too_long = any(len(v) > MAX_VALUE for v in value)
    else:
        value = raw.strip()
        if not value:
            raise CliError(f"empty value in {text!r}", hint=_WHEN_HINT, exit_code=2)
        too_long = len(value) > MAX_VALUE
    if too_long:
        raise CliError(f"a condition value has at most {MAX_VALUE} characters", exit_code=2)
    return {"field": field, "op": op, "value": value}


def format_conditions(conditions: list[dict[str, Any]]) -> str:
    parts = []
    for c in conditions or []:
        if c.get("op") == "in":
            parts.append(f"{c['field']} in [{', '.join(map(str, c['value']))}]")
        else:
            parts.append(f"{c['field']} = {c['value']}")
    return " and ".join(parts) or "(always)"


def _describe(r: dict[str, Any]) -> str:
    webhook = f"webhook {r['webhook']} and " if r.get("webhook") else ""
    return (
        f"rule {r['id']} (priority {r['priority']}): {webhook}"
        f"{format_conditions(r['conditions'])} -> board {r['board']}"
    )


@rule_app.command("add")
def add(
    workspace: Workspace,
    board: Annotated[str, typer.Option("--board", "-b", help="Board name or id to route to.")],
    webhook: Annotated[
        str | None, typer.Option("--webhook", help="Only leads from this webhook (name or id).")
    ] = None,
    when: Annotated[
        list[str] | None,
        typer.Option(
            "--when", help="FIELD=VALUE or FIELD~in:A,B; repeat for more (all must match)."
        ),
    ] = None,
    priority: Annotated[int, typer.Option("--priority", "-p", help="Lower runs first.")] = 100,
    as_json: JsonFlag = False,
) -> None:
    """Add a board rule."""

    async def work(conn: asyncpg.Connection) -> dict[str, Any]:
        conditions = [parse_condition(w) for w in when or []]
        if not -1_000_000 <= priority <= 1_000_000:
            raise CliError("--priority is between -1000000 and 1000000", exit_code=2)
        ws = await repo.get_workspace(conn, workspace)
        target = await repo.get_board(conn, ws["id"], board)
        webhook_id = None
        if webhook is not None:
            hook = await repo.get_webhook(conn, webhook, str(ws["id"]))
            if hook["workspace_id"] != ws["id"]:
                raise CliError(
                    f"webhook {webhook!r} belongs to workspace {hook['workspace']!r}, not {ws['name']!r}"
                )
            webhook_id = hook["id"]
        return await repo.add_rule(
            conn,
            workspace_id=ws["id"],
            board_id=target["id"],
            webhook_id=webhook_id,
            conditions=conditions,
            priority=priority,
        )

    emit(run_db(work, as_json=as_json), as_json=as_json, text=lambda r: f"added {_describe(r)}")


@rule_app.command("list")
def list_(
    workspace: WorkspaceFilter = None,
    as_json: JsonFlag = False,
) -> None:
    """List board rules in evaluation order."""

    async def work(conn: asyncpg.Connection) -> list[dict[str, Any]]:
        ws_id = await repo.workspace_filter(conn, workspace)
        return await repo.list_rules(conn, ws_id)

    def text(rows: list[dict[str, Any]]) -> str:
        shown = [
            {**r, "when": format_conditions(r["conditions"]), "webhook": r["webhook"] or "(any)"}
            for r in rows
        ]
        return table(shown, ["workspace", "priority", "id", "webhook", "when", "board"])

    emit(run_db(work, as_json=as_json), as_json=as_json, text=text)


@rule_app.command("remove")
def remove(
    rule_id: Annotated[str, typer.Argument(help="The rule's id (see `leadwire rule list`).")],
    as_json: JsonFlag = False,
) -> None:
    """Remove a board rule."""

    async def work(conn: asyncpg.Connection) -> dict[str, Any]:
        ident = repo.as_uuid(rule_id)
        if ident is None:
            raise CliError(
                f"{rule_id!r} is not a rule id", hint="see `leadwire rule list`", exit_code=2
            )
        return await repo.remove_rule(conn, ident)

    emit(run_db(work, as_json=as_json), as_json=as_json, text=lambda r: f"removed {_describe(r)}")
