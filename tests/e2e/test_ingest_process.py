"""``python -m services.ingest`` as real processes: two workers on one port, metrics added
up across them, a clean SIGTERM, and no personal data or secret in any log line (S7)."""

from __future__ import annotations

import re
import signal
import time
import uuid
from pathlib import Path

import aiohttp
import orjson
import pytest

from shared import topics
from shared.events import decode_raw
from shared.kafka import ensure_topics
from shared.settings import CommonSettings
from tests.support.ingest import auth_headers, create_webhook
from tests.support.net import free_port
from tests.support.polling import eventually
from tests.support.processes import ServiceProcess, env_for
from tests.support.topics import read_topic

pytestmark = pytest.mark.e2e

CANARY_PHONE_DIGITS = "4155550123"
CANARY_EMAIL = "canary.s7.zz@example.org"
CANARY_NAME = "Zyxwvcanary"


async def test_two_workers_one_port_clean_logs_and_clean_stop(
    settings: CommonSettings, tmp_path: Path
) -> None:
    await ensure_topics(settings)
    hook = await create_webhook(settings.database_url, auth_mode="standard")
    basic = await create_webhook(settings.database_url, auth_mode="basic")
    port = free_port()
    env = env_for(
        settings,
        LEADWIRE_INGEST_PORT=str(port),
        LEADWIRE_INGEST_WORKERS="2",
        LEADWIRE_LOG_LEVEL="DEBUG",
        LEADWIRE_PUBLIC_URL=f"http://127.0.0.1:{port}",
    )
    proc = ServiceProcess("ingest", env, tmp_path).start()
    url = f"http://127.0.0.1:{port}"
    try:
        # /readyz, /metrics: on the ops listener, which both workers share too.
        ops = settings.ops_url("ingest")
        await proc.wait_ready(f"{ops}/readyz", deadline_s=60)

        # Ready means one worker answers; the second may still be starting on a busy
        # machine. Both listen before the requests go out (and so before the stop).
        async def logs() -> str:
            return proc.logs()

        await eventually(
            logs,
            until=lambda text: text.count("ingest_listening") == 2,
            deadline_s=60,
            what="both workers listening",
        )
        lead = {
            "first_name": CANARY_NAME,
            "phone": f"({CANARY_PHONE_DIGITS[:3]}) {CANARY_PHONE_DIGITS[3:6]}-{CANARY_PHONE_DIGITS[6:]}",
            "email": CANARY_EMAIL,
        }
        accepted: set[str] = set()
        signatures: list[str] = []
        # Fresh connections so both workers get some (the kernel spreads connections).
        for i in range(20):
            body = orjson.dumps({**lead, "n": i})
            headers = auth_headers(hook, body)
            signatures.append(headers["webhook-signature"])
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    f"{url}/webhooks/{hook.id}",
                    data=body,
                    headers={**headers, "Content-Type": "application/json"},
                ) as resp,
            ):
                assert resp.status == 202, await resp.text()
                accepted.add((await resp.json())["request_id"])
        async with aiohttp.ClientSession() as http:
            # Rejected for validation, with the canaries in the body.
            bad = orjson.dumps(
                {
                    "first_name": CANARY_NAME,
                    "email": CANARY_EMAIL.replace("@", "@@"),
                    "phone": "555",
                }
            )
            async with http.post(
                f"{url}/webhooks/{hook.id}",
                data=bad,
                headers={**auth_headers(hook, bad), "Content-Type": "application/json"},
            ) as resp:
                assert resp.status == 400
            # Forged: a signature and the canaries, refused.
            forged = orjson.dumps(lead)
            sig = auth_headers(hook, b"something else")
            signatures.append(sig["webhook-signature"])
            async with http.post(
                f"{url}/webhooks/{hook.id}",
                data=forged,
                headers={**sig, "Content-Type": "application/json"},
            ) as resp:
                assert resp.status == 401
            # Basic auth with a wrong password that looks like a secret.
            wrong = {
                "Authorization": "Basic "
                + __import__("base64")
                .b64encode(f"{basic.username}:CanaryPassw0rdZZ".encode())
                .decode()
            }
            async with http.post(
                f"{url}/webhooks/{basic.id}",
                data=forged,
                headers={**wrong, "Content-Type": "application/json"},
            ) as resp:
                assert resp.status == 401
            # A huge header carrying the canary email.
            async with http.post(
                f"{url}/webhooks/{hook.id}",
                data=forged,
                headers={"X-Big": CANARY_EMAIL * 1000, "Content-Type": "application/json"},
            ) as resp:
                assert resp.status == 431

            # /metrics adds up both workers: 20 accepted in all.
            async with http.get(f"{ops}/metrics") as resp:
                text = await resp.text()
            counts = re.findall(
                rf'leadwire_ingest_requests_total\{{status="202",webhook="{hook.id}"\}} ([0-9.e+]+)',
                text,
            )
            counts += re.findall(
                rf'leadwire_ingest_requests_total\{{webhook="{hook.id}",status="202"\}} ([0-9.e+]+)',
                text,
            )
            assert counts and float(counts[0]) == 20.0, text[:3000]

        raw = [decode_raw(m) for m in await read_topic(settings, topics.RAW)]
        assert {str(e.request_id) for e in raw} == accepted
        assert all(e.lead.phone == f"+1{CANARY_PHONE_DIGITS}" for e in raw)

        started = time.monotonic()
        proc.kill(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert time.monotonic() - started < 20
    finally:
        proc.stop()

    logs = proc.logs()
    assert "ingest_listening" in logs and logs.count("ingest_listening") == 2, logs[-2000:]
    canaries = [
        CANARY_PHONE_DIGITS,
        CANARY_PHONE_DIGITS[3:6] + "-" + CANARY_PHONE_DIGITS[6:],
        CANARY_EMAIL,
        CANARY_NAME,
        "CanaryPassw0rdZZ",
        hook.secret,
        (hook.secret or "")[6:],
        basic.secret,
        *signatures,
        *(s.split(",", 1)[1] for s in signatures),
    ]
    hits = [c for c in canaries if c and c in logs]
    print(f"log lines: {len(logs.splitlines())}, canary hits: {len(hits)}")
    assert hits == [], f"canaries found in the gateway's logs: {hits}"
    # Every line is JSON (machine-readable logs off a terminal).
    for line in logs.splitlines():
        if line.strip():
            orjson.loads(line)
    assert uuid.UUID(next(iter(accepted)))
