"""``python -m bench.soak``: the command (``make soak`` runs it); see :mod:`bench.soak`."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

import bench.soak
from bench.soak.run import SoakResult, run_soak
from bench.stack import say


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description=bench.soak.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", 300)))
    parser.add_argument("--rate", type=float, default=25.0, help="leads per second (default 25)")
    parser.add_argument("--stack", default=os.environ.get("LEADWIRE_SOAK_STACK", "soak"))
    parser.add_argument("--drain-seconds", type=float, default=300.0)
    parser.add_argument("--short", action="store_true", help="the short fault schedule (tests)")
    parser.add_argument("--port-base", type=int, default=18400)
    parser.add_argument(
        "--brokers",
        type=int,
        default=int(
            os.environ.get("KAFKA_BROKERS") or os.environ.get("LEADWIRE_KAFKA_BROKERS") or 1
        ),
        help="Kafka brokers (3: the cluster faults of bench.soak.cluster; env KAFKA_BROKERS)",
    )
    args = parser.parse_args(argv)

    async def _main() -> SoakResult:
        # SIGTERM ends the run like Ctrl-C: the task is cancelled and the stack stopped.
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await run_soak(
            seconds=args.seconds,
            rate=args.rate,
            stack_name=args.stack,
            short=args.short,
            drain_s=args.drain_seconds,
            port_base=args.port_base,
            brokers=args.brokers,
        )

    try:
        result = asyncio.run(_main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        say("interrupted; the stack was stopped")
        return 130
    print(result.text, flush=True)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
