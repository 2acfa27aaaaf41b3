"""The local broker with SCRAM (``LEADWIRE_KAFKA_AUTH=scram``): users, their passwords,
the broker's SASL settings and the ACLs of each service (docs/security.md).

- Users are created when the storage is formatted (``StorageTool format --add-scram``):
  ``admin`` (a super user: topics, the CLI, the launcher) and one user per service
  (``leadwire-<service>``). Passwords are random, made once per stack and kept in
  ``<state>/kafka/scram.json`` (mode 0600).
- The client listener is ``SASL_PLAINTEXT`` with SCRAM-SHA-512 on 127.0.0.1 (production
  adds TLS: ``SASL_SSL``); the controller listener stays PLAINTEXT on loopback, whose
  principal ``ANONYMOUS`` must be a super user for the controller to register itself.
- ``allow.everyone.if.no.acl.found=false``: a service user may do only what
  :func:`acl_plan` grants it (the gateway writes the raw and outcome topics, and so on).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.errors import InfraError

AUTH_MODES = ("none", "scram")
MECHANISM = "SCRAM-SHA-512"
ADMIN = "admin"
SERVICES = ("ingest", "processor", "notifier", "analytics", "archiver", "api")

# Logical topic names (shared/topics.py), kept here as data: infra imports no service code.
RAW, OUTCOMES, ALERTS = "webhooks.raw", "outcomes", "alerts"
FETCH = "webhooks.fetch"
DEADLETTER, NOTIFY_DEADLETTER = "deadletter", "notifications.deadletter"

# What each service does with each topic; READ services also read as a consumer group.
# Writing a topic lets the producer be idempotent (KIP-679) and describe the topic.
SERVICE_ACCESS: dict[str, dict[str, tuple[str, ...]]] = {
    # The gateway: accepted leads, and the outcomes of the requests it rejects itself;
    # Facebook leads to fetch, which its fetcher reads (and dead-letters those it cannot).
    "ingest": {"read": (FETCH,), "write": (RAW, FETCH, OUTCOMES, DEADLETTER)},
    "processor": {"read": (RAW,), "write": (OUTCOMES, DEADLETTER, ALERTS)},
    "notifier": {
        "read": (OUTCOMES, ALERTS),
        "write": (NOTIFY_DEADLETTER, DEADLETTER, ALERTS),
    },
    "analytics": {"read": (OUTCOMES, DEADLETTER), "write": (ALERTS, DEADLETTER)},
    "archiver": {"read": (OUTCOMES,), "write": (DEADLETTER, ALERTS)},
    # The management API: replays (raw), dead letters read and sent back to their topics.
    "api": {
        "read": (DEADLETTER, NOTIFY_DEADLETTER),
        "write": (RAW, FETCH, OUTCOMES, ALERTS),
    },
}
# Services that consume as a group: the group ids they use start with <prefix><service>.
GROUP_SERVICES = ("ingest", "processor", "notifier", "analytics", "archiver")

# Kafka's ACL codes (org.apache.kafka.common.acl / resource).
_TOPIC, _GROUP = 2, 3
_READ, _WRITE, _DESCRIBE = 3, 4, 8
_ALLOW = 3
_LITERAL, _PREFIXED = 3, 4


def user_of(service: str) -> str:
    return f"leadwire-{service}"


def validate_mode(mode: str) -> str:
    if mode not in AUTH_MODES:
        raise InfraError(f"LEADWIRE_KAFKA_AUTH={mode!r}: use one of {', '.join(AUTH_MODES)}")
    return mode


def passwords(home: Path) -> dict[str, str]:
    """The users' passwords: read from ``scram.json``, made (random) the first time."""
    path = home / "scram.json"
    try:
        found = json.loads(path.read_text())
        if isinstance(found, dict) and ADMIN in found:
            return {str(k): str(v) for k, v in found.items()}
    except (OSError, ValueError):
        pass
    made = {user: secrets.token_urlsafe(24) for user in (ADMIN, *map(user_of, SERVICES))}
    home.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(made, out, indent=2)
    return made


def format_args(users: Mapping[str, str]) -> list[str]:
    """``StorageTool format`` arguments creating every user."""
    args: list[str] = []
    for name, password in users.items():
        args += ["--add-scram", f"{MECHANISM}=[name={name},password={password}]"]
    return args


def server_properties(host: str, port: int, controller_port: int, admin_password: str) -> dict:
    """The broker settings that replace the PLAINTEXT client listener with SCRAM."""
    login = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{ADMIN}" password="{admin_password}";'
    )
    return {
        "listeners": f"SASL_PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"SASL_PLAINTEXT://{host}:{port}",
        "inter.broker.listener.name": "SASL_PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
        "sasl.enabled.mechanisms": MECHANISM,
        "sasl.mechanism.inter.broker.protocol": MECHANISM,
        "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config": login,
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": f"User:{ADMIN};User:ANONYMOUS",
        "allow.everyone.if.no.acl.found": "false",
    }


def client_env(user: str, password: str) -> dict[str, str]:
    """The LEADWIRE_* settings of a client logging in as ``user`` (the same login as
    :func:`client_kwargs`, as shared.kafka.client_config reads it back)."""
    return {
        "LEADWIRE_KAFKA_" + key.upper().replace("SASL_PLAIN_", "SASL_"): str(value)
        for key, value in client_kwargs(user, password).items()
    }


def client_kwargs(user: str, password: str) -> dict[str, Any]:
    """aiokafka keyword arguments of a client logging in as ``user``."""
    return {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": MECHANISM,
        "sasl_plain_username": user,
        "sasl_plain_password": password,
    }


@dataclass(frozen=True)
class Acl:
    principal: str
    resource_type: int
    name: str
    pattern: int
    operation: int

    def describe(self) -> str:
        kind = {_TOPIC: "topic", _GROUP: "group"}[self.resource_type]
        op = {_READ: "READ", _WRITE: "WRITE", _DESCRIBE: "DESCRIBE"}[self.operation]
        star = "*" if self.pattern == _PREFIXED else ""
        return f"{self.principal} {op} {kind} {self.name}{star}"


def acl_plan(topic_prefix: str, group_prefix: str, services: Iterable[str] = SERVICES) -> list[Acl]:
    """Every ACL of every service user: its topics (``topic_prefix`` + name, literal) and
    its consumer groups (``group_prefix`` + service, prefixed)."""
    acls: list[Acl] = []
    for service in services:
        principal = f"User:{user_of(service)}"
        access = SERVICE_ACCESS[service]
        for op, names in ((_READ, access.get("read", ())), (_WRITE, access.get("write", ()))):
            for name in names:
                acls.append(Acl(principal, _TOPIC, f"{topic_prefix}{name}", _LITERAL, op))
        if service in GROUP_SERVICES:
            acls.append(Acl(principal, _GROUP, f"{group_prefix}{service}", _PREFIXED, _READ))
    return acls


async def apply_acls(bootstrap: str, admin_password: str, acls: Iterable[Acl]) -> None:
    """Create the ACLs as the admin user (creating one that exists changes nothing).

    aiokafka has no ACL admin call; its protocol module has CreateAcls, sent as is."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.protocol.admin import CreateAclsRequest

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="leadwire-infra-acls",
        request_timeout_ms=10_000,
        **client_kwargs(ADMIN, admin_password),
    )
    await admin.start()
    try:
        for acl in acls:
            request = CreateAclsRequest(
                acl.resource_type, acl.name, acl.pattern, acl.principal, "*", acl.operation, _ALLOW
            )
            response = await admin._send_request(request)
            for error_code, message in response.creation_responses:
                if error_code:
                    raise InfraError(f"Kafka refused the ACL {acl.describe()}: {message}")
    finally:
        await admin.close()
