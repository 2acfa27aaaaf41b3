"""One logging setup for every service: structlog, JSON off a terminal, PII redacted.

Bind context with ``structlog.contextvars.bind_contextvars(request_id=..., topic=...,
partition=..., offset=...)`` and every line of that work carries it. The redaction
processor runs last before rendering, so nothing a caller passes can leak a phone, an
email, a name or a secret: sensitive keys, and any key named like a secret header
(:func:`shared.redact.is_secret_header`, at any depth), are masked whole, and phone-,
email- and secret-shaped substrings are masked in every other string value.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import orjson
import structlog

from shared.redact import is_secret_header

REDACTED = "[redacted]"

# Keys whose values are always masked, whatever they hold.
SENSITIVE_KEYS = frozenset(
    {
        "phone",
        "phone_number",
        "email",
        "first_name",
        "firstname",
        "last_name",
        "lastname",
        "name",
        "full_name",
        "secret",
        "password",
        "token",
        "api_key",
        "authorization",
        "signature",
        "webhook_secret",
        "payload",
        "body",
        "headers",
        "contact",
        "lead",
        "recipient",
        "recipients",
        "to",
    }
)
# Keys that carry ids, counters and positions; left alone for speed and readability.
_SAFE_KEYS = frozenset(
    {"timestamp", "level", "logger", "service", "topic", "partition", "offset", "count", "ms"}
)

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# A phone is 7-15 digits, maybe with a +, spaces, dots, dashes or parentheses between.
_PHONE = re.compile(r"(?<![\w-])\+?\(?\d(?:[\s().-]{0,2}\d){6,16}(?![\w-])")
_SECRET = re.compile(
    r"(whsec_[A-Za-z0-9+/=_-]+|v1,[A-Za-z0-9+/=]{20,}|sha256=[0-9a-fA-F]{16,}|"
    r"(?i:bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}|lwk_[A-Za-z0-9_-]{8,})"
)


def scrub(text: str) -> str:
    """Mask email-, phone- and secret-shaped substrings of a string."""
    if not text:
        return text
    text = _SECRET.sub(REDACTED, text)
    text = _EMAIL.sub(REDACTED, text)
    return _PHONE.sub(REDACTED, text)


def _redact_value(key: str, value: Any) -> Any:
    if key.lower() in SENSITIVE_KEYS:
        return REDACTED if value is not None else None
    if key in _SAFE_KEYS or key.endswith("_id") or key.endswith("_ms"):
        return value
    if is_secret_header(key):  # the same names the gateway and the archive drop
        return REDACTED if value is not None else None
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, Mapping):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact_value(key, v) for v in value]
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return scrub(str(value))


def redact_pii(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask PII and secrets in every field of a log line."""
    for key in list(event_dict):
        event_dict[key] = _redact_value(key, event_dict[key])
    return event_dict


def _json_dumps(obj: Any, **_: Any) -> str:
    return orjson.dumps(obj, default=str).decode()


def configure_logging(service: str, *, level: str = "INFO", fmt: str = "auto") -> None:
    """Configure structlog and stdlib logging once, at process start."""
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_json_dumps)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _bind_service(service),
            redact_pii,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Library chatter (connection retries during a broker restart) stays at WARNING.
    for noisy in ("aiokafka", "kafka", "botocore", "aiobotocore", "asyncio", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def _bind_service(service: str) -> Any:
    def processor(
        _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        event_dict.setdefault("service", service)
        return event_dict

    return processor


def get_logger(name: str | None = None) -> Any:
    return structlog.stdlib.get_logger(name)
