"""``leadwire duplicates list`` and ``leadwire contacts show``: what dedupe left for a person
(the pairs of contacts that share a person's keys, to decide on a merge). The data comes
from :mod:`services.processor.admin`."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import asyncpg
import typer

from cli import repository as repo
from cli.context import run_db
from cli.options import Workspace
from cli.output import CliError, JsonFlag, emit, fail, table
from services.processor import admin
from shared.mapping import LEAD_FIELDS

duplicates_app = typer.Typer(
    help="Possible duplicate contacts found by dedupe.", no_args_is_help=True
)
contacts_app = typer.Typer(help="Contacts made from leads.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(duplicates_app, name="duplicates")
    app.add_typer(contacts_app, name="contacts")


@duplicates_app.command("list")
def list_duplicates(
    workspace: Workspace,
    limit: Annotated[int, typer.Option(help="Most pairs to show, newest first.")] = 100,
    as_json: JsonFlag = False,
) -> None:
    """Pairs of contacts that share a CRM id, phone or email (newest first)."""

    async def work(conn: asyncpg.Connection) -> list[dict[str, Any]]:
        ws = (await repo.get_workspace(conn, workspace))["id"]
        return await admin.possible_duplicates(conn, ws, limit=limit)

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
        found = await admin.contact(conn, cid)
        if found is None:
            raise CliError(
                f"no contact {contact_id}", hint="find ids with `leadwire duplicates list`"
            )
        return found

    contact = run_db(work, as_json=as_json)

    def text(c: dict[str, Any]) -> str:
        lines = [f"{k}: {c[k]}" for k in ("id", *LEAD_FIELDS, "board_name")]
        lines.append(f"custom: {c['custom']}")
        lines.append(f"leads: {len(c['leads'])}")
        lines.append(f"possible duplicates: {len(c['possible_duplicates'])}")
        return "\n".join(lines)

    emit(contact, as_json=as_json, text=text)
