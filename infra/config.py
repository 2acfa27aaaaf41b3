"""Stack configuration: names, ports, credentials and where state and caches live.

Layout::

    <project>/.leadwire/<stack>/        state of one stack (git-ignored by its own .gitignore)
        stack.json                      ports the stack was last started with
        run/<name>.pid                  pidfiles (infra and service processes), locks
        logs/<name>.log                 stdout/stderr of every process; kafka-server.log (log4j2)
        kafka/                          server.properties, cluster.id, data/ (node 1)
        kafka-2/, kafka-3/              the other nodes of a cluster (LEADWIRE_KAFKA_BROKERS=3)
        postgres/                       data/, run/ (socket), postgres.log; owned by `postgres`
                                        (a symlink to /var/tmp/leadwire/<hash>/<stack> when the
                                        project is not reachable by that user)
        s3/data/                        versitygw posix backend (s3/sidecar/ without xattrs)

    ~/.cache/leadwire/                  caches shared by all clones on the machine
        kafka-<version>/libs/           broker runtime jars (from Maven Central)
        bin/versitygw                   S3 gateway (go install)
        go/                             Go toolchain, only when no usable `go` was found
        logs/                           build logs
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from infra.errors import InfraError
from infra.kafka_auth import ADMIN, client_env, passwords, user_of, validate_mode
from infra.processes import read_pidfile

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_PROJECT_ROOT = PACKAGE_DIR.parent

KAFKA_VERSION = "4.1.1"
VERSITYGW_MODULE = "github.com/versity/versitygw/cmd/versitygw"
VERSITYGW_VERSION = "v1.7.0"

ENV_PROJECT_ROOT = "LEADWIRE_PROJECT_ROOT"
ENV_CACHE_DIR = "LEADWIRE_CACHE_DIR"
ENV_KAFKA_PORT = "LEADWIRE_INFRA_KAFKA_PORT"
ENV_KAFKA_CONTROLLER_PORT = "LEADWIRE_INFRA_KAFKA_CONTROLLER_PORT"
ENV_PG_PORT = "LEADWIRE_INFRA_PG_PORT"
ENV_S3_PORT = "LEADWIRE_INFRA_S3_PORT"
ENV_PG_FSYNC = "LEADWIRE_INFRA_PG_FSYNC"
# none (PLAINTEXT) or scram: the broker's clients log in with SCRAM-SHA-512 (kafka_auth.py).
ENV_KAFKA_AUTH = "LEADWIRE_KAFKA_AUTH"
# How many Kafka brokers (KRaft, each broker and controller): 1, or a cluster (3).
ENV_KAFKA_BROKERS = "LEADWIRE_KAFKA_BROKERS"
MAX_KAFKA_BROKERS = 5

HOST = "127.0.0.1"
INFRA_COMPONENTS = ("kafka", "postgres", "s3")

_STACK_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


@dataclass(frozen=True)
class Ports:
    kafka: int
    kafka_controller: int
    postgres: int
    s3: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def kafka_node(self, node: int) -> tuple[int, int]:
        """(broker, controller) port of Kafka node ``node`` (1-based): node 1 has the stack's
        own ports, node N those plus 2(N-1) (19092/19093, 19094/19095, 19096/19097)."""
        step = 2 * (node - 1)
        return self.kafka + step, self.kafka_controller + step


DEFAULT_PORTS: dict[str, Ports] = {
    "dev": Ports(kafka=19092, kafka_controller=19093, postgres=55432, s3=7070),
    "test": Ports(kafka=29092, kafka_controller=29093, postgres=56432, s3=7170),
}


def _derived_ports(name: str) -> Ports:
    """Deterministic ports for stacks other than dev/test, so two of them rarely collide.

    All below the kernel's ephemeral range (32768-60999), where an outgoing connection could
    be holding the port as its local port.
    """
    slot = int(hashlib.sha256(name.encode()).hexdigest(), 16) % 200
    # Eight Kafka ports per slot: a cluster's node N takes kafka + 2(N-1) and
    # kafka_controller + 2(N-1) (Ports.kafka_node).
    return Ports(
        kafka=31000 + 8 * slot,
        kafka_controller=31001 + 8 * slot,
        postgres=26000 + slot,
        s3=7300 + slot,
    )


def default_cache_dir() -> Path:
    explicit = os.environ.get(ENV_CACHE_DIR)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "leadwire"


def default_project_root() -> Path:
    explicit = os.environ.get(ENV_PROJECT_ROOT)
    return Path(explicit).expanduser().resolve() if explicit else DEFAULT_PROJECT_ROOT


def validate_stack_name(name: str) -> None:
    if not _STACK_NAME.match(name):
        raise InfraError(
            f"invalid stack name {name!r}: use lowercase letters, digits, '-' or '_' (max 40)"
        )


def _env_port(var: str) -> int | None:
    raw = os.environ.get(var)
    if raw is None or raw.strip() == "":
        return None
    try:
        port = int(raw)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise InfraError(f"{var}={raw!r} is not a TCP port (1-65535)")
    return port


def _env_brokers() -> int | None:
    raw = os.environ.get(ENV_KAFKA_BROKERS, "").strip()
    if not raw:
        return None
    return validate_brokers(int(raw) if raw.isdigit() else -1, f"{ENV_KAFKA_BROKERS}={raw!r}")


def validate_brokers(count: int, what: str = "kafka_brokers") -> int:
    if not 1 <= count <= MAX_KAFKA_BROKERS:
        raise InfraError(
            f"{what}: the number of Kafka brokers is 1 to {MAX_KAFKA_BROKERS} (3 for a cluster)"
        )
    return count


def formatted_brokers(state_dir: Path) -> int | None:
    """How many brokers the stack's Kafka storage was formatted for (None: not formatted)."""
    try:
        return int((state_dir / "kafka" / "brokers").read_text().strip())
    except (OSError, ValueError):
        return None


def _env_bool(var: str) -> bool | None:
    raw = os.environ.get(var)
    if raw is None or raw.strip() == "":
        return None
    return raw.strip().lower() in ("1", "on", "true", "yes")


@dataclass(frozen=True)
class StackConfig:
    """Everything that identifies one stack. Build it with :meth:`for_name`."""

    name: str
    project_root: Path
    ports: Ports
    # fsync/synchronous_commit/full_page_writes; off by default for every stack but dev.
    pg_fsync: bool
    cache_dir: Path = field(default_factory=default_cache_dir)
    s3_bucket: str = "leadwire-archive"
    s3_access_key: str = "leadwire"
    s3_secret_key: str = field(default="leadwire-secret-key", repr=False)
    s3_region: str = "us-east-1"
    kafka_heap_min: str = "256m"
    kafka_heap_max: str = "512m"
    database: str = "leadwire"
    # none: a PLAINTEXT listener; scram: SASL_PLAINTEXT with a user per service and ACLs.
    kafka_auth: str = "none"
    # 1: one broker (replication 1); 3: a cluster, every topic replicated 3 times with
    # min.insync.replicas 2 (kafka_cluster.py).
    kafka_brokers: int = 1

    @classmethod
    def for_name(
        cls,
        name: str = "dev",
        project_root: Path | str | None = None,
        *,
        kafka_port: int | None = None,
        kafka_controller_port: int | None = None,
        pg_port: int | None = None,
        s3_port: int | None = None,
        pg_fsync: bool | None = None,
        kafka_auth: str | None = None,
        kafka_brokers: int | None = None,
        **overrides: Any,
    ) -> StackConfig:
        """Ports: explicit argument > LEADWIRE_INFRA_*_PORT > ports of the running stack > defaults.
        Kafka's authentication: argument > LEADWIRE_KAFKA_AUTH > the running stack's > none.
        Kafka brokers: argument > LEADWIRE_KAFKA_BROKERS > the running stack's > as many as
        its storage was formatted for > 1."""
        validate_stack_name(name)
        root = Path(project_root).expanduser().resolve() if project_root else default_project_root()
        base = DEFAULT_PORTS.get(name) or _derived_ports(name)
        recorded = _recorded_if_running(root / ".leadwire" / name)
        if recorded is not None:
            base = recorded.ports
        kafka = kafka_port or _env_port(ENV_KAFKA_PORT)
        controller = kafka_controller_port or _env_port(ENV_KAFKA_CONTROLLER_PORT)
        if kafka is not None and controller is None:
            controller = kafka + 1
        ports = Ports(
            kafka=kafka or base.kafka,
            kafka_controller=controller or base.kafka_controller,
            postgres=pg_port or _env_port(ENV_PG_PORT) or base.postgres,
            s3=s3_port or _env_port(ENV_S3_PORT) or base.s3,
        )
        fsync = pg_fsync if pg_fsync is not None else _env_bool(ENV_PG_FSYNC)
        if fsync is None:
            fsync = name == "dev"
        auth = kafka_auth or os.environ.get(ENV_KAFKA_AUTH, "").strip().lower()
        auth = validate_mode(auth or (recorded.kafka_auth if recorded else "none"))
        brokers = validate_brokers(
            kafka_brokers
            or _env_brokers()
            or (recorded.kafka_brokers if recorded else None)
            or formatted_brokers(root / ".leadwire" / name)
            or 1
        )
        return cls(
            name=name,
            project_root=root,
            ports=ports,
            pg_fsync=fsync,
            kafka_auth=auth,
            kafka_brokers=brokers,
            **overrides,
        )

    # -- paths -----------------------------------------------------------------------------
    @property
    def state_dir(self) -> Path:
        return self.project_root / ".leadwire" / self.name

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def project_hash(self) -> str:
        return hashlib.sha256(str(self.project_root).encode()).hexdigest()[:12]

    def ensure_dirs(self) -> None:
        leadwire = self.project_root / ".leadwire"
        leadwire.mkdir(parents=True, exist_ok=True)
        ignore = leadwire / ".gitignore"
        if not ignore.exists():
            ignore.write_text("# local infra state (python -m infra); never commit\n*\n")
        for d in (self.state_dir, self.run_dir, self.logs_dir):
            d.mkdir(parents=True, exist_ok=True)

    def record_ports(self) -> None:
        data = {
            "name": self.name,
            "ports": self.ports.as_dict(),
            "pg_fsync": self.pg_fsync,
            "kafka_auth": self.kafka_auth,
            "kafka_brokers": self.kafka_brokers,
        }
        tmp = self.state_dir / "stack.json.tmp"
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, self.state_dir / "stack.json")

    # -- what services need -------------------------------------------------------------------
    @property
    def scram(self) -> bool:
        return self.kafka_auth == "scram"

    @property
    def kafka_replication_factor(self) -> int:
        """Every topic's replication: 3 on a cluster (at most the brokers there are)."""
        return min(self.kafka_brokers, 3)

    @property
    def kafka_min_insync_replicas(self) -> int:
        """Replicas an acks=all write needs: 2 of 3 (a write survives losing a broker, and is
        refused, never acknowledged, with only one left); 1 on a single broker."""
        return 2 if self.kafka_replication_factor >= 3 else 1

    @property
    def kafka_bootstrap(self) -> str:
        """Every broker's address, comma-separated (any one of them answers)."""
        return ",".join(
            f"{HOST}:{self.ports.kafka_node(n)[0]}" for n in range(1, self.kafka_brokers + 1)
        )

    def kafka_passwords(self) -> dict[str, str]:
        """The SCRAM users' passwords (made once per stack; kafka_auth.py)."""
        return passwords(self.state_dir / "kafka")

    def settings_env(self) -> dict[str, str]:
        """The settings of a client of the whole stack (with SCRAM: the admin user)."""
        env = {
            "LEADWIRE_DATABASE_URL": f"postgresql://postgres@{HOST}:{self.ports.postgres}/{self.database}",
            "LEADWIRE_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "LEADWIRE_KAFKA_REPLICATION_FACTOR": str(self.kafka_replication_factor),
            "LEADWIRE_KAFKA_MIN_INSYNC_REPLICAS": str(self.kafka_min_insync_replicas),
            "LEADWIRE_S3_ENDPOINT": f"http://{HOST}:{self.ports.s3}",
            "LEADWIRE_S3_BUCKET": self.s3_bucket,
            "LEADWIRE_S3_ACCESS_KEY": self.s3_access_key,
            "LEADWIRE_S3_SECRET_KEY": self.s3_secret_key,
            "LEADWIRE_S3_REGION": self.s3_region,
        }
        if self.scram:
            env.update(client_env(ADMIN, self.kafka_passwords()[ADMIN]))
        return env

    def service_env(self, service: str) -> dict[str, str]:
        """What one service gets on top of :meth:`settings_env`: with SCRAM, its own user."""
        if not self.scram:
            return {}
        user = user_of(service)
        return client_env(user, self.kafka_passwords()[user])


@dataclass(frozen=True)
class _Recorded:
    ports: Ports
    kafka_auth: str
    kafka_brokers: int


def _recorded_if_running(state_dir: Path) -> _Recorded | None:
    """What stack.json says, but only while some infra process of that stack is alive."""
    try:
        data = json.loads((state_dir / "stack.json").read_text())
        recorded = _Recorded(
            Ports(**data["ports"]),
            str(data.get("kafka_auth", "none")),
            int(data.get("kafka_brokers", 1)),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    for name in INFRA_COMPONENTS:
        if read_pidfile(state_dir / "run", name) is not None:
            return recorded
    return None
