"""How every command prints: one JSON document with ``--json``, readable text otherwise.

Errors go to stderr with a non-zero exit and a message that says what to fix; with
``--json`` they are also one JSON document (on stderr): ``{"error": "...", "hint": "..."}``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Annotated, Any, NoReturn, TypeVar

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from shared.errors import AdminError

T = TypeVar("T")

# Every command's ``--json`` flag: then it prints exactly one JSON document on stdout.
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document (for scripts).")]


class CliError(Exception):
    """A user-facing error: what went wrong and what to do about it."""

    def __init__(self, message: str, *, hint: str | None = None, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code


def emit(data: Any, *, as_json: bool, text: Callable[[Any], str] | str | None = None) -> None:
    """Print a command's result: JSON (one document) or text."""
    if as_json:
        sys.stdout.write(
            orjson.dumps(data, default=str, option=orjson.OPT_INDENT_2).decode() + "\n"
        )
        return
    if callable(text):
        typer.echo(text(data))
    elif text is not None:
        typer.echo(text)
    else:
        typer.echo(orjson.dumps(data, default=str, option=orjson.OPT_INDENT_2).decode())


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A plain aligned text table."""
    if not rows:
        return "(none)"
    widths = {c: max(len(c), *(len(str(r.get(c, "") or "")) for r in rows)) for c in columns}
    lines = ["  ".join(c.upper().ljust(widths[c]) for c in columns)]
    for r in rows:
        lines.append("  ".join(str(r.get(c, "") or "").ljust(widths[c]) for c in columns))
    return "\n".join(lines)


def cli_error(error: AdminError) -> CliError:
    """A refused management operation (:mod:`services.api.admin`) as the CLI shows it."""
    return CliError(error.message, hint=error.hint, exit_code=error.exit_code)


def fail(error: CliError, *, as_json: bool) -> NoReturn:
    if as_json:
        doc = {"error": error.message, **({"hint": error.hint} if error.hint else {})}
        sys.stderr.write(orjson.dumps(doc).decode() + "\n")
    else:
        sys.stderr.write(f"error: {error.message}\n")
        if error.hint:
            sys.stderr.write(f"hint: {error.hint}\n")
    raise typer.Exit(error.exit_code)


def attempt(work: Callable[[], T], *, as_json: bool) -> T:
    """Run ``work`` (local checks, file reads); a CliError (or a refusal of the management
    admin) becomes the command's error."""
    try:
        return work()
    except CliError as err:
        fail(err, as_json=as_json)
    except AdminError as err:
        fail(cli_error(err), as_json=as_json)


def progress_bar(*, enabled: bool = True) -> Progress:
    """A progress bar for long runs, on stderr (never on stdout, which is the command's
    result) and only on a terminal."""
    console = Console(stderr=True)
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not (enabled and console.is_terminal),
    )
