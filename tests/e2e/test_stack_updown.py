"""`make up` brings the whole system up and ready; `make down` leaves no process and no
listening port behind. Runs as a second stack beside any developer's `make up`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import aiohttp
import pytest

from infra import Stack, list_processes

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SERVICE_PORTS = {"ingest": 18280, "processor": 18281, "notifier": 18282, "analytics": 18283, "archiver": 18284}


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _launch(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infra.launch", command], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=300,
    )


async def test_up_is_ready_then_down_leaves_nothing_behind() -> None:
    name = f"updown{uuid.uuid4().hex[:4]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADWIRE_")}
    env.update({"LEADWIRE_STACK": name, "LEADWIRE_INGEST_WORKERS": "1"})
    env.update({f"LEADWIRE_{svc.upper()}_PORT": str(port) for svc, port in SERVICE_PORTS.items()})
    env["LEADWIRE_PUBLIC_URL"] = f"http://127.0.0.1:{SERVICE_PORTS['ingest']}"
    stack = Stack.for_name(name, ROOT)
    infra_ports = [stack.config.ports.kafka, stack.config.ports.kafka_controller,
                   stack.config.ports.postgres, stack.config.ports.s3]
    try:
        up = _launch("up", env)
        assert up.returncode == 0, up.stderr[-4000:]
        assert "curl -sS -X POST" in up.stdout

        stack_env = dict(
            line.split("=", 1) for line in (ROOT / ".leadwire" / name / "stack.env").read_text().splitlines()
            if line and not line.startswith("#")
        )
        for key in ("LEADWIRE_DATABASE_URL", "LEADWIRE_KAFKA_BOOTSTRAP", "LEADWIRE_S3_ENDPOINT",
                    "LEADWIRE_S3_BUCKET", "LEADWIRE_S3_ACCESS_KEY", "LEADWIRE_S3_SECRET_KEY",
                    *(f"LEADWIRE_{s.upper()}_URL" for s in SERVICE_PORTS)):
            assert stack_env.get(key), f"{key} missing from stack.env"

        async with aiohttp.ClientSession() as http:
            for svc, port in SERVICE_PORTS.items():
                async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                    assert resp.status == 200, f"{svc} not ready after up returned"
            # the printed demo webhook takes a lead
            url = stack_env["LEADWIRE_DEMO_WEBHOOK_URL"]
            async with http.post(url, json={"phone_number": "(626) 663-3444", "firstname": "Ann"}) as resp:
                assert resp.status == 202, await resp.text()
        pids = [p.pid for p in list_processes(name, project_root=ROOT)]
        assert len(pids) >= 3 + len(SERVICE_PORTS)
    finally:
        down = _launch("down", env)
    assert down.returncode == 0, down.stderr[-4000:]
    assert list_processes(name, project_root=ROOT) == []
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    busy = [p for p in [*SERVICE_PORTS.values(), *infra_ports] if _listening(p)]
    assert busy == [], f"ports still listening after down: {busy}"
    await stack.destroy()
