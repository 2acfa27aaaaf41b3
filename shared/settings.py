"""Settings read once from the environment (prefix ``LEADWIRE_``).

Every service subclasses :class:`CommonSettings`; ``__main__`` reads it once and passes it
down. Nothing here connects to anything.

:meth:`CommonSettings.problems` says what a service must refuse to start with (the
service's entry point exits naming each, :func:`shared.runtime.refuse_unsafe`): in every
mode, a credential that would travel in clear; with ``LEADWIRE_ENV=production`` also a
default or empty credential (docs/security.md, the production checklist).
"""

from __future__ import annotations

from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "LEADWIRE_"

# Credentials that ship with the project (the local stack, the compose file): never in
# production.
DEFAULT_S3_KEYS = ("leadwire", "leadwire-secret-key")
DEFAULT_DATABASE_PASSWORDS = frozenset({"postgres"})


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)
    # Whether the service reads or writes the archive bucket (its S3 keys are checked).
    uses_s3: ClassVar[bool] = False

    # production: refuse to start on a default or empty credential (problems()).
    env: str = Field(default="development", pattern="^(development|production)$")

    database_url: str = "postgresql://postgres@127.0.0.1:55432/leadwire"
    db_pool_min: int = 1
    db_pool_max: int = 10

    kafka_bootstrap: str = "127.0.0.1:19092"
    # How clients authenticate to Kafka (shared/kafka/client.py, docs/security.md):
    # PLAINTEXT (local development only), SASL_PLAINTEXT, or SASL_SSL / SSL with TLS
    # verified against kafka_ssl_cafile (else the system's trust store).
    kafka_security_protocol: str = Field(
        default="PLAINTEXT", pattern="^(PLAINTEXT|SSL|SASL_PLAINTEXT|SASL_SSL)$"
    )
    kafka_sasl_mechanism: str = Field(
        default="SCRAM-SHA-512", pattern="^(SCRAM-SHA-512|SCRAM-SHA-256|PLAIN)$"
    )
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    kafka_ssl_cafile: str | None = None
    # Topics made by leadwire (shared/kafka/admin.py): partitions, and replicas of each
    # partition with how many must hold a write before acks=all acknowledges it. One broker:
    # 1 and 1; a cluster (docs/deploy.md): 3 and 2, so an acknowledged lead is on two
    # brokers' disks, and with a single broker left the gateway answers 503, never 202.
    kafka_partitions: int = Field(default=4, ge=1)
    kafka_replication_factor: int = Field(default=1, ge=1)
    kafka_min_insync_replicas: int = Field(default=1, ge=1)
    # Prepended to every topic name; tests use it to get topics of their own.
    topic_prefix: str = "leadwire."
    # Bound on every await that talks to Kafka (send, flush, commit, start, stop).
    kafka_timeout_s: float = Field(default=10.0, gt=0)
    # How often a busy consumer commits its offsets (ms): each commit is a write to the
    # broker's offsets log. An idle poll, a rebalance and a stop commit at once; a crash
    # redelivers at most this much more (every consumer dedupes). 0: after every batch.
    kafka_commit_interval_ms: int = Field(default=500, ge=0, le=60_000)

    s3_endpoint: str = "http://127.0.0.1:7070"
    s3_bucket: str = "leadwire-archive"
    s3_access_key: str = "leadwire"
    s3_secret_key: SecretStr = SecretStr("leadwire-secret-key")
    s3_region: str = "us-east-1"

    log_level: str = "INFO"
    # auto: readable on a terminal, JSON otherwise.
    log_format: str = Field(default="auto", pattern="^(auto|json|console)$")

    # Base URL vendors use to reach the gateway (printed by the CLI in webhook URLs).
    public_url: str = "http://127.0.0.1:8080"

    # Public listeners, on http_host: the gateway (webhooks), the notifier (Socket.IO),
    # analytics (its API and dashboard), the management API. The processor and the
    # archiver have none.
    http_host: str = "127.0.0.1"
    ingest_port: int = 8080
    notifier_port: int = 8082
    analytics_port: int = 8083
    api_port: int = 8085
    # Every service's /healthz, /readyz and /metrics: an ops listener of its own, never on
    # a public port, on loopback unless ops_host says otherwise (docs/security.md).
    ops_host: str = "127.0.0.1"
    ingest_ops_port: int = 9080
    processor_ops_port: int = 9081
    notifier_ops_port: int = 9082
    analytics_ops_port: int = 9083
    archiver_ops_port: int = 9084
    api_ops_port: int = 9085

    # System-health alerts (shared/health.py): a readiness check failing for this long
    # raises one alert event (and one more when it passes again); checks run this often.
    health_alert_after_s: float = Field(default=60.0, gt=0)
    health_check_interval_s: float = Field(default=5.0, gt=0)
    # The archiver alerts when the oldest outcome it has not archived is older than this.
    health_archive_behind_minutes: float = Field(default=10.0, gt=0)

    def topic(self, name: str) -> str:
        """The full topic name for a logical topic (see :mod:`shared.topics`)."""
        return f"{self.topic_prefix}{name}"

    def ops_port(self, service: str) -> int:
        """The port of ``service``'s ops listener (``LEADWIRE_<SERVICE>_OPS_PORT``)."""
        return int(getattr(self, f"{service}_ops_port"))

    def ops_url(self, service: str) -> str:
        """Where ``service``'s /healthz, /readyz and /metrics answer, for a client on
        this host (a wildcard ``ops_host`` is reached through loopback)."""
        host = "127.0.0.1" if self.ops_host in ("", "0.0.0.0", "::") else self.ops_host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.ops_port(service)}"

    @property
    def production(self) -> bool:
        return self.env == "production"

    def problems(self) -> list[str]:
        """What these settings must not start with, one line each, led by the variable's
        name (empty: safe). Services add their own (the notifier: SMTP)."""
        found = _kafka_problems(self)
        if self.production:
            found += _database_problems(self.database_url)
            if self.uses_s3:
                found += _s3_problems(self.s3_access_key, self.s3_secret_key.get_secret_value())
        return found


def _kafka_problems(s: CommonSettings) -> list[str]:
    found: list[str] = []
    sasl = s.kafka_security_protocol.startswith("SASL_")
    if s.production and not sasl:
        found.append(
            f"LEADWIRE_KAFKA_SECURITY_PROTOCOL={s.kafka_security_protocol}: Kafka without "
            "SASL; use SASL_SSL (or SASL_PLAINTEXT) with a SCRAM user of the service's own"
        )
    if sasl and not (s.kafka_sasl_username and s.kafka_sasl_password.get_secret_value()):
        found.append(
            "LEADWIRE_KAFKA_SASL_USERNAME / LEADWIRE_KAFKA_SASL_PASSWORD: empty with "
            f"{s.kafka_security_protocol}"
        )
    if s.kafka_security_protocol == "SASL_PLAINTEXT" and s.kafka_sasl_mechanism == "PLAIN":
        found.append(
            "LEADWIRE_KAFKA_SASL_MECHANISM=PLAIN over SASL_PLAINTEXT sends the password in "
            "clear; use SCRAM-SHA-512, or SASL_SSL"
        )
    return found


def _database_problems(url: str) -> list[str]:
    parts = urlsplit(url)
    password = parts.password or (parse_qs(parts.query).get("password") or [""])[0]
    if not password:
        return ["LEADWIRE_DATABASE_URL: no password (postgresql://<role>:<password>@host/db)"]
    if password in DEFAULT_DATABASE_PASSWORDS:
        return [f"LEADWIRE_DATABASE_URL: the default password {password!r}"]
    return []


def _s3_problems(access_key: str, secret_key: str) -> list[str]:
    found: list[str] = []
    if not access_key or access_key == DEFAULT_S3_KEYS[0]:
        found.append(f"LEADWIRE_S3_ACCESS_KEY: {'empty' if not access_key else 'the default'}")
    if not secret_key or secret_key == DEFAULT_S3_KEYS[1]:
        found.append(f"LEADWIRE_S3_SECRET_KEY: {'empty' if not secret_key else 'the default'}")
    return found
