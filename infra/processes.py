"""Pidfile-tracked background processes (infra daemons and Python services alike).

Every process runs in its own session (``start_new_session=True``), so its pid is also its
process-group id; stdout/stderr are appended to ``<state>/logs/<name>.log`` and its pid is
kept in ``<state>/run/<name>.pid``::

    <pid>
    start_ticks=<field 22 of /proc/<pid>/stat>   # tells a live process from a reused pid
    kind=infra|service

Stopping sends SIGTERM to the whole group, waits up to a deadline, then SIGKILLs the group.
A pidfile whose process is gone (or whose pid now belongs to another program) is stale and
is removed when read.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from infra.errors import InfraError

HOST = "127.0.0.1"

# Popen objects of children started by this Python process, so they are reaped (no zombies
# that would look alive) and Python does not warn about them.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class PidInfo:
    name: str
    pid: int
    start_ticks: int | None
    kind: str
    path: Path

    def alive(self) -> bool:
        return pid_alive(self.pid, self.start_ticks)


# -- /proc helpers ---------------------------------------------------------------------------------
def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name: [state, ppid, pgrp, session, ...]."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def process_start_ticks(pid: int) -> int | None:
    fields = _proc_stat(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def _reap(pid: int) -> None:
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is not None:
            _CHILDREN.pop(pid, None)
        return
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def pid_alive(pid: int, start_ticks: int | None = None) -> bool:
    """True if ``pid`` runs (not a zombie) and, when given, started at ``start_ticks``."""
    if pid <= 0:
        return False
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user (e.g. postgres when we are not root)
    fields = _proc_stat(pid)
    if fields is None:
        return not Path("/proc/self/stat").exists()  # no /proc: trust kill(0)
    if fields[0] in ("Z", "X"):
        return False
    if start_ticks is not None and len(fields) > 19 and int(fields[19]) != start_ticks:
        return False
    return True


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) pids whose process group is ``pgid``."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _proc_stat(int(entry.name))
        if fields and len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def children_of(ppid: int) -> list[int]:
    """Live direct children of ``ppid``."""
    kids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _proc_stat(int(entry.name))
            if (
                fields
                and len(fields) > 1
                and fields[1] == str(ppid)
                and fields[0] not in ("Z", "X")
            ):
                kids.append(int(entry.name))
    return kids


# -- pidfiles --------------------------------------------------------------------------------------
def pidfile_path(run_dir: Path, name: str) -> Path:
    return run_dir / f"{name}.pid"


def write_pidfile(run_dir: Path, name: str, pid: int, kind: str) -> PidInfo:
    run_dir.mkdir(parents=True, exist_ok=True)
    ticks = process_start_ticks(pid)
    path = pidfile_path(run_dir, name)
    tmp = path.with_suffix(".pid.tmp")
    tmp.write_text(f"{pid}\nstart_ticks={ticks if ticks is not None else ''}\nkind={kind}\n")
    os.replace(tmp, path)
    return PidInfo(name=name, pid=pid, start_ticks=ticks, kind=kind, path=path)


def read_pidfile(run_dir: Path, name: str, *, remove_stale: bool = True) -> PidInfo | None:
    """The live process recorded for ``name``, or None (a stale pidfile is deleted)."""
    path = pidfile_path(run_dir, name)
    info = _parse_pidfile(path, name)
    if info is None:
        return None
    if info.alive():
        return info
    if remove_stale:
        path.unlink(missing_ok=True)
    return None


def _parse_pidfile(path: Path, name: str) -> PidInfo | None:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    try:
        pid = int(lines[0].strip())
    except (IndexError, ValueError):
        path.unlink(missing_ok=True)
        return None
    meta = dict(line.split("=", 1) for line in lines[1:] if "=" in line)
    ticks = int(meta["start_ticks"]) if meta.get("start_ticks", "").isdigit() else None
    return PidInfo(
        name=name, pid=pid, start_ticks=ticks, kind=meta.get("kind", "service"), path=path
    )


def list_pidfiles(run_dir: Path) -> list[PidInfo]:
    """Live tracked processes of a stack (stale pidfiles are removed on the way)."""
    if not run_dir.is_dir():
        return []
    found = []
    for path in sorted(run_dir.glob("*.pid")):
        info = read_pidfile(run_dir, path.stem)
        if info is not None:
            found.append(info)
    return found


# -- locks -----------------------------------------------------------------------------------------
@contextmanager
def file_lock(path: Path, timeout_s: float = 600.0, what: str = "") -> Iterator[None]:
    """An exclusive flock shared by every process on the machine (blocking, with a deadline)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() > deadline:
                    raise InfraError(
                        f"timed out waiting for lock {path} ({what or 'held by another process'})"
                    ) from None
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)


class async_file_lock:
    """:func:`file_lock` for async code: polls a non-blocking flock, never blocks the loop."""

    def __init__(self, path: Path, timeout_s: float = 600.0, what: str = "") -> None:
        self._path, self._timeout, self._what = path, timeout_s, what
        self._held: AbstractContextManager[None] | None = None

    async def __aenter__(self) -> None:
        deadline = time.monotonic() + self._timeout
        while True:
            attempt = file_lock(self._path, timeout_s=0.0, what=self._what)
            try:
                attempt.__enter__()
            except InfraError:
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(0.1)
                continue
            self._held = attempt
            return

    async def __aexit__(self, *exc: object) -> None:
        if self._held is not None:
            self._held.__exit__(None, None, None)
            self._held = None


# -- spawning and stopping ---------------------------------------------------------------------------
def spawn(
    name: str,
    argv: Sequence[str],
    *,
    run_dir: Path,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
    kind: str = "service",
) -> PidInfo:
    """Start ``argv`` in a new session, output appended to ``log_path``, pid in a pidfile."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab", buffering=0) as log:
        log.write(
            f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {name}: {argv[0]} ===\n".encode()
        )
        try:
            child = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=str(cwd) if cwd is not None else None,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise InfraError(f"{name}: cannot execute {argv[0]!r}: {exc}") from exc
    _CHILDREN[child.pid] = child
    return write_pidfile(run_dir, name, child.pid, kind)


def terminate_group(
    pid: int, start_ticks: int | None, *, timeout_s: float = 15.0, kill_timeout_s: float = 10.0
) -> bool:
    """SIGTERM the process group ``pid``, wait up to ``timeout``, then SIGKILL it.

    Returns True if something was signalled. Only signals the group if its leader is still
    the recorded process, or if the leader is gone and members remain (orphans of the group;
    Linux does not hand out a pid again while a process group of that id exists, so if the
    pid now names another program, the group is not ours any more).
    """
    if not pid_alive(pid, start_ticks):
        if pid_alive(pid) or not group_members(pid):
            return False
    _signal_group(pid, signal.SIGTERM)
    if _wait_group_gone(pid, timeout_s):
        return True
    _signal_group(pid, signal.SIGKILL)
    if not _wait_group_gone(pid, kill_timeout_s):
        raise InfraError(f"process group {pid} survived SIGKILL for {kill_timeout_s:.0f} s")
    return True


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        # Group contains processes of another user and we are not root; signal what we can.
        for member in group_members(pgid):
            try:
                os.kill(member, sig)
            except OSError:
                pass


def _wait_group_gone(pgid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        _reap(pgid)
        if not group_members(pgid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def stop_tracked(run_dir: Path, name: str, *, timeout_s: float = 15.0) -> bool:
    """Stop the pidfile-tracked process ``name`` (and its group); remove the pidfile."""
    path = pidfile_path(run_dir, name)
    info = _parse_pidfile(path, name)
    if info is None:
        return False
    try:
        return terminate_group(info.pid, info.start_ticks, timeout_s=timeout_s)
    finally:
        path.unlink(missing_ok=True)


# -- ports -----------------------------------------------------------------------------------------
def port_listening(port: int, host: str = HOST, timeout_s: float = 0.3) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def port_bindable(port: int, host: str = HOST) -> bool:
    """True if we could listen on host:port right now (nothing else holds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def wait_ports_closed(ports: Sequence[int], timeout_s: float = 10.0, host: str = HOST) -> list[int]:
    """Poll until no port accepts connections; returns the ports still open at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        still_open = [p for p in ports if port_listening(p, host, timeout_s=0.2)]
        if not still_open or time.monotonic() >= deadline:
            return still_open
        time.sleep(0.05)


_PORT_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_RESERVED = Path("/proc/sys/net/ipv4/ip_local_reserved_ports")


def ephemeral_range() -> tuple[int, int]:
    try:
        low, high = _PORT_RANGE.read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _parse_reserved(text: str) -> set[int]:
    ports: set[int] = set()
    for part in text.strip().split(","):
        if "-" in part:
            low, high = part.split("-", 1)
            ports.update(range(int(low), int(high) + 1))
        elif part.strip():
            ports.add(int(part))
    return ports


def reserve_ports(ports: Sequence[int]) -> list[int]:
    """Keep the kernel from handing ``ports`` out as client-side (ephemeral) ports.

    Server ports inside net.ipv4.ip_local_port_range (55432, 39092, ...) can be taken by
    any outgoing connection as its local port, and then the server cannot bind. As root we
    add them to net.ipv4.ip_local_reserved_ports (existing entries kept; not persistent
    across reboots). Returns the ports newly reserved; does nothing without root.
    """
    low, high = ephemeral_range()
    wanted = [p for p in ports if low <= p <= high]
    if not wanted or os.geteuid() != 0:
        return []
    try:
        current_text = _RESERVED.read_text().strip()
        current = _parse_reserved(current_text)
        added = sorted(set(wanted) - current)
        if added:
            joined = ",".join(str(p) for p in added)
            _RESERVED.write_text(f"{current_text},{joined}" if current_text else joined)
        return added
    except (OSError, ValueError):
        return []


def tail(path: Path, lines: int = 25) -> str:
    """Last lines of a log file, for error messages."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 16384))
            data = fh.read().decode(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(data.splitlines()[-lines:])
