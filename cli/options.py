"""Options shared by several commands, declared once so that a flag means the same thing
everywhere: ``-W`` is ``--workspace`` in every command; ``--webhook`` has no short form
(see docs/cli.md, "Flags")."""

from __future__ import annotations

import uuid
from typing import Annotated

import typer

from cli.output import CliError

# A command that acts inside one workspace.
Workspace = Annotated[str, typer.Option("--workspace", "-W", help="Workspace name or id.")]
# A listing narrowed to one workspace.
WorkspaceFilter = Annotated[
    str | None, typer.Option("--workspace", "-W", help="Only this workspace.")
]
# Names the workspace of a webhook given by name (needed when several workspaces use it).
WebhookWorkspace = Annotated[
    str | None,
    typer.Option(
        "--workspace", "-W", help="Workspace name or id (needed when a webhook name is in several)."
    ),
]


def object_id(text: str, what: str, listing: str) -> uuid.UUID:
    """An id argument (``rule remove ID``): a UUID, or a usage error naming the listing
    that shows the ids."""
    try:
        return uuid.UUID(text)
    except ValueError:
        raise CliError(
            f"{text!r} is not a {what} id", hint=f"see `leadwire {listing}`", exit_code=2
        ) from None
