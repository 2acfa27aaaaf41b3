"""Settings read once from the environment (prefix ``LEADWIRE_``).

Every service subclasses :class:`CommonSettings`; ``__main__`` reads it once and passes it
down. Nothing here connects to anything.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "LEADWIRE_"


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

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
    # Prepended to every topic name; tests use it to get topics of their own.
    topic_prefix: str = "leadwire."
    # Bound on every await that talks to Kafka (send, flush, commit, start, stop).
    kafka_timeout_s: float = Field(default=10.0, gt=0)

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

    # Every service serves /healthz, /readyz and /metrics (and its API) on its own port.
    http_host: str = "127.0.0.1"
    ingest_port: int = 8080
    processor_port: int = 8081
    notifier_port: int = 8082
    analytics_port: int = 8083
    archiver_port: int = 8084
    api_port: int = 8085

    # System-health alerts (shared/health.py): a readiness check failing for this long
    # raises one alert event (and one more when it passes again); checks run this often.
    health_alert_after_s: float = Field(default=60.0, gt=0)
    health_check_interval_s: float = Field(default=5.0, gt=0)
    # The archiver alerts when the oldest outcome it has not archived is older than this.
    health_archive_behind_minutes: float = Field(default=10.0, gt=0)

    def topic(self, name: str) -> str:
        """The full topic name for a logical topic (see :mod:`shared.topics`)."""
        return f"{self.topic_prefix}{name}"
