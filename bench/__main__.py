"""``make bench``: run every benchmark module and print one table of figures and ratios.

Each ``bench/<area>.py`` exposes ``async def run() -> list[dict]`` with rows
``{"benchmark", "metric", "value", "unit", "note"}``. Figures are printed, never asserted:
the machines are shared and noisy, so compare ratios measured in the same run.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import platform
import sys
import time
import traceback

# Order matters little; each module starts what it needs and stops it again.
MODULES = ("gateway", "processor", "pipeline", "memory")


def _machine() -> str:
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in open("/proc/cpuinfo")
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        model = platform.processor() or "unknown cpu"
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.node()}: {os.cpu_count()} cores ({model}), {mem_gib:.0f} GiB, {platform.platform()}"


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


async def main(selected: list[str]) -> int:
    rows: list[dict] = []
    failed: list[str] = []
    for name in selected:
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"bench.{name}":
                print(f"[bench] {name}: not present, skipped", file=sys.stderr)
                continue
            raise
        print(f"[bench] {name}: running", file=sys.stderr)
        started = time.monotonic()
        try:
            rows += await module.run()
        except Exception:
            traceback.print_exc()
            failed.append(name)
        print(f"[bench] {name}: done in {time.monotonic() - started:.0f} s", file=sys.stderr)
    print(f"\nleadwire benchmarks on {_machine()}\n")
    headers = ("benchmark", "metric", "value", "unit", "note")
    table = [[_fmt(r.get(h, "")) for h in headers] for r in rows]
    widths = [
        max(len(h), *(len(row[i]) for row in table)) if table else len(h)
        for i, h in enumerate(headers)
    ]
    print("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)))
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:] or list(MODULES))))
