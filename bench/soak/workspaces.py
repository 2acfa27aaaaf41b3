"""The soak's configuration, made through the CLI: two workspaces, five webhooks (one per
vendor shape), a board rule, an email rule for every lead and a high-priority SMS rule."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from bench.loadgen import Target
from bench.stack import LaunchedStack, create_webhook, email_rule, run_cli


@dataclass
class WorkspacePlan:
    name: str
    emails: tuple[str, ...]
    high_priority: tuple[str, str]  # (field, value)
    sms: str
    webhooks: list[tuple[str, str, str, float]]  # (name, template, auth, weight)
    board: tuple[str, str, str] | None = None  # (board, field, value)
    id: str = ""


def plan_workspaces(run_id: str) -> list[WorkspacePlan]:
    return [
        WorkspacePlan(
            name=f"soak-{run_id}-acme",
            emails=("sales@acme.example", "ops@acme.example"),
            high_priority=("product", "Solar"),
            sms="+16262150100",
            webhooks=[
                ("site", "generic", "standard", 0.30),
                ("leadconduit", "leadconduit", "none", 0.20),
                ("zapier", "zapier", "none", 0.15),
            ],
            board=("Solar leads", "product", "Solar"),
        ),
        WorkspacePlan(
            name=f"soak-{run_id}-globex",
            emails=("leads@globex.example",),
            high_priority=("urgency", "hot"),
            sms="+16262150101",
            webhooks=[
                ("facebook", "facebook", "github", 0.20),
                ("buyerlink", "buyerlink", "standard", 0.15),
            ],
        ),
    ]


def _webhooks(env: dict[str, str], plan: WorkspacePlan) -> list[Target]:
    targets = []
    for name, template, auth, weight in plan.webhooks:
        doc = create_webhook(env, plan.name, name, template, auth)
        targets.append(
            Target(
                name=name,
                id=doc["id"],
                url=doc["url"],
                vendor=template,
                auth=auth,
                secret=doc.get("secret"),
                weight=weight,
                workspace=plan.name,
                workspace_id=plan.id,
            )
        )
    return targets


def _rules(env: dict[str, str], plan: WorkspacePlan) -> None:
    if plan.board:
        board, fld, value = plan.board
        run_cli(env, "board", "create", board, "--workspace", plan.name)
        run_cli(
            env,
            "rule",
            "add",
            "--workspace",
            plan.name,
            "--board",
            board,
            "--when",
            f"{fld}={value}",
        )
    email_rule(env, plan.name, plan.emails)
    fld, value = plan.high_priority
    run_cli(
        env,
        "notify",
        "high-priority",
        "--workspace",
        plan.name,
        "--when",
        f"{fld}={value}",
        "--sms",
        plan.sms,
    )


def _workspace(env: dict[str, str], plan: WorkspacePlan) -> list[Target]:
    ws = run_cli(env, "workspace", "create", plan.name, "--default-region", "US")
    plan.id = ws["id"]
    targets = _webhooks(env, plan)
    _rules(env, plan)
    return targets


async def configure(stack: LaunchedStack, plans: list[WorkspacePlan]) -> list[Target]:
    """Every planned workspace at once (a thread each); the webhooks to send to."""
    env = stack.cli_env()
    results = await asyncio.gather(*(asyncio.to_thread(_workspace, env, p) for p in plans))
    return [t for group in results for t in group]
