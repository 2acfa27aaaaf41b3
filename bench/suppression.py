"""``python -m bench.suppression``: ``leadwire suppress import`` of a 100,000-row CSV file
(50,000 phones and 50,000 emails), timed from the command's start to its exit, on the
database the CLI reads (``LEADWIRE_DATABASE_URL``, or the running stack's stack.env). It
works in a workspace of its own and removes it afterwards. Figures, never assertions.

    python -m bench.suppression [--rows 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from cli.context import load_settings
from shared.db import connect


def write_csv(path: Path, rows: int) -> None:
    """Half phones (valid US numbers), half emails, one column each, with a header."""
    with path.open("w") as f:
        f.write("phone,email\n")
        for i in range(rows // 2):
            f.write(f"+1202{5550000 + i % 10_000_000:07d},person{i}@example-leads.io\n")


def _leadwire(*args: str) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "cli.main", *args, "--json"],
        capture_output=True,
        check=True,
        env=os.environ,
    )
    return time.perf_counter() - started, orjson.loads(out.stdout)


async def main(rows: int) -> list[dict[str, Any]]:
    settings = load_settings()
    name = f"bench-suppress-{uuid.uuid4().hex[:8]}"
    _leadwire("workspace", "create", name)
    try:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "dnc.csv"
            write_csv(path, rows)
            seconds, first = _leadwire("suppress", "import", str(path), "-W", name)
            again_s, again = _leadwire("suppress", "import", str(path), "-W", name)
        return [
            {
                "run": "first import",
                "rows": first["read"],
                "added": first["added"],
                "seconds": round(seconds, 2),
                "rows_per_s": round(first["read"] / seconds),
            },
            {
                "run": "re-run (all already on the list)",
                "rows": again["read"],
                "added": again["added"],
                "seconds": round(again_s, 2),
                "rows_per_s": round(again["read"] / again_s),
            },
        ]
    finally:
        conn = await connect(settings.database_url)
        try:
            ws = await conn.fetchval("SELECT id FROM workspaces WHERE name = $1", name)
            await conn.execute("DELETE FROM suppressions WHERE workspace_id = $1", ws)
            await conn.execute("DELETE FROM workspaces WHERE id = $1", ws)
        finally:
            await conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    for row in asyncio.run(main(parser.parse_args().rows)):
        print("  ".join(f"{k}={v}" for k, v in row.items()))
