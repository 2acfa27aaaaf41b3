"""Running services and the CLI as real subprocesses from tests."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import aiohttp

from shared.settings import CommonSettings

ROOT = Path(__file__).resolve().parents[2]


def env_for(settings: CommonSettings, **extra: str) -> dict[str, str]:
    """The process env plus the settings as LEADWIRE_* variables."""
    env = dict(os.environ)
    for name, value in settings.model_dump().items():
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[f"LEADWIRE_{name.upper()}"] = str(value)
    env["LEADWIRE_LOG_FORMAT"] = "json"
    env.update(extra)
    return env


class ServiceProcess:
    """``python -m services.<name>`` (or ``module``) as a subprocess with its log captured
    to a file."""

    def __init__(
        self, name: str, env: Mapping[str, str], log_dir: Path, *, module: str | None = None
    ) -> None:
        self.name = name
        self.module = module or f"services.{name}"
        self.env = dict(env)
        self.log_path = log_dir / f"{name}-{int(time.time() * 1000)}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 20) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def wait_ready(self, url: str, deadline_s: float = 60) -> None:
        """Poll ``url`` (a /readyz) until 200, failing early if the process died."""
        end = time.monotonic() + deadline_s
        async with aiohttp.ClientSession() as http:
            while True:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"{self.name} exited {self.proc.returncode}:\n{self.logs()[-3000:]}"
                    )
                try:
                    async with http.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
                        if resp.status == 200:
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
                if time.monotonic() > end:
                    raise TimeoutError(f"{self.name} not ready at {url}:\n{self.logs()[-3000:]}")
                await asyncio.sleep(0.1)
