"""How every Kafka client of leadwire connects: one place for the bootstrap servers,
SASL/SCRAM and TLS (docs/security.md).

:func:`client_config` gives the keyword arguments every aiokafka producer, consumer and
admin client is built with, in the services, the CLI, the benchmarks and the tests, so a
broker that requires SCRAM (``LEADWIRE_KAFKA_SECURITY_PROTOCOL=SASL_SSL`` or
``SASL_PLAINTEXT``) is reached the same way by all of them.
"""

from __future__ import annotations

import functools
import ssl
from typing import Any

from shared.settings import CommonSettings


def client_config(settings: CommonSettings) -> dict[str, Any]:
    """``bootstrap_servers`` plus the security settings, for any aiokafka client."""
    protocol = settings.kafka_security_protocol
    config: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": protocol,
    }
    if protocol.startswith("SASL_"):
        config["sasl_mechanism"] = settings.kafka_sasl_mechanism
        config["sasl_plain_username"] = settings.kafka_sasl_username
        config["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    if protocol in ("SSL", "SASL_SSL"):
        config["ssl_context"] = _ssl_context(settings.kafka_ssl_cafile)
    return config


@functools.lru_cache(maxsize=8)
def _ssl_context(cafile: str | None) -> ssl.SSLContext:
    """Certificates verified against ``cafile`` (else the system's trust store), host
    names checked; built once per CA file."""
    return ssl.create_default_context(cafile=cafile)
