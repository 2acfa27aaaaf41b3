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

from infra.config import StackConfig
from infra.errors import InfraError
from infra.s3 import client_config as s3_client_config
from infra.stack import Stack, list_processes, start_process, stop_all

__all__ = [
    "InfraError",
    "Stack",
    "StackConfig",
    "list_processes",
    "s3_client_config",
    "start_process",
    "stop_all",
]
