"""``leadwire mapping set|show|test`` and ``leadwire template list|show``.

A mapping file is YAML or JSON: a list of entries, or ``{entries: [...], keep_unmapped:
bool}``. It is validated before it is stored; errors name the entry and its line.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
import yaml

from cli.context import run_admin
from cli.options import WebhookWorkspace
from cli.output import CliError, JsonFlag, attempt, emit, fail, table
from cli.webhook_fields import read_mapping, template_named
from services.api import admin
from shared.mapping import Mapping, describe_transforms
from shared.templates import TEMPLATES, get_template

mapping_app = typer.Typer(
    name="mapping",
    help="Field mappings: how a webhook's body becomes a lead.",
    no_args_is_help=True,
)
template_app = typer.Typer(
    name="template",
    help="Vendor templates: a mapping plus auth defaults (use with `webhook create --template`).",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(mapping_app, name="mapping")
    app.add_typer(template_app, name="template")


def _as_yaml(mapping: Mapping) -> str:
    doc: Any = admin.entries_doc(mapping)
    if mapping.keep_unmapped:
        doc = doc["entries"]
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True).rstrip()


@mapping_app.command("set")
def set_(
    webhook: Annotated[str, typer.Argument(help="Webhook id, or its name.")],
    file: Annotated[
        str | None, typer.Argument(help="Mapping file (.yaml, .yml or .json; - for stdin).")
    ] = None,
    workspace: WebhookWorkspace = None,
    template: Annotated[
        str | None,
        typer.Option("--template", "-t", help="Use this template's mapping instead of a file."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Validate a mapping and store it on a webhook (gateways pick it up at once)."""
    if (file is None) == (template is None):
        fail(
            CliError("give a mapping FILE or --template NAME (one of them)", exit_code=2),
            as_json=as_json,
        )

    def load() -> Mapping:
        if template is not None:
            return template_named(template).mapping
        if file == "-":
            return admin.checks.mapping_from_text(sys.stdin.read(), what="stdin")
        assert file is not None
        if not Path(file).is_file():
            raise CliError(f"no such file: {file}", exit_code=2)
        return read_mapping(file)

    mapping = attempt(load, as_json=as_json)

    async def work(repo: admin.Repository) -> dict[str, Any]:
        row = await admin.find_webhook(repo, webhook, workspace)
        return await admin.set_mapping(repo, row, mapping)

    data = run_admin(work, as_json=as_json)
    emit(
        data,
        as_json=as_json,
        text=lambda d: (
            f"mapping of webhook {d['webhook']} set: {len(d['mapping']['entries'])} entries"
        ),
    )


@mapping_app.command("show")
def show(
    webhook: Annotated[str, typer.Argument(help="Webhook id, or its name.")],
    workspace: WebhookWorkspace = None,
    as_json: JsonFlag = False,
) -> None:
    """Print a webhook's mapping (the text form is a YAML file `mapping set` accepts)."""

    async def work(repo: admin.Repository) -> dict[str, Any]:
        row = await admin.find_webhook(repo, webhook, workspace)
        doc = admin.show_mapping(row)
        return {**doc, "_yaml": _as_yaml(admin.stored_mapping(row))}

    data = run_admin(work, as_json=as_json)
    text = data.pop("_yaml")
    emit(data, as_json=as_json, text=f"# webhook {data['webhook']} ({data['webhook_id']})\n{text}")


@mapping_app.command("test")
def test(
    webhook: Annotated[str, typer.Argument(help="Webhook id, or its name.")],
    payload: Annotated[
        str, typer.Argument(help="A sample body: a JSON file, a form-encoded file, or -.")
    ],
    workspace: WebhookWorkspace = None,
    as_json: JsonFlag = False,
) -> None:
    """Map a sample body with a webhook's mapping and show the lead and any field errors."""

    body = attempt(
        lambda: sys.stdin.buffer.read() if payload == "-" else _read_bytes(payload),
        as_json=as_json,
    )

    async def work(repo: admin.Repository) -> dict[str, Any]:
        row = await admin.find_webhook(repo, webhook, workspace)
        return admin.test_mapping(row, admin.read_sample(body))

    def text(d: dict[str, Any]) -> str:
        lines = ["valid lead" if d["valid"] else "INVALID lead"]
        for key, value in d["lead"].items():
            if value not in (None, {}):
                lines.append(
                    f"  {key}: {orjson.dumps(value).decode() if key == 'custom' else value}"
                )
        for err in d["errors"]:
            lines.append(f"  error {err['field']} ({err['code']}): {err['message']}")
        return "\n".join(lines)

    emit(run_admin(work, as_json=as_json), as_json=as_json, text=text)


def _read_bytes(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}", exit_code=2) from None


# --- templates ----------------------------------------------------------------------


@template_app.command("list")
def template_list(as_json: JsonFlag = False) -> None:
    """List vendor templates."""
    rows = [admin.template_doc(t) for t in TEMPLATES.values()]
    if as_json:
        emit(rows, as_json=True)
        return
    emit(
        rows,
        as_json=False,
        text=table(rows, ["name", "auth_mode", "idempotency_field", "description"]),
    )


@template_app.command("show")
def template_show(
    name: Annotated[str, typer.Argument(help=f"One of: {', '.join(TEMPLATES)}.")],
    as_json: JsonFlag = False,
) -> None:
    """Show a template: its mapping (YAML), auth default and an example payload."""
    try:
        tpl = get_template(name)
    except KeyError:
        fail(
            CliError(f"no template named {name!r}", hint=f"valid: {', '.join(TEMPLATES)}"),
            as_json=as_json,
        )
    doc = admin.template_doc(tpl)
    lines = [
        f"# {tpl.name}: {tpl.description}",
        f"# auth: {tpl.auth_mode}; idempotency field: {tpl.idempotency_field or '-'}; "
        f"content type: {tpl.content_type}",
        *(f"# note: {n}" for n in tpl.notes),
        _as_yaml(tpl.mapping),
        "",
        "# example payload:",
        *(
            "# " + line
            for line in orjson.dumps(tpl.example_payload, option=orjson.OPT_INDENT_2)
            .decode()
            .splitlines()
        ),
        "",
        "# transforms: " + ", ".join(name for name, _ in describe_transforms()),
    ]
    emit(doc, as_json=as_json, text="\n".join(lines))
