"""``make bench``'s text: every figure in one table, then each named table (the cells of
:func:`bench.figures.cell`) in the shape an issue quotes it, with its captions."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


def fmt(value: object) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _cell_text(value: float, unit: str) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    if unit == "ms":
        return f"{value:,.1f} ms"
    if unit == "%":
        return f"{value:.1f} %"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "per batch":
        return f"{value:,.1f}"
    return f"{value:,.0f}"


# The first column's header of each named table (its name otherwise).
ROW_HEADERS = {"cost": "process", "gateway": "server", "latency": "offered"}


@dataclass
class Table:
    name: str
    rows: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    cells: dict[tuple[str, str], str] = field(default_factory=dict)
    values: dict[tuple[str, str], float] = field(default_factory=dict)
    captions: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        head = [ROW_HEADERS.get(self.name, self.name), *self.columns]
        lines = [
            "| " + " | ".join(head) + " |",
            "|" + "---|" * len(head),
        ]
        for row in self.rows:
            shown = f"**{row}**" if row == "total" else row
            values = [self.cells.get((row, c), "") for c in self.columns]
            if row == "total":
                values = [f"**{v}**" if v else v for v in values]
            lines.append("| " + " | ".join([shown, *values]) + " |")
        return "\n".join([*lines, *(f"\n{c}" for c in self.captions)])


def tables(rows: Iterable[dict[str, Any]]) -> dict[str, Table]:
    """The named tables the rows make, in the order their first cell came."""
    out: dict[str, Table] = {}
    for r in rows:
        name = r.get("table")
        if not name:
            continue
        table = out.setdefault(name, Table(name))
        if r.get("caption"):
            table.captions.append(r["note"])
            continue
        row, column = r["row"], r["column"]
        if row not in table.rows:
            table.rows.append(row)
        if column not in table.columns:
            table.columns.append(column)
        table.cells[(row, column)] = _cell_text(r["value"], r["unit"])
        table.values[(row, column)] = r["value"]
    return out


def figures_table(rows: Iterable[dict[str, Any]]) -> str:
    """Every figure (not the captions), one line each."""
    headers = ("benchmark", "metric", "value", "unit", "note")
    table = [[fmt(r.get(h, "")) for h in headers] for r in rows if not r.get("caption")]
    widths = [
        max(len(h), *(len(row[i]) for row in table)) if table else len(h)
        for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in table]
    return "\n".join(lines)


def render(rows: list[dict[str, Any]]) -> str:
    parts = [figures_table(rows)]
    parts += [t.markdown() for t in tables(rows).values()]
    return "\n\n".join(parts)
