"""External tools the installers need (java, mvn, go, apt-get) and a command runner.

Missing tools are installed from Debian's packages when we are root (apt-get), or, for Go,
fetched as the official toolchain module from the Go module proxy (Debian's golang-go is
too old for versitygw). Without root, the error says which package to install.
"""

from __future__ import annotations

import asyncio
import os
import platform
import re
import shutil
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from infra.errors import InfraError
from infra.processes import file_lock
from infra.progress import progress

# Go toolchain fetched from the module proxy when no go >= 1.21 is installed (go >= 1.21
# fetches the version versitygw's go.mod asks for by itself: GOTOOLCHAIN=auto).
GO_TOOLCHAIN_VERSION = "1.25.0"
MIN_JAVA = 17

_apt_lock = asyncio.Lock()
_apt_updated = False


def is_root() -> bool:
    return os.geteuid() == 0


async def run(
    argv: Sequence[str],
    *,
    what: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
    timeout_s: float = 600.0,
    log_path: Path | None = None,
) -> str:
    """Run a command to completion; return its combined output or raise InfraError with its tail."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=str(cwd) if cwd is not None else None,
        )
    except OSError as exc:
        raise InfraError(f"{what}: cannot execute {argv[0]!r}: {exc}") from exc
    try:
        out_b, _ = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise InfraError(f"{what}: timed out after {timeout_s:.0f} s: {' '.join(argv)}") from None
    except asyncio.CancelledError:
        proc.kill()
        raise
    out = out_b.decode(errors="replace")
    if log_path is not None:
        _append_log(
            log_path, f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} $ {' '.join(argv)}\n{out}"
        )
    if proc.returncode != 0:
        last = "\n".join(out.strip().splitlines()[-25:])
        where = f" (full log: {log_path})" if log_path else ""
        raise InfraError(f"{what} failed (exit {proc.returncode}){where}:\n{last}")
    return out


def _append_log(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(text)


# -- apt ---------------------------------------------------------------------------------------------
async def apt_install(packages: Sequence[str], why: str) -> None:
    """``apt-get install -y packages`` when root; otherwise raise with the command to run."""
    pkgs = " ".join(packages)
    if not is_root() or shutil.which("apt-get") is None:
        raise InfraError(
            f"{why}. Install it: sudo apt-get update && sudo apt-get install -y {pkgs}"
        )
    global _apt_updated
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    async with _apt_lock:
        if not _apt_updated:
            progress("apt", "apt-get update")
            await run(["apt-get", "update"], what="apt-get update", env=env, timeout_s=600)
            _apt_updated = True
        progress("apt", f"apt-get install -y {pkgs} ({why})")
        await run(
            ["apt-get", "install", "-y", "--no-install-recommends", *packages],
            what=f"apt-get install {pkgs}",
            env=env,
            timeout_s=1200,
        )


# -- java / maven ----------------------------------------------------------------------------------
async def java_version(java: str) -> int | None:
    try:
        out = await run([java, "-version"], what="java -version", timeout_s=60)
    except InfraError:
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


_java_ok: str | None = None


async def ensure_java() -> str:
    global _java_ok
    if _java_ok is not None:
        return _java_ok
    java = shutil.which("java")
    if java is None:
        await apt_install(
            ["default-jre-headless"], f"Kafka needs Java >= {MIN_JAVA} and `java` is not on PATH"
        )
        java = shutil.which("java")
        if java is None:
            raise InfraError("java still not on PATH after installing default-jre-headless")
    version = await java_version(java)
    if version is None or version < MIN_JAVA:
        raise InfraError(
            f"Kafka 4.x needs Java >= {MIN_JAVA}; {java} is version {version}. "
            "Install a newer JRE (apt-get install -y openjdk-17-jre-headless) and put it first on PATH"
        )
    _java_ok = java
    return java


async def ensure_maven() -> str:
    mvn = shutil.which("mvn")
    if mvn is None:
        await apt_install(["maven"], "fetching the Kafka jars needs Maven and `mvn` is not on PATH")
        mvn = shutil.which("mvn")
        if mvn is None:
            raise InfraError("mvn still not on PATH after installing maven")
    return mvn


# -- go --------------------------------------------------------------------------------------------
async def _go_version(go: str) -> tuple[int, int] | None:
    try:
        out = await run(
            [go, "version"],
            what="go version",
            timeout_s=60,
            env={**os.environ, "GOTOOLCHAIN": "local"},
        )
    except InfraError:
        return None
    match = re.search(r"go(\d+)\.(\d+)", out)
    return (int(match.group(1)), int(match.group(2))) if match else None


async def ensure_go(cache_dir: Path) -> tuple[str, dict[str, str]]:
    """A go command that can build versitygw, and the environment to run it with."""
    candidates = [shutil.which("go"), "/usr/local/go/bin/go", str(cache_dir / "go" / "bin" / "go")]
    env = dict(os.environ)
    for go in _existing_files(candidates):
        if go:
            version = await _go_version(go)
            if version is not None and version >= (1, 21):
                if env.get("GOTOOLCHAIN", "").startswith("local") and version < (1, 25):
                    env["GOTOOLCHAIN"] = "auto"
                return go, env
    go = await _fetch_go_toolchain(cache_dir)
    return go, env


def _existing_files(paths: Sequence[str | None]) -> list[str]:
    return [p for p in paths if p and os.path.isfile(p)]


async def _fetch_go_toolchain(cache_dir: Path) -> str:
    arch = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine())
    if arch is None:
        raise InfraError(
            f"no usable Go (>= 1.21) found and no toolchain known for {platform.machine()}; install Go from https://go.dev/dl"
        )
    target = cache_dir / "go"
    with file_lock(cache_dir / "locks" / "go-toolchain.lock", what="fetching the Go toolchain"):
        if (target / "bin" / "go").is_file():
            return str(target / "bin" / "go")
        proxy = next(
            (
                p
                for p in os.environ.get("GOPROXY", "https://proxy.golang.org").split(",")
                if p.startswith("http")
            ),
            "https://proxy.golang.org",
        )
        version = f"v0.0.1-go{GO_TOOLCHAIN_VERSION}.linux-{arch}"
        url = f"{proxy.rstrip('/')}/golang.org/toolchain/@v/{version}.zip"
        progress(
            "s3",
            f"no Go >= 1.21 found; fetching the Go {GO_TOOLCHAIN_VERSION} toolchain from {url}",
        )
        await asyncio.to_thread(
            _download_and_unpack_toolchain, url, f"golang.org/toolchain@{version}/", target
        )
    return str(target / "bin" / "go")


def _download_and_unpack_toolchain(url: str, prefix: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        archive = Path(tmp) / "go.zip"
        try:
            with urllib.request.urlopen(url, timeout=60) as resp, open(archive, "wb") as out:
                shutil.copyfileobj(resp, out, 1 << 20)
        except OSError as exc:
            raise InfraError(
                f"cannot download the Go toolchain from {url}: {exc}. Install Go >= 1.21 from https://go.dev/dl"
            ) from exc
        unpacked = Path(tmp) / "go"
        with zipfile.ZipFile(archive) as zf:
            for member in zf.infolist():
                if not member.filename.startswith(prefix) or member.is_dir():
                    continue
                rel = member.filename[len(prefix) :]
                dest = unpacked / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as src, open(dest, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                # Module zips carry no modes; the go command marks these executable too.
                if rel.startswith("bin/") or rel.startswith("pkg/tool/"):
                    dest.chmod(0o755)
        if not (unpacked / "bin" / "go").is_file():
            raise InfraError(f"the toolchain archive {url} has no bin/go")
        os.replace(unpacked, target)
