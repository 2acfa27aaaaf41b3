"""``leadwire suppress add|import|list|remove``: a workspace's suppression list (do not
contact). Values are normalized (E.164 in the workspace's region; NFKC, lowercased email)
and stored as sha256 digests, never as given (see docs/suppression.md). The data comes from
:mod:`services.processor.admin`."""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import asyncpg
import typer

from cli import repository as repo
from cli.context import run_db
from cli.options import Workspace
from cli.output import CliError, JsonFlag, emit, fail, progress_bar, table
from services.processor import admin

suppress_app = typer.Typer(
    help="The suppression list: phones and emails never to contact.", no_args_is_help=True
)

Phone = Annotated[str | None, typer.Option("--phone", help="A phone number.")]
Email = Annotated[str | None, typer.Option("--email", help="An email address.")]


def register(app: typer.Typer) -> None:
    app.add_typer(suppress_app, name="suppress")


def _one(phone: str | None, email: str | None, as_json: bool) -> list[tuple[str, str]]:
    if (phone is None) == (email is None):
        fail(CliError("give one of --phone or --email", exit_code=2), as_json=as_json)
    return [("phone", phone)] if phone is not None else [("email", email or "")]


def _result_text(r: dict[str, Any]) -> str:
    lines = [
        f"read {r['read']}, added {r['added']}, already on the list {r['already']}, "
        f"invalid {r['invalid']}"
    ]
    lines += [f"  line {e['line']}: {e['field']} {e['code']}" for e in r["errors"]]
    if "seconds" in r:
        lines.append(f"in {r['seconds']:.2f} s")
    return "\n".join(lines)


@suppress_app.command("add")
def add(
    workspace: Workspace, phone: Phone = None, email: Email = None, as_json: JsonFlag = False
) -> None:
    """Put one phone or email on the workspace's suppression list."""
    rows = _one(phone, email, as_json)

    async def work(conn: asyncpg.Connection) -> dict[str, Any]:
        ws = (await repo.get_workspace(conn, workspace))["id"]
        result = await admin.suppress(conn, ws, rows, source="cli")
        if result.invalid:
            e = result.errors[0]
            raise CliError(f"not a valid {e['field']} ({e['code']})", exit_code=2)
        return {"workspace": workspace, **result.as_dict()}

    emit(
        run_db(work, as_json=as_json),
        as_json=as_json,
        text=lambda r: (
            f"{rows[0][0]} suppressed" if r["added"] else f"{rows[0][0]} was already suppressed"
        ),
    )


def read_csv(path: Path) -> Iterator[tuple[str, str]]:
    """(kind, value) rows of a CSV file: with a header, its ``phone`` and ``email``
    columns (others ignored); without one, each cell, an email when it holds an @."""
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        first = next(reader, None)
        if first is None:
            return
        names = [c.strip().lower() for c in first]
        if {"phone", "email"} & set(names):
            columns = [(i, n) for i, n in enumerate(names) if n in ("phone", "email")]
            rows: Iterator[list[str]] = reader
        else:
            columns = []
            rows = _chain(first, reader)
        for row in rows:
            if columns:
                for i, kind in columns:
                    if i < len(row) and row[i].strip():
                        yield kind, row[i]
            else:
                for cell in row:
                    if cell.strip():
                        yield ("email" if "@" in cell else "phone"), cell


def _chain(first: list[str], rest: Iterator[list[str]]) -> Iterator[list[str]]:
    yield first
    yield from rest


def _count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


@suppress_app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="A CSV file: phone and/or email columns.")],
    workspace: Workspace,
    as_json: JsonFlag = False,
) -> None:
    """Put every phone and email of a CSV file on the suppression list (a re-run adds
    nothing)."""
    if not file.is_file():
        fail(CliError(f"no file {file}", exit_code=2), as_json=as_json)

    async def work(conn: asyncpg.Connection) -> dict[str, Any]:
        ws = (await repo.get_workspace(conn, workspace))["id"]
        started = time.perf_counter()
        with progress_bar(enabled=not as_json) as bar:
            task = bar.add_task("importing", total=_count_lines(file))
            try:
                result = await admin.suppress(
                    conn,
                    ws,
                    read_csv(file),
                    source=f"import:{os.path.basename(file)}",
                    on_progress=lambda n: bar.advance(task, n),
                )
            except (UnicodeDecodeError, csv.Error) as exc:
                raise CliError(f"{file} is not a readable CSV file ({exc})", exit_code=2) from None
        seconds = round(time.perf_counter() - started, 3)
        return {"workspace": workspace, "file": str(file), **result.as_dict(), "seconds": seconds}

    emit(run_db(work, as_json=as_json), as_json=as_json, text=_result_text)


@suppress_app.command("list")
def list_(
    workspace: Workspace,
    phone: Phone = None,
    email: Email = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Most entries to show.")] = 100,
    offset: Annotated[int, typer.Option(min=0, help="Entries to skip (paging).")] = 0,
    as_json: JsonFlag = False,
) -> None:
    """The list's entries, newest first (kind, sha256, source, time); with --phone or
    --email, whether that one is on it."""
    one = _one(phone, email, as_json)[0] if phone is not None or email is not None else None

    async def work(conn: asyncpg.Connection) -> dict[str, Any]:
        ws = (await repo.get_workspace(conn, workspace))["id"]
        kind, value = one if one is not None else (None, None)
        found = await admin.list_suppressions(
            conn, ws, kind=kind, value=value, limit=limit, offset=offset
        )
        return {"workspace": workspace, **found}

    def text(r: dict[str, Any]) -> str:
        if one is not None:
            return f"{one[0]} is {'' if r['total'] else 'not '}suppressed"
        rows = [
            {**i, "created_at": i["created_at"].strftime("%Y-%m-%d %H:%M:%S")} for i in r["items"]
        ]
        shown = f"{len(rows)} of {r['total']} entries"
        return table(rows, ["kind", "sha256", "source", "created_at"]) + f"\n{shown}"

    emit(run_db(work, as_json=as_json), as_json=as_json, text=text)


@suppress_app.command("remove")
def remove(
    workspace: Workspace, phone: Phone = None, email: Email = None, as_json: JsonFlag = False
) -> None:
    """Take one phone or email off the suppression list."""
    rows = _one(phone, email, as_json)

    async def work(conn: asyncpg.Connection) -> dict[str, Any]:
        ws = (await repo.get_workspace(conn, workspace))["id"]
        return {"workspace": workspace, "removed": await admin.unsuppress(conn, ws, rows)}

    emit(
        run_db(work, as_json=as_json),
        as_json=as_json,
        text=lambda r: (
            f"{rows[0][0]} removed" if r["removed"] else f"{rows[0][0]} was not on the list"
        ),
    )
