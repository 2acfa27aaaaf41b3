"""``leadwire duplicates list`` and ``leadwire contacts show``: what dedupe left for a person.

A possible duplicate is a pair of contacts that share a person's keys: a lead's CRM id,
phone or email already belonged to another contact than the one the lead went to. The
processor never merges them by itself; these commands show the pairs to decide on.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import asyncpg
import typer

from cli import repository as repo
from cli.context import run_db
from cli.output import CliError, JsonFlag, emit, fail, table

duplicates_app = typer.Typer(
    help="Possible duplicate contacts found by dedupe.", no_args_is_help=True
)
contacts_app = typer.Typer(help="Contacts made from leads.", no_args_is_help=True)

WorkspaceOpt = Annotated[str, typer.Option("--workspace", "-W", help="Workspace name or id.")]


def register(app: typer.Typer) -> None:
    app.add_typer(duplicates_app, name="duplicates")
    app.add_typer(contacts_app, name="contacts")


def _contact(row: asyncpg.Record, prefix: str) -> dict[str, Any]:
    return {
        "id": row[f"{prefix}id"],
        "crm_id": row[f"{prefix}crm_id"],
        "phone": row[f"{prefix}phone"],
        "email": row[f"{prefix}email"],
        "name": " ".join(p for p in (row[f"{prefix}first_name"], row[f"{prefix}last_name"]) if p)
        or None,
    }


@duplicates_app.command("list")
def list_duplicates(
    workspace: WorkspaceOpt,
    limit: Annotated[int, typer.Option(help="Most pairs to show, newest first.")] = 100,
    as_json: JsonFlag = False,
) -> None:
    """Pairs of contacts that share a CRM id, phone or email (newest first)."""

    async def work(conn: asyncpg.Connection) -> list[dict[str, Any]]:
        ws = (await repo.get_workspace(conn, workspace))["id"]
        rows = await conn.fetch(
            """SELECT d.id AS pair_id, d.key_type, d.request_id, d.created_at,
                      a.id AS a_id, a.crm_id AS a_crm_id, a.phone AS a_phone, a.email AS a_email,
                      a.first_name AS a_first_name, a.last_name AS a_last_name,
                      b.id AS b_id, b.crm_id AS b_crm_id, b.phone AS b_phone, b.email AS b_email,
                      b.first_name AS b_first_name, b.last_name AS b_last_name
                 FROM possible_duplicates d
                 JOIN contacts a ON a.id = d.contact_id
                 JOIN contacts b ON b.id = d.other_contact_id
                WHERE d.workspace_id = $1
                ORDER BY d.created_at DESC, d.id DESC
                LIMIT $2""",
            ws,
            limit,
        )
        return [
            {
                "pair_id": r["pair_id"],
                "key_type": r["key_type"],
                # The value the lead carried, which stays with the other contact.
                "shared_value": r[f"b_{r['key_type']}"],
                "request_id": r["request_id"],
                "created_at": r["created_at"],
                "contact": _contact(r, "a_"),
                "other_contact": _contact(r, "b_"),
            }
            for r in rows
        ]

    pairs = run_db(work, as_json=as_json)

    def text(items: list[dict[str, Any]]) -> str:
        return table(
            [
                {
                    "contact": p["contact"]["id"],
                    "other": p["other_contact"]["id"],
                    "key": p["key_type"],
                    "shared": p["shared_value"],
                    "found": p["created_at"].strftime("%Y-%m-%d %H:%M:%S"),
                }
                for p in items
            ],
            ["contact", "other", "key", "shared", "found"],
        )

    emit(
        {"workspace": workspace, "count": len(pairs), "pairs": pairs} if as_json else pairs,
        as_json=as_json,
        text=text,
    )


@contacts_app.command("show")
def show_contact(
    contact_id: Annotated[str, typer.Argument(help="Contact id.")],
    as_json: JsonFlag = False,
) -> None:
    """One contact: keys, fields, board, its leads and possible duplicates."""
    try:
        cid = uuid.UUID(contact_id)
    except ValueError:
        fail(CliError(f"{contact_id!r} is not a contact id (a UUID)"), as_json=as_json)

    async def work(conn: asyncpg.Connection) -> dict[str, Any]:
        row = await conn.fetchrow(
            """SELECT c.*, b.name AS board_name FROM contacts c
                 LEFT JOIN boards b ON b.id = c.board_id WHERE c.id = $1""",
            cid,
        )
        if row is None:
            raise CliError(
                f"no contact {contact_id}", hint="find ids with `leadwire duplicates list`"
            )
        leads = await conn.fetch(
            """SELECT id, request_id, webhook_id, source, status, product_interest, created_at
                 FROM leads WHERE contact_id = $1 ORDER BY created_at DESC LIMIT 50""",
            cid,
        )
        dups = await conn.fetch(
            """SELECT CASE WHEN contact_id = $1 THEN other_contact_id ELSE contact_id END AS other,
                      key_type, created_at
                 FROM possible_duplicates WHERE contact_id = $1 OR other_contact_id = $1
                 ORDER BY created_at DESC""",
            cid,
        )
        return {
            **{
                k: row[k]
                for k in (
                    "id",
                    "workspace_id",
                    "crm_id",
                    "phone",
                    "email",
                    "first_name",
                    "last_name",
                    "product",
                    "lead_status",
                    "custom",
                    "board_id",
                    "board_name",
                    "created_at",
                    "updated_at",
                )
            },
            "leads": [dict(r) for r in leads],
            "possible_duplicates": [dict(r) for r in dups],
        }

    contact = run_db(work, as_json=as_json)

    def text(c: dict[str, Any]) -> str:
        lines = [
            f"{k}: {c[k]}"
            for k in (
                "id",
                "crm_id",
                "phone",
                "email",
                "first_name",
                "last_name",
                "product",
                "lead_status",
                "board_name",
            )
        ]
        lines.append(f"custom: {c['custom']}")
        lines.append(f"leads: {len(c['leads'])}")
        lines.append(f"possible duplicates: {len(c['possible_duplicates'])}")
        return "\n".join(lines)

    emit(contact, as_json=as_json, text=text)
