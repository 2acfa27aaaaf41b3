"""``python -m bench.loadgen URL``: plain unsigned generic leads to one webhook URL."""

from __future__ import annotations

import argparse
import asyncio
import json

from bench.loadgen.generator import NO_EXTRAS, LoadGenerator
from bench.loadgen.vendors import Target


async def _main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.loadgen",
        description="Send generic leads to one unsigned webhook URL.",
    )
    parser.add_argument("url")
    parser.add_argument("--rate", type=float, default=20)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    target = Target(name="hook", id="", url=args.url, vendor="generic")
    gen = LoadGenerator(
        [target],
        rate=args.rate,
        total=int(args.rate * args.seconds) + 1,
        seconds=args.seconds,
        mix=NO_EXTRAS,
    )
    await gen.run()
    print(json.dumps(gen.summary(), indent=2))


if __name__ == "__main__":
    asyncio.run(_main())
