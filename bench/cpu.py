"""CPU time of processes, read from /proc: what a benchmark charges to each process.

A *process* here is a process-group leader and its workers: every live pid whose process
group is the leader's, plus the leader's direct children (Postgres backends run in
sessions of their own under the postmaster; the gateway's workers under its supervisor).
Each pid's ``utime + stime`` (fields 14 and 15 of ``/proc/<pid>/stat``, all its threads)
and ``cutime + cstime`` (its children that ended and were waited for) are read at the
start, about once a second during the run and at the end; a pid that appears during the
run counts from zero. A pid that ends during the run counts in full through its parent's
``cutime`` when the parent is in the tree (a backend the postmaster reaped, a worker the
supervisor restarted), else up to its last reading. A pid is known by its pid and start
time, so a reused pid is a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Stat:
    pid: int
    ppid: int
    pgrp: int
    started: int  # start time in clock ticks since boot: tells a reused pid apart
    ticks: int  # utime + stime
    child_ticks: int  # cutime + cstime: children that ended and were waited for

    @property
    def key(self) -> tuple[int, int]:
        return (self.pid, self.started)


def _stat(pid: int) -> Stat | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return Stat(
        pid=pid,
        ppid=int(fields[1]),
        pgrp=int(fields[2]),
        started=int(fields[19]),
        ticks=int(fields[11]) + int(fields[12]),
        child_ticks=int(fields[13]) + int(fields[14]),
    )


def _all_stats() -> Iterator[Stat]:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None:
                yield stat


Tree = dict[tuple[int, int], Stat]  # one named process tree: its pids by (pid, start time)


def snapshot(leaders: Mapping[str, int]) -> dict[str, Tree]:
    """Per name: every pid of its tree; one /proc scan."""
    owner = {pid: name for name, pid in leaders.items()}
    out: dict[str, Tree] = {name: {} for name in leaders}
    for stat in _all_stats():
        name = owner.get(stat.pgrp) or owner.get(stat.ppid) or owner.get(stat.pid)
        if name is not None:
            out[name][stat.key] = stat
    return out


def used_ticks(first: Tree, seen: Tree, last: Tree) -> int:
    """Ticks a tree used between its ``first`` and ``last`` snapshots (``seen``: the latest
    reading of every pid it had meanwhile)."""
    alive = {pid for pid, _ in last}
    ticks = 0
    for key, stat in seen.items():
        before = first.get(key)
        own, children = (before.ticks, before.child_ticks) if before else (0, 0)
        if key not in last and stat.ppid in alive:
            ticks -= own + children  # its parent's cutime now holds all of it
        else:
            ticks += stat.ticks - own + stat.child_ticks - children
    return max(ticks, 0)


@dataclass
class CpuMeter:
    """CPU seconds per named process tree between :meth:`start` and :meth:`stop`."""

    leaders: dict[str, int]
    interval_s: float = 1.0
    _first: dict[str, Tree] = field(default_factory=dict)
    _seen: dict[str, Tree] = field(default_factory=dict)
    _last: dict[str, Tree] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None
    started_at: float = 0.0
    stopped_at: float = 0.0

    def _read(self) -> None:
        self._last = snapshot(self.leaders)
        for name, tree in self._last.items():
            self._seen.setdefault(name, {}).update(tree)

    async def _every(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await asyncio.to_thread(self._read)

    async def start(self) -> None:
        self._first = await asyncio.to_thread(snapshot, self.leaders)
        self._seen = {name: dict(tree) for name, tree in self._first.items()}
        self._last = self._first
        self.started_at = time.monotonic()
        self._task = asyncio.create_task(self._every())

    async def stop(self) -> dict[str, float]:
        """CPU seconds per name since :meth:`start`."""
        self.stopped_at = time.monotonic()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.to_thread(self._read)
        return self.seconds()

    def seconds(self) -> dict[str, float]:
        return {
            name: used_ticks(self._first.get(name, {}), seen, self._last.get(name, {})) * TICK_S
            for name, seen in self._seen.items()
        }

    @property
    def elapsed_s(self) -> float:
        return (self.stopped_at or time.monotonic()) - self.started_at


def load_average() -> str:
    """The machine's load average (1, 5, 15 min), as ``uptime`` shows it."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"
