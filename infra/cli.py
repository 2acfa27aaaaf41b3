"""Command line: ``python -m infra <command> [--stack NAME]``.

    install                   fetch/build everything (Kafka jars, versitygw, postgres package); no start
    start   [-c COMPONENT]    start the stack (or some components) and wait until ready; idempotent
    stop    [-c COMPONENT]    stop tracked services and the infra (or just some components); data kept
    restart -c COMPONENT      stop + start one component, data kept
    status                    what runs, pids, readiness (all stacks found when --stack is not given)
    env                       KEY=VALUE lines for services (``set -a; . <(python -m infra env); set +a``)
    destroy                   stop and delete the stack's state (data, logs)

Progress goes to stderr, ``env`` output to stdout. Exit status 1 with a message on errors.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
from pathlib import Path

from infra.config import INFRA_COMPONENTS, default_project_root
from infra.errors import InfraError
from infra.stack import Stack
from infra.status import header as status_header
from infra.status import render as render_status
from infra.status import rows as status_rows


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--stack", default=None, help="stack name (default: dev)")
    common.add_argument(
        "--project-root",
        type=Path,
        default=None,
        help="project checkout (default: the one holding infra/)",
    )
    parser = argparse.ArgumentParser(
        prog="python -m infra", description="Local Kafka/Postgres/S3 for leadwire."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("install", parents=[common], help="fetch/build everything, start nothing")
    for name, text in (
        ("start", "start and wait until ready"),
        ("stop", "stop (data kept)"),
        ("restart", "stop + start"),
    ):
        p = sub.add_parser(name, parents=[common], help=text)
        p.add_argument(
            "-c",
            "--component",
            action="append",
            choices=INFRA_COMPONENTS,
            help="only this component (repeatable)",
        )
        p.add_argument(
            "--timeout", type=float, default=120.0 if name != "stop" else 30.0, help="seconds"
        )
    sub.add_parser("status", parents=[common], help="show what runs")
    sub.add_parser("env", parents=[common], help="print LEADWIRE_* settings as KEY=VALUE lines")
    sub.add_parser("destroy", parents=[common], help="stop and delete the stack's state")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return asyncio.run(_run(args))
    except InfraError as exc:
        print(f"infra: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "infra: interrupted; processes already started keep running (python -m infra stop)",
            file=sys.stderr,
        )
        return 130


async def _run(args: argparse.Namespace) -> int:
    root = args.project_root.resolve() if args.project_root else default_project_root()
    stack = Stack.for_name(args.stack or "dev", root)
    command: str = args.command
    if command == "install":
        await stack.install()
    elif command == "start":
        await stack.start(args.timeout, args.component)
    elif command == "stop":
        await stack.stop(args.timeout, args.component)
    elif command == "restart":
        for name in args.component or INFRA_COMPONENTS:
            await stack.restart(name, args.timeout)
    elif command == "env":
        for key, value in stack.settings_env().items():
            print(f"{key}={shlex.quote(value)}")
    elif command == "status":
        names = [args.stack] if args.stack else _known_stacks(root)
        healthy = True
        for name in names:
            healthy &= await _print_status(Stack.for_name(name, root))
        return 0 if healthy else 1
    elif command == "destroy":
        await stack.destroy()
    return 0


def _known_stacks(root: Path) -> list[str]:
    base = root / ".leadwire"
    found = sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
    return found or ["dev"]


async def _print_status(stack: Stack) -> bool:
    found = await status_rows(stack, stack.settings_env())
    print(render_status(found, status_header(stack)))
    return all(r.state != "NOT READY" for r in found)
