"""Options shared by several commands, declared once so that a flag means the same thing
everywhere: ``-W`` is ``--workspace`` in every command; ``--webhook`` has no short form
(see docs/cli.md, "Flags")."""

from __future__ import annotations

from typing import Annotated

import typer

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
