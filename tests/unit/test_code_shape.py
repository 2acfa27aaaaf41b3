"""The code keeps one shape (docs/architecture.md): small modules and functions, one-way
dependencies, contracts imported rather than redefined, no test hooks in production code.

A module over 500 lines or a function over 80 lines is allowed only when a comment at its
top says why: a line starting with ``# size:`` among the module's first lines, or as the
first line of the function's body.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("services", "shared", "cli", "infra")
SERVICES = ("ingest", "processor", "notifier", "analytics", "archiver", "api")
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
EVENT_TYPES = {"LeadReceived", "LeadProcessed", "LeadFailed", "LeadRejected", "Outcome"}


def _modules(*tops: str) -> list[Path]:
    return sorted(p for top in tops for p in (ROOT / top).rglob("*.py"))


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _explained(lines: list[str]) -> bool:
    return any(line.strip().startswith("# size:") for line in lines)


def _imports(tree: ast.Module) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_no_module_is_over_500_lines_without_saying_why() -> None:
    too_long = []
    for path in _modules(*PRODUCT):
        lines = path.read_text().splitlines()
        if len(lines) > MAX_MODULE_LINES and not _explained(lines[:15]):
            too_long.append(f"{_rel(path)}: {len(lines)} lines")
    assert not too_long, "modules over 500 lines:\n" + "\n".join(too_long)


def test_no_function_is_over_80_lines_without_saying_why() -> None:
    too_long = []
    for path in _modules(*PRODUCT):
        source = path.read_text().splitlines()
        for node in ast.walk(_parse(path)):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            body_start = node.body[0].lineno - 1
            if length > MAX_FUNCTION_LINES and not _explained(
                source[body_start - 1 : body_start + 2]
            ):
                too_long.append(f"{_rel(path)}:{node.lineno} {node.name}: {length} lines")
    assert not too_long, "functions over 80 lines:\n" + "\n".join(too_long)


def _crosses(service: str, name: str) -> bool:
    """Whether ``service`` importing ``name`` reaches into another service. The management
    API is the one front-end besides the CLI: it may import other services' ``admin``
    modules (the public face of their domains), and nothing else of them."""
    parts = name.split(".")
    if parts[0] != "services" or len(parts) < 2 or parts[1] == service:
        return False
    # ``from services.x import admin`` names the package too.
    return not (service == "api" and (len(parts) == 2 or parts[2] == "admin"))


def test_no_service_imports_another_service() -> None:
    crossings = []
    for service in SERVICES:
        for path in (
            _modules(f"services/{service}") if (ROOT / "services" / service).exists() else []
        ):
            for name in _imports(_parse(path)):
                if _crosses(service, name):
                    crossings.append(f"{_rel(path)} imports {name}")
    assert not crossings, "\n".join(crossings)


def test_shared_and_infra_import_no_service() -> None:
    crossings = [
        f"{_rel(path)} imports {name}"
        for path in _modules("shared", "infra")
        for name in _imports(_parse(path))
        if name.split(".")[0] == "services"
    ]
    assert not crossings, "\n".join(crossings)


def test_the_cli_imports_only_shared_and_each_services_admin_module() -> None:
    crossings = []
    for path in _modules("cli"):
        for name in _imports(_parse(path)):
            parts = name.split(".")
            if parts[0] != "services" or len(parts) < 3:
                continue
            if parts[2] != "admin":
                crossings.append(f"{_rel(path)} imports {name}")
    assert not crossings, "the CLI reaches into services:\n" + "\n".join(crossings)


def test_event_types_are_imported_never_redefined() -> None:
    redefined = []
    for path in _modules("services", "cli"):
        for node in ast.walk(_parse(path)):
            names: list[str] = []
            if isinstance(node, ast.ClassDef):
                names = [node.name]
            elif isinstance(node, ast.Assign):
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names = [node.target.id]
            redefined += [f"{_rel(path)}: {n}" for n in names if n in EVENT_TYPES]
    assert not redefined, "event types redefined outside shared/events.py:\n" + "\n".join(redefined)


def test_production_code_has_no_test_fault_injection() -> None:
    offenders = [
        _rel(path)
        for path in _modules(*PRODUCT)
        if "os._exit(" in path.read_text() and path.parts[-2:] != ("infra", "processes.py")
    ]
    assert not offenders, "fault injection belongs in tests (pass a hook):\n" + "\n".join(offenders)


def test_every_service_has_the_same_files() -> None:
    expected = {"__main__.py", "service.py", "handlers.py", "repository.py", "settings.py"}
    missing = []
    for service in SERVICES:
        folder = ROOT / "services" / service
        if not folder.exists():
            continue
        have = {p.name for p in folder.glob("*.py")}
        missing += [f"services/{service}/{name}" for name in sorted(expected - have)]
    assert not missing, "missing:\n" + "\n".join(missing)
