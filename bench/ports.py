"""Free TCP ports on 127.0.0.1 for what a benchmark starts."""

from __future__ import annotations

import socket

from infra.processes import port_bindable

# Ports at or above this are in (or near) the kernel's ephemeral range.
EPHEMERAL_FLOOR = 32000


def free_port() -> int:
    """A port the kernel hands out now (for a process started at once and never restarted)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_ports(count: int, start: int) -> list[int]:
    """``count`` ports from ``start`` up that nothing listens on (below the ephemeral range,
    so an outgoing connection never holds one while its service restarts)."""
    found: list[int] = []
    port = start
    while len(found) < count:
        if port >= EPHEMERAL_FLOOR:
            raise RuntimeError(f"no {count} free ports from {start}")
        if port_bindable(port):
            found.append(port)
        port += 1
    return found
