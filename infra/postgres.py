"""PostgreSQL from Debian's ``postgresql`` package, one cluster per stack.

initdb and pg_ctl refuse to run as root, so as root they run as the ``postgres`` user
(runuser) on a directory that user owns: ``<state>/postgres`` when the project is reachable
by ``postgres``, else ``/var/tmp/leadwire/<hash of project path>/<stack>`` with
``<state>/postgres`` a symlink to it. Settings live in ``<data>/leadwire.conf`` (rewritten
on every start, included from postgresql.conf). Ready when asyncpg runs ``SELECT 1``.
"""

from __future__ import annotations

import os
import pwd
import re
import signal
import subprocess
import time
from pathlib import Path

from infra.component import Component
from infra.config import ENV_PG_PORT, HOST
from infra.errors import InfraError
from infra.processes import (
    PidInfo,
    children_of,
    pid_alive,
    port_listening,
    read_pidfile,
    stop_tracked,
    write_pidfile,
)
from infra.progress import progress
from infra.toolchain import apt_install, is_root, run

PG_USER = "postgres"
PREFERRED_MAJOR = "15"
PG_LIB = Path("/usr/lib/postgresql")
FALLBACK_BASE = Path("/var/tmp/leadwire")
_SOCKET_MAX = 107 - len("/.s.PGSQL.65535.lock")


def find_pg_bin(major: str | None = None) -> Path | None:
    """``/usr/lib/postgresql/<major>/bin`` (the given major, else 15, else the newest)."""
    versions = sorted(
        (p.parent.parent.name for p in PG_LIB.glob("*/bin/initdb")),
        key=lambda v: [int(x) for x in re.findall(r"\d+", v)] or [0],
    )
    if not versions:
        return None
    if major is not None:
        return PG_LIB / major / "bin" if major in versions else None
    chosen = PREFERRED_MAJOR if PREFERRED_MAJOR in versions else versions[-1]
    return PG_LIB / chosen / "bin"


async def ensure_postgres_binaries() -> Path:
    bin_dir = find_pg_bin()
    if bin_dir is None:
        await apt_install(["postgresql"], f"no PostgreSQL server found ({PG_LIB}/*/bin/initdb)")
        bin_dir = find_pg_bin()
        if bin_dir is None:
            raise InfraError(
                f"apt-get install postgresql finished but {PG_LIB}/*/bin/initdb is still missing"
            )
    return bin_dir


def _include_leadwire_conf(postgresql_conf: Path) -> None:
    with open(postgresql_conf, "a") as conf:
        conf.write(
            "\n# leadwire: per-stack settings, rewritten on every start by infra/postgres.py\n"
            "include_if_exists = 'leadwire.conf'\n"
        )


def _conf_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class Postgres(Component):
    name = "postgres"
    port_env = ENV_PG_PORT
    stop_timeout = 30.0

    @property
    def port(self) -> int:
        return self.config.ports.postgres

    # -- where things live ---------------------------------------------------------------------------
    @property
    def link(self) -> Path:
        return self.config.state_dir / "postgres"

    def existing_root(self) -> Path | None:
        return self.link.resolve() if self.link.exists() else None

    def data_dir(self) -> Path | None:
        root = self.existing_root()
        return root / "data" if root else None

    def _fallback_root(self) -> Path:
        return FALLBACK_BASE / self.config.project_hash / self.config.name

    def _prepare_root(self) -> Path:
        """Create (once) the directory the server user owns and record where it is."""
        root = self.existing_root()
        if root is None:
            if not is_root():
                self.link.mkdir(mode=0o700)
                root = self.link
            elif self._postgres_can_reach(self.config.state_dir):
                self.link.mkdir(mode=0o700)
                root = self.link
            else:
                root = self._fallback_root()
                progress(
                    "postgres",
                    f"user {PG_USER} cannot reach {self.config.state_dir}; data dir goes to {root} (symlinked from {self.link})",
                )
                for parent in (FALLBACK_BASE, root.parent):
                    parent.mkdir(mode=0o755, parents=True, exist_ok=True)
                    parent.chmod(0o755)
                root.mkdir(mode=0o700, exist_ok=True)
                if self.link.is_symlink():
                    self.link.unlink()
                self.link.symlink_to(root, target_is_directory=True)
        server_log = root / "postgres.log"
        server_log.touch(exist_ok=True)
        if is_root():
            uid, gid = self._pg_ids()
            for path in (root, server_log):
                os.chown(path, uid, gid)
            root.chmod(0o700)
        log_link = self.config.logs_dir / "postgres.log"
        if not log_link.is_symlink() and not log_link.exists():
            log_link.symlink_to(root / "postgres.log")
        return root

    def _socket_dir(self, root: Path) -> Path:
        sock = root / "run"
        if len(str(sock)) > _SOCKET_MAX:
            sock = Path("/tmp") / f".leadwire-pg-{self.config.project_hash}-{self.config.name}"
        return sock

    def _pg_ids(self) -> tuple[int, int]:
        try:
            pw = pwd.getpwnam(PG_USER)
        except KeyError:
            raise InfraError(
                f"user {PG_USER!r} does not exist; Debian's postgresql package creates it "
                "(apt-get install -y postgresql), or run as a normal user"
            ) from None
        return pw.pw_uid, pw.pw_gid

    def _postgres_can_reach(self, path: Path) -> bool:
        self._pg_ids()
        probe = subprocess.run(
            ["runuser", "-u", PG_USER, "--", "test", "-x", str(path)], capture_output=True, cwd="/"
        )
        return probe.returncode == 0

    def _as_server_user(self, argv: list[str]) -> list[str]:
        return ["runuser", "-u", PG_USER, "--", *argv] if is_root() else argv

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update({"LC_ALL": "C", "LANG": "C"})
        return env

    # -- lifecycle -------------------------------------------------------------------------------------
    async def install(self) -> None:
        await ensure_postgres_binaries()

    def _bin_for_data(self, data: Path) -> Path:
        version_file = data / "PG_VERSION"
        if version_file.is_file():
            major = version_file.read_text().strip()
            bin_dir = find_pg_bin(major)
            if bin_dir is None:
                raise InfraError(
                    f"postgres: {data} was created by PostgreSQL {major}, whose server is not installed "
                    f"(apt-get install -y postgresql-{major}), or remove the stack's data: python -m infra destroy --stack {self.config.name}"
                )
            return bin_dir
        bin_dir = find_pg_bin()
        if bin_dir is None:
            raise InfraError("postgres: no server binaries; run python -m infra install")
        return bin_dir

    def settings(self, socket_dir: Path) -> dict[str, str]:
        durable = "on" if self.config.pg_fsync else "off"
        return {
            "listen_addresses": _conf_quote(HOST),
            "port": str(self.port),
            "unix_socket_directories": _conf_quote(str(socket_dir)),
            "max_connections": "200",
            "fsync": durable,
            "synchronous_commit": durable,
            "full_page_writes": durable,
            "logging_collector": "off",
            "log_line_prefix": _conf_quote("%m [%p] %q%u@%d "),
        }

    async def _launch(self, timeout_s: float) -> None:
        root = self._prepare_root()
        data = root / "data"
        bin_dir = self._bin_for_data(data)
        env = self._env()
        if not (data / "PG_VERSION").is_file():
            progress("postgres", f"initdb {data} (fsync={'on' if self.config.pg_fsync else 'off'})")
            argv = [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                PG_USER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-locale",
            ]
            if not self.config.pg_fsync:
                argv.append("--no-sync")
            await run(
                self._as_server_user(argv),
                what="initdb",
                cwd=root,
                env=env,
                timeout_s=300,
                log_path=self.log_path,
            )
            _include_leadwire_conf(data / "postgresql.conf")
        socket_dir = self._socket_dir(root)
        socket_dir.mkdir(mode=0o700, exist_ok=True)
        conf_path = data / "leadwire.conf"
        conf_path.write_text("".join(f"{k} = {v}\n" for k, v in self.settings(socket_dir).items()))
        if is_root():
            uid, gid = self._pg_ids()
            for path in (socket_dir, conf_path):
                os.chown(path, uid, gid)
        log_file = root / "postgres.log"
        await run(
            self._as_server_user(
                [
                    str(bin_dir / "pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(log_file),
                    "-w",
                    "-t",
                    str(int(timeout_s)),
                    "-s",
                    "start",
                ]
            ),
            what=f"pg_ctl start (log: {log_file})",
            cwd=root,
            env=env,
            timeout_s=timeout_s + 15,
        )
        pid = self._postmaster_pid(data)
        if pid is None:
            raise InfraError(
                f"postgres: pg_ctl reported success but {data}/postmaster.pid is missing"
            )
        write_pidfile(self.config.run_dir, self.name, pid, "infra")

    @staticmethod
    def _postmaster_pid(data: Path) -> int | None:
        try:
            first = (data / "postmaster.pid").read_text().splitlines()[0]
            return int(first.strip())
        except (OSError, IndexError, ValueError):
            return None

    def _adopt(self) -> PidInfo | None:
        """A postmaster of this data dir that our pidfile lost track of."""
        data = self.data_dir()
        pid = self._postmaster_pid(data) if data else None
        if pid is None:
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        if not cmdline or not cmdline[0].endswith(b"postgres"):
            return None
        write_pidfile(self.config.run_dir, self.name, pid, "infra")
        return read_pidfile(self.config.run_dir, self.name)

    def _failure_log(self) -> Path:
        root = self.existing_root()
        return root / "postgres.log" if root else self.log_path

    async def probe(self) -> bool:
        if not port_listening(self.port):
            return False
        import asyncpg

        try:
            conn = await asyncpg.connect(
                host=HOST, port=self.port, user=PG_USER, database="postgres", timeout=3
            )
        except Exception:
            return False
        try:
            return bool(await conn.fetchval("SELECT 1", timeout=3) == 1)
        except Exception:
            return False
        finally:
            await conn.close(timeout=3)

    async def _after_ready(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(
            host=HOST, port=self.port, user=PG_USER, database="postgres", timeout=5
        )
        try:
            exists = await conn.fetchval(
                "SELECT 1 FROM pg_database WHERE datname = $1", self.config.database
            )
            if not exists:
                try:
                    await conn.execute(f'CREATE DATABASE "{self.config.database}"')
                    progress("postgres", f"created database {self.config.database}")
                except asyncpg.DuplicateDatabaseError:
                    pass
        finally:
            await conn.close(timeout=5)

    def _stop_process(self, timeout_s: float) -> bool:
        info = self.pid_info()
        if info is None:
            return False
        data = self.data_dir()
        if data is not None and (data / "PG_VERSION").is_file():
            pg_ctl = self._bin_for_data(data) / "pg_ctl"
            try:
                subprocess.run(
                    self._as_server_user(
                        [
                            str(pg_ctl),
                            "-D",
                            str(data),
                            "-m",
                            "fast",
                            "-w",
                            "-t",
                            str(int(timeout_s)),
                            "-s",
                            "stop",
                        ]
                    ),
                    cwd=str(data.parent),
                    env=self._env(),
                    capture_output=True,
                    timeout=timeout_s + 10,
                )
            except subprocess.TimeoutExpired:
                pass
        # Whatever pg_ctl left behind (or everything, if it failed) goes the generic way. Each
        # postgres child is its own session (setsid), so the group signal misses them: they
        # exit by themselves when the postmaster dies, and are killed if they linger.
        children = children_of(info.pid)
        stop_tracked(self.config.run_dir, self.name, timeout_s=5.0)
        deadline = time.monotonic() + 5.0
        while (alive := [c for c in children if pid_alive(c)]) and time.monotonic() < deadline:
            time.sleep(0.05)
        for child in alive:
            try:
                os.kill(child, signal.SIGKILL)
            except OSError:
                pass
        return True

    def remove_data(self) -> None:
        """Delete the cluster's directory (also the /var/tmp one the link points to)."""
        import shutil

        if self.link.is_symlink():
            target = self.link.resolve()
            shutil.rmtree(target, ignore_errors=True)
            self.link.unlink()
            for parent in (target.parent, FALLBACK_BASE):
                try:
                    parent.rmdir()  # only if empty
                except OSError:
                    break
        else:
            shutil.rmtree(self.link, ignore_errors=True)
        sock = Path("/tmp") / f".leadwire-pg-{self.config.project_hash}-{self.config.name}"
        shutil.rmtree(sock, ignore_errors=True)
