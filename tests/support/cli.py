"""Driving the ``leadwire`` CLI from tests.

One runner per way of running it, each giving a :class:`CliResult` (exit code, stdout,
stderr) for tests of errors and text output:

- :func:`cli`: the real command as a subprocess (sync);
- :func:`acli`: the same from an async test, without blocking its event loop (services
  running in the test's process go on meanwhile);
- :func:`cli_inprocess`: in this process (faster; one command at a time, nothing else
  writing to stdout meanwhile).

``run_cli(settings_env, "workspace", "create", "acme")`` (a subprocess) and
:func:`arun_cli` (in process) return the parsed ``--json`` document of a command that must
succeed (AssertionError with its stderr otherwise).

Shortcuts for other areas' tests: :func:`make_workspace`, :func:`make_webhook`,
:func:`make_board`, :func:`add_rule` (each returns the command's JSON document).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import orjson

ROOT = Path(__file__).resolve().parents[2]


class CliResult(NamedTuple):
    """What a command did; unpacks as ``code, stdout, stderr``."""

    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return orjson.loads(self.stdout)

    def error(self) -> dict[str, Any]:
        """The ``{"error", "hint"?}`` document a failed ``--json`` command wrote to stderr."""
        return orjson.loads(self.stderr.strip().splitlines()[-1])


def cli(
    settings_env: Mapping[str, str],
    *args: str,
    json: bool = True,
    stdin: bytes | None = None,
    timeout: float = 60,
) -> CliResult:
    """Run ``python -m cli.main ARGS [--json]``; never raises on a non-zero exit."""
    argv = [sys.executable, "-m", "cli.main", *args, *(["--json"] if json else [])]
    proc = subprocess.run(
        argv,
        cwd=ROOT,
        env=dict(settings_env),
        input=stdin,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    return CliResult(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


async def acli(
    settings_env: Mapping[str, str],
    *args: str,
    json: bool = True,
    stdin: bytes | None = None,
    timeout: float = 60,
) -> CliResult:
    """:func:`cli` (a subprocess) from an async test, in a worker thread."""
    return await asyncio.to_thread(
        cli, settings_env, *args, json=json, stdin=stdin, timeout=timeout
    )


def _document(result: CliResult, args: tuple[str, ...]) -> Any:
    """The JSON document of a successful command (AssertionError with stderr otherwise)."""
    if result.code != 0:
        raise AssertionError(
            f"leadwire {' '.join(args)} exited {result.code}:\n{result.stderr}{result.stdout}"
        )
    return result.json()


def run_cli(settings_env: Mapping[str, str], *args: str, stdin: bytes | None = None) -> Any:
    """The JSON document a successful command prints (AssertionError with stderr otherwise)."""
    return _document(cli(settings_env, *args, stdin=stdin), args)


def make_workspace(
    settings_env: Mapping[str, str], name: str | None = None, *, region: str = "US"
) -> dict[str, Any]:
    doc: dict[str, Any] = run_cli(
        settings_env,
        "workspace",
        "create",
        name or f"ws-{uuid.uuid4().hex[:8]}",
        "--default-region",
        region,
    )
    return doc


def make_webhook(
    settings_env: Mapping[str, str],
    workspace: str,
    name: str | None = None,
    *,
    template: str = "generic",
    auth: str | None = None,
    extra: tuple[str, ...] = (),
) -> dict[str, Any]:
    """``webhook create``; the result holds id, url, auth_mode and the one-time secret."""
    args = [
        "webhook",
        "create",
        "--workspace",
        workspace,
        "--name",
        name or f"hook-{uuid.uuid4().hex[:8]}",
    ]
    args += ["--template", template]
    if auth:
        args += ["--auth", auth]
    doc: dict[str, Any] = run_cli(settings_env, *args, *extra)
    return doc


def make_board(settings_env: Mapping[str, str], workspace: str, name: str) -> dict[str, Any]:
    doc: dict[str, Any] = run_cli(settings_env, "board", "create", name, "--workspace", workspace)
    return doc


def add_rule(
    settings_env: Mapping[str, str],
    workspace: str,
    board: str,
    *when: str,
    webhook: str | None = None,
    priority: int | None = None,
) -> dict[str, Any]:
    """``rule add`` with ``--when`` conditions such as ``product=Solar`` or ``status~in:a,b``."""
    args = ["rule", "add", "--workspace", workspace, "--board", board]
    for condition in when:
        args += ["--when", condition]
    if webhook:
        args += ["--webhook", webhook]
    if priority is not None:
        args += ["--priority", str(priority)]
    doc: dict[str, Any] = run_cli(settings_env, *args)
    return doc


def _invoke(settings_env: Mapping[str, str], argv: list[str], stdin: bytes | None) -> CliResult:
    from typer.testing import CliRunner

    from cli.main import app

    result = CliRunner().invoke(app, argv, env=dict(settings_env), input=stdin)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return CliResult(result.exit_code, result.stdout, result.stderr)


async def cli_inprocess(
    settings_env: Mapping[str, str], *args: str, json: bool = True, stdin: bytes | None = None
) -> CliResult:
    """Like :func:`cli`, in this process (a worker thread; faster than a subprocess).

    The command's env vars are set process-wide while it runs: use it from tests that
    run one command at a time."""
    argv = [*args, *(["--json"] if json else [])]
    return await asyncio.to_thread(_invoke, settings_env, argv, stdin)


async def arun_cli(settings_env: Mapping[str, str], *args: str, stdin: bytes | None = None) -> Any:
    """:func:`run_cli` in-process: the JSON document, or AssertionError with stderr."""
    return _document(await cli_inprocess(settings_env, *args, stdin=stdin), args)
