"""Ports for servers a test starts (gateways, stubs, private Kafka/Postgres/S3)."""

from __future__ import annotations

import random
import socket


def free_port(*, below_ephemeral: bool = False) -> int:
    """A TCP port on 127.0.0.1 that nothing holds right now.

    ``below_ephemeral=True``: a port below the kernel's ephemeral range, for a server the
    test stops and restarts on the same port (no client connection can take it meanwhile,
    and the infra manager need not reserve it)."""
    if not below_ephemeral:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])
    from infra.processes import ephemeral_range, port_bindable

    low, _ = ephemeral_range()
    for _ in range(200):
        port = random.randrange(20000, min(low, 32768) - 1)
        if port_bindable(port):
            return port
    raise RuntimeError("no free port below the ephemeral range")
