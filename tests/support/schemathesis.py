"""schemathesis' CLI against a service's own OpenAPI document: no answer >= 500."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import orjson


def pin_path_ids(spec: dict[str, Any], values: dict[str, list[str]]) -> None:
    """Give the named path parameters only these values (real ids, an unknown one, a
    malformed one), so a run reaches the real reads rather than only 404s."""
    for path in spec["paths"].values():
        for op in path.values():
            for param in op.get("parameters", []):
                if param["in"] == "path" and param["name"] in values:
                    param["schema"] = {"type": "string", "enum": values[param["name"]]}


async def run_schemathesis(
    spec: dict[str, Any],
    url: str,
    workdir: Path,
    *,
    max_examples: int = 100,
    headers: dict[str, str] | None = None,
    workers: int = 2,
) -> str:
    """Run ``st run`` on ``spec`` against ``url`` (``headers`` on every request, e.g. an
    API key); fail on a server error. Returns the report's text. ``LEADWIRE_ST_CHECKS``
    picks other checks (default: ``not_a_server_error``). ``workers=1`` for a document
    whose coverage phase trips Python 3.11's ast.parse, which is not thread-safe (a
    "recursion depth mismatch" in hypothesis, not an answer of the server)."""
    spec_file = workdir / "openapi.json"
    spec_file.write_bytes(orjson.dumps(spec))
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("st")),
        "run",
        str(spec_file),
        "--url",
        url,
        "--checks",
        os.environ.get("LEADWIRE_ST_CHECKS", "not_a_server_error"),
        "--max-examples",
        str(max_examples),
        "--workers",
        str(workers),
        # Stateful runs need links between operations; these APIs have none worth following.
        "--phases",
        "examples,coverage,fuzzing",
        "--generation-deterministic",
        "--suppress-health-check",
        "all",
        "--request-timeout",
        "10",
        *(arg for name, value in (headers or {}).items() for arg in ("-H", f"{name}: {value}")),
        cwd=workdir,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 240)
    text = out.decode(errors="replace")
    print(text[-4000:])
    assert proc.returncode == 0, f"schemathesis found server errors:\n{text[-6000:]}"
    assert "passed" in text
    return text
