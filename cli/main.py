"""``leadwire``: the admin command. Sub-commands live in one module each."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
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
)


def _register() -> None:
    for module_name in _GROUPS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # a group not built yet
            raise
        module.register(app)


_register()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
