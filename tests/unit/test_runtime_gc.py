"""Every service process collects garbage the cheap way (shared.runtime.tune_gc): what is
alive at start-up is frozen out of the collector's view, young collections are rarer."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

PROGRAM = """
import asyncio, gc
from shared.runtime import run_service
from shared.settings import CommonSettings

async def service(settings, stop):
    print(gc.get_threshold()[0], gc.get_freeze_count() > 1000)

run_service("probe", CommonSettings(), service)
"""


def test_a_service_process_runs_with_the_tuned_collector() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["20000", "True"], done.stdout
