"""``leadwire rule add|list|remove``: board rules.

Rules of a workspace are evaluated in (priority, created_at) order; the first rule whose
webhook (when set) and every ``--when`` condition match sets the contact's board.
Conditions are stored in ``board_rules.conditions`` as ``[{"field", "op", "value"}]``:
``--when product=Solar`` is ``{"field": "product", "op": "eq", "value": "Solar"}``,
``--when lead_status~in:new,hot`` is ``{"op": "in", "value": ["new", "hot"]}``. A field is
a lead field (product, lead_status, ...) or a custom field's name.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cli.context import run_admin
from cli.options import Workspace, WorkspaceFilter, object_id
from cli.output import CliError, JsonFlag, emit, table
from services.api import admin

rule_app = typer.Typer(
    name="rule",
    help="Board rules: which board a contact lands on, by webhook and field values.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(rule_app, name="rule")


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

    async def work(repo: admin.Repository) -> dict[str, Any]:
        conditions = [admin.checks.parse_condition(w) for w in when or []]
        admin.checks.check_priority(priority, label="--priority")
        ws = await admin.find_workspace(repo, workspace)
        target = await admin.find_board(repo, ws["id"], board)
        webhook_id = None
        if webhook is not None:
            hook = await admin.find_webhook(repo, webhook, str(ws["id"]))
            if hook["workspace_id"] != ws["id"]:
                raise CliError(
                    f"webhook {webhook!r} belongs to workspace {hook['workspace']!r}, not {ws['name']!r}"
                )
            webhook_id = hook["id"]
        return await admin.add_rule(
            repo,
            ws["id"],
            board_id=target["id"],
            webhook_id=webhook_id,
            conditions=conditions,
            priority=priority,
        )

    emit(run_admin(work, as_json=as_json), as_json=as_json, text=lambda r: f"added {_describe(r)}")


@rule_app.command("list")
def list_(
    workspace: WorkspaceFilter = None,
    as_json: JsonFlag = False,
) -> None:
    """List board rules in evaluation order."""

    async def work(repo: admin.Repository) -> list[dict[str, Any]]:
        return await admin.list_rules(repo, await admin.workspace_filter(repo, workspace))

    def text(rows: list[dict[str, Any]]) -> str:
        shown = [
            {**r, "when": format_conditions(r["conditions"]), "webhook": r["webhook"] or "(any)"}
            for r in rows
        ]
        return table(shown, ["workspace", "priority", "id", "webhook", "when", "board"])

    emit(run_admin(work, as_json=as_json), as_json=as_json, text=text)


@rule_app.command("remove")
def remove(
    rule_id: Annotated[str, typer.Argument(help="The rule's id (see `leadwire rule list`).")],
    as_json: JsonFlag = False,
) -> None:
    """Remove a board rule."""

    async def work(repo: admin.Repository) -> dict[str, Any]:
        return await admin.remove_rule(repo, object_id(rule_id, "rule", "rule list"))

    emit(
        run_admin(work, as_json=as_json), as_json=as_json, text=lambda r: f"removed {_describe(r)}"
    )
