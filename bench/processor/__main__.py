"""``python -m bench.processor``: the processor benchmark alone; see :mod:`bench.processor`."""

from __future__ import annotations

import asyncio

from bench.processor.run import run


def main() -> None:
    rows = asyncio.run(run())
    width = max(len(r["metric"]) for r in rows)
    for r in rows:
        value = r["value"]
        shown = f"{value:,.1f}" if isinstance(value, float) else str(value)
        print(f"{r['metric']:<{width}}  {shown:>12} {r['unit']:<8} {r['note']}")


if __name__ == "__main__":
    main()
