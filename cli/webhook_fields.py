"""Reading and checking what ``leadwire webhook ...`` and ``leadwire mapping ...`` are
given: durations, sizes, limits, header names, mapping files, templates and secrets.
Each check raises :class:`~cli.output.CliError` saying how to write it (exit code 2 for
usage errors)."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from cli.output import CliError
from shared.mapping import Mapping, MappingError, compile_mapping, compile_path, load_mapping_file
from shared.secrets import AUTH_MODES, check_imported_secret, generate_secret, stored_form
from shared.templates import TEMPLATES, Template, get_template

MAX_GRACE = timedelta(days=30)
MAX_BODY_LIMIT = 64 * 1024 * 1024
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,100}$")
_DURATION_PART = re.compile(r"(\d+)(ms|d|h|m|s)")
_SIZE = re.compile(r"^(\d+)\s*(b|k|kb|kib|m|mb|mib)?$", re.IGNORECASE)


def parse_duration(text: str) -> timedelta:
    """``24h``, ``30m``, ``90s``, ``1h30m``, ``2d``, ``500ms`` or plain seconds; ``0`` = none."""
    raw = text.strip().lower().replace(" ", "")
    if raw.isdigit():
        value = timedelta(seconds=int(raw))
    else:
        parts = _DURATION_PART.findall(raw)
        if not parts or "".join(n + u for n, u in parts) != raw:
            raise CliError(
                f"cannot read the duration {text!r}",
                hint="write it like 24h, 30m, 90s, 1h30m or 2d (0 for no grace period)",
                exit_code=2,
            )
        unit_seconds = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
        value = timedelta(seconds=sum(int(n) * unit_seconds[u] for n, u in parts))
    if value > MAX_GRACE:
        raise CliError("a grace period is at most 30 days", exit_code=2)
    return value


def parse_size(text: str) -> int:
    """Bytes from ``65536``, ``64k`` or ``1mb``."""
    match = _SIZE.match(text.strip())
    if not match:
        raise CliError(
            f"cannot read the size {text!r}", hint="write it like 65536, 64k or 1mb", exit_code=2
        )
    unit = (match.group(2) or "b").lower()
    size = int(match.group(1)) * (
        1024 if unit.startswith("k") else 1024 * 1024 if unit.startswith("m") else 1
    )
    if not 1 <= size <= MAX_BODY_LIMIT:
        raise CliError(
            f"--max-body must be between 1 byte and {MAX_BODY_LIMIT // (1024 * 1024)}mb",
            exit_code=2,
        )
    return size


def check_rate_limit(value: int) -> int:
    if value < 1 or value > 1_000_000:
        raise CliError("--rate-limit is requests per minute, between 1 and 1000000", exit_code=2)
    return value


def check_idempotency_field(path: str) -> str:
    try:
        compile_path(path)
    except ValueError as exc:
        raise CliError(f"bad --idempotency-field {path!r}: {exc}", exit_code=2) from None
    return path


def check_header(name: str) -> str:
    if not _HEADER_NAME.match(name):
        raise CliError(f"{name!r} is not a valid HTTP header name", exit_code=2)
    return name


def check_auth_mode(mode: str) -> str:
    if mode not in AUTH_MODES:
        raise CliError(
            f"unknown auth mode {mode!r}", hint=f"valid: {', '.join(AUTH_MODES)}", exit_code=2
        )
    return mode


def read_mapping(path: str) -> Mapping:
    try:
        mapping = load_mapping_file(Path(path))
        compile_mapping(mapping)
    except MappingError as exc:
        raise CliError(
            f"{Path(path).name} is not a valid mapping:\n  " + "\n  ".join(exc.problems),
            hint="see docs/templates.md (`leadwire template show generic` prints an example)",
        ) from None
    return mapping


def template_named(name: str) -> Template:
    try:
        return get_template(name)
    except KeyError:
        raise CliError(
            f"no template named {name!r}", hint=f"valid: {', '.join(TEMPLATES)}", exit_code=2
        ) from None


def issue_secret(mode: str, imported: str | None) -> tuple[str, str]:
    """(shown once, stored form) of a new secret for ``mode``: ``imported`` when given
    (checked), else a generated one."""
    if imported is None:
        plain, stored, _ = generate_secret(mode)
        return plain, stored
    problem = check_imported_secret(mode, imported)
    if problem:
        raise CliError(f"--secret: {problem}", exit_code=2)
    return imported, stored_form(mode, imported)


def basic_username() -> str:
    """A new username for a basic-auth webhook."""
    return str(generate_secret("basic")[2]["basic_username"])
