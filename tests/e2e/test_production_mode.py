"""A4 through the services' entry points: ``python -m services.<name>`` with
``LEADWIRE_ENV=production`` and the shipped defaults exits 78 before connecting to
anything, with one message naming each problem; SMTP credentials without TLS are refused
in development too. (Nothing needs to run: a refusal comes before any connection.)"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.e2e

# What each service must name with the defaults (all: Kafka without SASL, a database
# without a password; the bucket's users: the default S3 keys).
EXPECTED = {
    "ingest": 2,
    "processor": 2,
    "notifier": 2,
    "analytics": 2,
    "archiver": 4,
    "api": 4,
}


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADWIRE_")}
    env.update(extra)
    return env


def _start(name: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", f"services.{name}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_every_service_refuses_production_on_the_defaults_naming_each() -> None:
    procs = {name: _start(name, _clean_env(LEADWIRE_ENV="production")) for name in EXPECTED}
    for name, proc in procs.items():
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 78, f"{name} exited {proc.returncode}: {err[-2000:]}"
        assert err.startswith(f"leadwire {name} refuses to start (LEADWIRE_ENV=production):")
        assert err.count("\n  - ") == EXPECTED[name], err
        assert "LEADWIRE_KAFKA_SECURITY_PROTOCOL=PLAINTEXT" in err
        assert "LEADWIRE_DATABASE_URL: no password" in err
        if EXPECTED[name] == 4:
            assert "LEADWIRE_S3_ACCESS_KEY" in err and "LEADWIRE_S3_SECRET_KEY" in err
        # Only names, never a value: the default secret key is not echoed.
        assert "leadwire-secret-key" not in err


def test_smtp_credentials_without_tls_are_refused_in_development_too() -> None:
    env = _clean_env(
        LEADWIRE_SMTP_HOST="mail.internal",
        LEADWIRE_SMTP_USERNAME="leadwire",
        LEADWIRE_SMTP_PASSWORD="canary-smtp",
        LEADWIRE_SMTP_STARTTLS="false",
    )
    proc = _start("notifier", env)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 78, err[-2000:]
    assert err.startswith("leadwire notifier refuses to start:")
    assert "LEADWIRE_SMTP_STARTTLS=false with SMTP credentials" in err
    assert "canary-smtp" not in err
