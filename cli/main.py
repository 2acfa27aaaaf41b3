"""``leadwire``: the admin command. Sub-commands live in one module each."""

from __future__ import annotations

import importlib
import sys

import typer

_app = typer.Typer(
    name="leadwire",
    help="Administer leadwire: workspaces, webhooks, mappings, boards, rules, API keys, "
    "notifications, archives and replay. Every command takes --json.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# (module, attribute) of each sub-command group; a module adds its own Typer app(s).
_GROUPS = (
    "cli.db",
    "cli.workspaces",
    "cli.webhooks",
    "cli.mappings",
    "cli.boards",
    "cli.rules",
    "cli.apikeys",
    "cli.contacts",
    "cli.notify",
    "cli.archive",
    "cli.deadletter",
    "cli.suppress",
)


# The top-level command names each group module adds. `leadwire <name> ...` imports only
# that module (every module pulls in a service's admin code: importing all of them is most
# of the CLI's start-up time); help, and a name not listed here, import every group.
_NAMES = {
    "db": "cli.db",
    "workspace": "cli.workspaces",
    "webhook": "cli.webhooks",
    "mapping": "cli.mappings",
    "template": "cli.mappings",
    "board": "cli.boards",
    "rule": "cli.rules",
    "apikey": "cli.apikeys",
    "duplicates": "cli.contacts",
    "contacts": "cli.contacts",
    "notify": "cli.notify",
    "archive": "cli.archive",
    "replay": "cli.archive",
    "deadletter": "cli.deadletter",
    "suppress": "cli.suppress",
}
_registered: set[str] = set()


def _register(module_names: tuple[str, ...] = _GROUPS) -> None:
    for module_name in module_names:
        if module_name in _registered:
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # a group not built yet
            raise
        module.register(_app)
        _registered.add(module_name)


def main() -> None:
    command = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
    if command in _NAMES and not {"--help", "-h"} & set(sys.argv[1:2]):
        _register((_NAMES[command],))
    else:
        _register()
    _app()


def __getattr__(name: str) -> object:
    # ``from cli.main import app`` (tests, docs) gets the app with every command group.
    if name == "app":
        _register()
        return _app
    raise AttributeError(name)


if __name__ == "__main__":
    main()
