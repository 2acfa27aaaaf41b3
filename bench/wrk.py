"""wrk as the load tool for a server's maximum rate: ``wrk -t1 -c32 -d10s`` with a Lua
script that POSTs distinct leads read from a file (one JSON body a line), and reports its
figures as one JSON line. When wrk is not installed, :mod:`bench.httpload` does the same
(closed loop, same connections and duration) and the figures say so."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import orjson

from bench.httpload import Plan, build_requests, load

SCRIPT = r"""
local reqs, n, i = {}, 0, 0
init = function(args)
  for line in io.lines(args[1]) do
    n = n + 1
    reqs[n] = wrk.format("POST", args[2], {["Content-Type"] = "application/json"}, line)
  end
end
request = function()
  i = i % n + 1
  return reqs[i]
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK {"requests": %d, "us": %d, "connect": %d, "read": %d, "write": %d, "status": %d, '
      .. '"timeout": %d, "p50": %d, "p90": %d, "p99": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
"""


@dataclass(frozen=True)
class Rate:
    """A server's rate under the load tool: requests answered, per second, latencies."""

    tool: str  # "wrk" or "httpload"
    requests: int
    seconds: float
    errors: int  # connection errors, timeouts, answers other than 2xx/3xx
    p50_ms: float
    p90_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


def available() -> bool:
    return shutil.which("wrk") is not None


async def _wrk(port: int, path: str, bodies: list[bytes], connections: int, seconds: float) -> Rate:
    with tempfile.TemporaryDirectory(prefix="leadwire-wrk-") as tmp:
        script, data = Path(tmp) / "leads.lua", Path(tmp) / "leads.ndjson"
        script.write_text(SCRIPT)
        data.write_bytes(b"\n".join(bodies) + b"\n")
        proc = await asyncio.create_subprocess_exec(
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds:g}s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}{path}",
            "--",
            str(data),
            path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), seconds + 60)
    text = out.decode(errors="replace")
    line = next((ln for ln in text.splitlines() if ln.startswith("WRK ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {text[-1000:]}")
    doc = orjson.loads(line[4:])
    errors = sum(doc[k] for k in ("connect", "read", "write", "status", "timeout"))
    return Rate(
        tool="wrk",
        requests=doc["requests"],
        seconds=doc["us"] / 1e6,
        errors=errors,
        p50_ms=doc["p50"] / 1000,
        p90_ms=doc["p90"] / 1000,
        p99_ms=doc["p99"] / 1000,
    )


async def max_rate(
    port: int, path: str, bodies: list[bytes], *, connections: int = 32, seconds: float = 10.0
) -> Rate:
    """Drive the server on ``port`` as fast as it answers, for ``seconds``."""
    if available():
        return await _wrk(port, path, bodies, connections, seconds)
    result = await load(
        Plan(
            port=port,
            requests=build_requests(path, bodies),
            concurrency=connections,
            seconds=seconds,
        )
    )
    ok = sum(n for status, n in result.statuses.items() if 200 <= status < 400)
    return Rate(
        tool="httpload",
        requests=result.requests,
        seconds=result.seconds,
        errors=result.errors + result.requests - ok,
        p50_ms=result.pct(0.5),
        p90_ms=result.pct(0.9),
        p99_ms=result.pct(0.99),
    )
