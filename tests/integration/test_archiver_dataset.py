"""The archive is a data set: a day's segments exported from the local S3 server
(``leadwire archive export``) answer docs/archiver.md's DuckDB query with the numbers of
the requests archived, and ``zcat | jq`` reads a segment as it is."""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import orjson
import pytest

from shared.kafka import ensure_topics
from shared.settings import CommonSettings
from tests.support.archiver import archiver_settings, running_archiver, wait_archived
from tests.support.cli import acli
from tests.support.events import failed, processed, publish_events, rejected
from tests.support.processes import ROOT

pytestmark = pytest.mark.integration

DOC = ROOT / "docs" / "archiver.md"


def documented_query() -> str:
    """The SQL block that follows the ``duckdb-query`` marker in docs/archiver.md."""
    found = re.search(r"<!-- duckdb-query:.*?-->\s*```sql\n(.*?)```", DOC.read_text(), re.S)
    assert found, "docs/archiver.md has no DuckDB query block"
    return found.group(1)


def p95(values: list[float]) -> float:
    """quantile_cont: linear interpolation between the closest ranks."""
    ordered = sorted(values)
    at = 0.95 * (len(ordered) - 1)
    low = int(at)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (at - low)


async def test_a_days_segments_answer_the_documented_duckdb_query(
    settings: CommonSettings, settings_env: dict[str, str], tmp_path: Path
) -> None:
    await ensure_topics(settings)
    day = (datetime.now(UTC) - timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    ws_a, ws_b = uuid.uuid4(), uuid.uuid4()
    hooks = {ws_a: [uuid.uuid4(), uuid.uuid4()], ws_b: [uuid.uuid4()]}
    events = []
    for ws, webhooks in hooks.items():
        for n, wh in enumerate(webhooks):
            for i in range(40):
                at = day + timedelta(hours=(i * 7 + n) % 24, seconds=i)
                make = (processed, processed, failed, rejected)[i % 4]
                events.append(make(ws, wh, received_at=at, duration_ms=float(10 + (i * 37) % 90)))
    other_day = processed(ws_a, hooks[ws_a][0], received_at=day - timedelta(hours=1))
    await publish_events(settings, [*events, other_day])
    async with running_archiver(archiver_settings(settings)):
        await wait_archived(settings, len(events) + 1)

    out = tmp_path / "export"
    exported = await acli(
        settings_env, "archive", "export", "--day", f"{day:%Y-%m-%d}", "--to", str(out), "--json"
    )
    assert exported.code == 0, exported.stderr
    files = exported.json()["files"]
    assert files and all(f.endswith(".ndjson.gz") for f in files)

    sql = documented_query().replace("DIR", str(out)).replace("2025/10/25", f"{day:%Y/%m/%d}")
    rows = duckdb.connect().sql(sql).fetchall()

    groups: dict[tuple[str, str], list[float]] = defaultdict(list)
    for e in events:
        groups[(str(e.webhook_id), e.status)].append(e.processing.duration_ms)
    expected = [
        (wh, status, len(d), sum(d) / len(d), p95(d), len(d) if status == "failed" else 0)
        for (wh, status), d in sorted(groups.items())
    ]
    assert len(rows) == len(expected)
    for row, want in zip(rows, expected, strict=True):
        assert (str(row[0]), row[1], row[2], row[5]) == (want[0], want[1], want[2], want[5])
        # DuckDB rounds to one decimal (half away from zero): within 0.05 of the exact value.
        assert row[3] == pytest.approx(want[3], abs=0.051)
        assert row[4] == pytest.approx(want[4], abs=0.051)

    # zcat | jq: a segment as it is stored.
    first = Path(files[0])
    lines = subprocess.run(["zcat", str(first)], capture_output=True, check=True).stdout
    if shutil.which("jq"):
        lines = subprocess.run(
            ["jq", "-c", "{request_id, status}"], input=lines, capture_output=True, check=True
        ).stdout
    ids = {orjson.loads(line)["request_id"] for line in lines.splitlines()}
    assert ids and ids <= {str(e.request_id) for e in events}
