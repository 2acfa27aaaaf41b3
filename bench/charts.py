"""PNG charts of ``make bench``'s tables (a picture reads faster than a table), drawn with
matplotlib's Agg backend (no display needed) into ``test-output/bench/``:

- ``latency.png``: the synchronous round trip's p50/p90/p99 against the offered rate, with
  the rate actually reached;
- ``cost.png``: CPU µs per lead of each process, largest first, with the total;
- ``gateway.png``: CPU µs per request of the bare handler, the relay and the gateway.

A table that is missing (its section did not run) draws nothing.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench.report import Table, tables

# Issue 15's targets for the synchronous round trip's p99, by offered leads/s.
TARGET_P99_MS = {300.0: 25.0, 1000.0: 60.0}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _number(text: str) -> float:
    """The leading number of a row label such as ``"300 leads/s"``."""
    return float(text.split()[0].replace(",", ""))


def latency(table: Table, path: Path, subtitle: str, rows: list[dict[str, Any]]) -> Path:
    plt = _pyplot()
    offered = [_number(r) for r in table.rows]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for column, style, offset in (("p50", "o-", -14), ("p90", "s--", None), ("p99", "^-.", 6)):
        ys = [table.values.get((r, column), math.nan) for r in table.rows]
        ax.plot(offered, ys, style, label=column)
        for x, y in zip(offered, ys, strict=True):
            if offset is not None and not math.isnan(y):
                ax.annotate(f"{y:,.0f}", (x, y), textcoords="offset points", xytext=(5, offset))
    targets = [(x, y) for x, y in TARGET_P99_MS.items() if x in offered]
    if targets:
        ax.plot(*zip(*targets, strict=True), "rx", markersize=9, label="p99 target (issue 15)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(offered, [f"{x:g}" for x in offered])
    reached = [table.values.get((r, "reached"), math.nan) for r in table.rows]
    ax.set_xlabel("offered leads/s (reached: " + ", ".join(f"{v:,.0f}" for v in reached) + ")")
    ax.set_ylabel("client-side round trip, ms")
    ax.set_title(
        "Speed-to-lead: synchronous call (Prefer: wait=5), paced\n" + subtitle, fontsize=10
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _bars(labels: list[str], values: list[float], path: Path, title: str, xlabel: str) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(labels) + 1.8), dpi=110)
    ax.barh(labels[::-1], values[::-1], color="#4472c4")
    for y, v in enumerate(values[::-1]):
        ax.annotate(f"{v:,.0f}", (v, y), textcoords="offset points", xytext=(4, -4))
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    ax.set_xlim(0, max(values, default=1) * 1.18)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def cost(table: Table, path: Path, subtitle: str, rows: list[dict[str, Any]]) -> Path:
    column = "CPU µs per lead"
    rate = next((r["value"] for r in rows if r["metric"] == "leads/s through everything"), None)
    procs = [r for r in table.rows if r != "total"]
    procs.sort(key=lambda r: table.values.get((r, column), 0.0), reverse=True)
    total = table.values.get(("total", column))
    title = "CPU per lead through the whole stack" + (f": {total:,.0f} µs" if total else "")
    return _bars(
        procs,
        [table.values.get((r, column), 0.0) for r in procs],
        path,
        title + (f"\n{rate:,.0f} leads/s through everything" if rate else "") + "\n" + subtitle,
        "CPU µs per lead",
    )


def gateway(table: Table, path: Path, subtitle: str, rows: list[dict[str, Any]]) -> Path:
    column = "CPU µs per request"
    return _bars(
        [r.split(":")[0].split("(")[0].strip() for r in table.rows],
        [table.values.get((r, column), 0.0) for r in table.rows],
        path,
        "Serving CPU per request\n" + subtitle,
        "CPU µs per request (serving processes only)",
    )


DRAWN = {"latency": latency, "cost": cost, "gateway": gateway}


def draw(rows: list[dict[str, Any]], out_dir: Path, subtitle: str) -> list[Path]:
    """A PNG per table of ``rows`` that has a chart; the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return [
        DRAWN[name](table, out_dir / f"{name}.png", subtitle, rows)
        for name, table in tables(rows).items()
        if name in DRAWN and table.rows
    ]
