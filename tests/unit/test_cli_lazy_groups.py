"""`leadwire <command>` imports only the module of that command: the names it knows must
match what each module registers, and every command must be named (or it is slow)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest
import typer

from cli import main as cli_main

pytestmark = pytest.mark.unit


def _names(module_name: str) -> set[str]:
    app = typer.Typer()
    importlib.import_module(module_name).register(app)
    names = {c.name for c in app.registered_commands}
    names |= {g.name for g in app.registered_groups}
    return {n for n in names if n}


def test_every_named_command_is_registered_by_its_module() -> None:
    for name, module_name in cli_main._NAMES.items():
        assert name in _names(module_name), f"{name} is not registered by {module_name}"


def test_every_command_has_a_name_for_the_fast_path() -> None:
    every = set().union(*(_names(m) for m in cli_main._GROUPS))
    assert every == set(cli_main._NAMES)


def test_a_command_imports_its_own_group_only() -> None:
    code = (
        "import sys; sys.argv = ['leadwire', 'workspace', 'list', '--help'];"
        "import cli.main as m\n"
        "try:\n    m.main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(k for k in sys.modules if k.startswith('cli.')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    loaded = out.strip().splitlines()[-1]
    assert "cli.workspaces" in loaded and "cli.archive" not in loaded, loaded
