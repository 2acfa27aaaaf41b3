"""Driving the ``leadwire`` CLI from tests.

``run_cli(settings_env, "workspace", "create", "acme")`` runs the real command as a
subprocess with ``--json`` and returns its parsed JSON document (raising with stderr when
it fails). It works from sync and async tests alike. ``cli(settings_env, ...)`` returns the
raw :class:`CliResult` (exit code, stdout, stderr) for tests of errors and text output.

Shortcuts for other areas' tests: :func:`make_workspace`, :func:`make_webhook`,
:func:`make_board`, :func:`add_rule` (each returns the command's JSON document).
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class CliResult:
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


def run_cli(settings_env: Mapping[str, str], *args: str, stdin: bytes | None = None) -> Any:
    """The JSON document a successful command prints (AssertionError with stderr otherwise)."""
    result = cli(settings_env, *args, stdin=stdin)
    if result.code != 0:
        raise AssertionError(
            f"leadwire {' '.join(args)} exited {result.code}:\n{result.stderr}{result.stdout}"
        )
    return result.json()


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
    import asyncio

    argv = [*args, *(["--json"] if json else [])]
    return await asyncio.to_thread(_invoke, settings_env, argv, stdin)


async def arun_cli(settings_env: Mapping[str, str], *args: str, stdin: bytes | None = None) -> Any:
    """:func:`run_cli` in-process: the JSON document, or AssertionError with stderr."""
    result = await cli_inprocess(settings_env, *args, stdin=stdin)
    if result.code != 0:
        raise AssertionError(
            f"leadwire {' '.join(args)} exited {result.code}:\n{result.stderr}{result.stdout}"
        )
    return result.json()
