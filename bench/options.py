"""What ``python -m bench`` was asked to do: the sizes of the sections that take any."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Options:
    # cost: leads sent in the burst
    leads: int = 10_000
    # gateway: wrk's duration per server
    seconds: float = 10.0
    # latency: the offered rates, and how long each is held
    rates: tuple[float, ...] = (20.0, 100.0, 300.0, 1000.0)
    step_seconds: float = 10.0
    # where the charts go
    out_dir: Path = ROOT / "test-output" / "bench"
