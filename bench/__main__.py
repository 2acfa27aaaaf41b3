"""``make bench``: run every benchmark section and print one table of figures and ratios,
then the tables the issues quote (gateway, latency, cost), and draw them as PNG charts into
``test-output/bench/``.

    python -m bench                       # every section (what `make bench` runs)
    python -m bench cost --leads 2000     # one section, or several, with their sizes
    python -m bench gateway latency --seconds 5 --step-seconds 5

Each ``bench/<section>.py`` exposes ``async def run() -> list[dict]`` (or
``run(opts: Options)`` when it takes sizes) with rows ``{"benchmark", "metric", "value",
"unit", "note"}``; a row may also be a cell of a named table (:mod:`bench.figures`).
Figures are printed, never asserted: the machines are shared and noisy, so compare ratios
measured in the same run (the load average is printed beside them).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import os
import platform
import sys
import time
import traceback
from typing import Any

from bench import charts, report
from bench.cpu import load_average
from bench.options import ROOT, Options

# Order matters little; each section starts what it needs and stops it again.
SECTIONS = ("gateway", "processor", "pipeline", "memory", "latency", "cost", "scaling")


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


async def _section(name: str, opts: Options) -> list[dict[str, Any]]:
    module = importlib.import_module(f"bench.{name}")
    rows: list[dict[str, Any]]
    if inspect.signature(module.run).parameters:
        rows = await module.run(opts)
    else:
        rows = await module.run()
    return rows


async def main(selected: list[str], opts: Options) -> int:
    rows: list[dict[str, Any]] = []
    failed: list[str] = []
    load_before = load_average()
    began = time.monotonic()
    for name in selected:
        print(f"[bench] {name}: running (load average {load_average()})", file=sys.stderr)
        started = time.monotonic()
        try:
            rows += await _section(name, opts)
        except Exception:
            traceback.print_exc()
            failed.append(name)
        print(
            f"[bench] {name}: done in {time.monotonic() - started:.0f} s "
            f"(load average {load_average()})",
            file=sys.stderr,
        )
    loads = f"load average {load_before} at the start, {load_average()} at the end"
    print(f"\nleadwire benchmarks on {_machine()}")
    print(f"{loads}; {time.monotonic() - began:.0f} s\n")
    print(report.render(rows))
    drawn = charts.draw(
        rows,
        opts.out_dir,
        f"{time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, load average "
        f"{load_before.split()[0]} -> {load_average().split()[0]} (1 min)",
    )
    for path in drawn:
        print(f"\nchart: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def _args(argv: list[str]) -> tuple[list[str], Options]:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "sections", nargs="*", metavar="section", help=f"{', '.join(SECTIONS)} (default: all)"
    )
    d = Options()
    parser.add_argument("--leads", type=int, default=d.leads, help="cost: leads in the burst")
    parser.add_argument(
        "--seconds", type=float, default=d.seconds, help="gateway: wrk's seconds per server"
    )
    parser.add_argument(
        "--rates",
        default=",".join(f"{r:g}" for r in d.rates),
        help="latency: offered leads/s, comma-separated",
    )
    parser.add_argument(
        "--step-seconds", type=float, default=d.step_seconds, help="latency: seconds per rate"
    )
    args = parser.parse_args(argv)
    unknown = [s for s in args.sections if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    opts = Options(
        leads=args.leads,
        seconds=args.seconds,
        rates=tuple(float(r) for r in args.rates.split(",") if r.strip()),
        step_seconds=args.step_seconds,
    )
    return list(args.sections) or list(SECTIONS), opts


if __name__ == "__main__":
    sections, options = _args(sys.argv[1:])
    sys.exit(asyncio.run(main(sections, options)))
