"""Local infra manager: Kafka (KRaft), Postgres and an S3 server as plain processes on 127.0.0.1.

Python API::

    from infra import Stack
    stack = Stack.for_name("test", project_root)
    await stack.start()
    env = stack.settings_env()
    await stack.stop()

CLI: ``python -m infra {install,start,stop,restart,status,env,destroy} [--stack dev]``.
State lives in ``<project>/.leadwire/<stack>/``, caches in ``~/.cache/leadwire/``.
"""

from infra.component import Component, ComponentStatus
from infra.config import DEFAULT_PORTS, Ports, StackConfig
from infra.errors import InfraError
from infra.kafka import Kafka
from infra.postgres import Postgres
from infra.processes import PidInfo
from infra.s3 import S3
from infra.s3 import client_config as s3_client_config
from infra.stack import Stack, list_processes, start_process, stop_all, stop_process, stop_services

__all__ = [
    "DEFAULT_PORTS",
    "S3",
    "Component",
    "ComponentStatus",
    "InfraError",
    "Kafka",
    "PidInfo",
    "Ports",
    "Postgres",
    "Stack",
    "StackConfig",
    "list_processes",
    "s3_client_config",
    "start_process",
    "stop_all",
    "stop_process",
    "stop_services",
]
