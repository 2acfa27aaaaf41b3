"""S3-compatible object store: Versity S3 Gateway (versitygw, Apache-2.0) with its POSIX backend.

Install: ``GOBIN=~/.cache/leadwire/bin go install github.com/versity/versitygw/cmd/versitygw@v1.7.0``
(once per machine). Start: ``versitygw --port 127.0.0.1:<port> --region us-east-1 --quiet posix
<state>/s3/data`` with the root credentials passed through the environment (not argv, so
``ps`` does not show the secret); ``--sidecar <state>/s3/sidecar`` when the filesystem has no
user xattrs. Ready when ``list_buckets`` answers; the bucket is created on start.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from infra.component import Component
from infra.config import ENV_S3_PORT, HOST, VERSITYGW_MODULE, VERSITYGW_VERSION
from infra.errors import InfraError
from infra.processes import async_file_lock, port_listening, spawn
from infra.progress import progress
from infra.toolchain import ensure_go, run


def versitygw_binary(cache_dir: Path) -> Path:
    return cache_dir / "bin" / "versitygw"


def _versitygw_ok(binary: Path, stamp: Path) -> bool:
    try:
        return (
            binary.is_file()
            and os.access(binary, os.X_OK)
            and stamp.read_text().strip() == VERSITYGW_VERSION
        )
    except OSError:
        return False


async def ensure_versitygw(cache_dir: Path) -> Path:
    """The versitygw binary, built with ``go install`` unless already in the cache."""
    binary = versitygw_binary(cache_dir)
    stamp = binary.with_name("versitygw.version")
    if _versitygw_ok(binary, stamp):
        return binary
    async with async_file_lock(cache_dir / "locks" / "versitygw.lock", 3600, "building versitygw"):
        if _versitygw_ok(binary, stamp):
            return binary
        go, env = await ensure_go(cache_dir)
        gobin = binary.parent / f".build-{os.getpid()}"
        shutil.rmtree(gobin, ignore_errors=True)
        gobin.mkdir(parents=True)
        env["GOBIN"] = str(gobin)
        progress(
            "s3",
            f"building versitygw {VERSITYGW_VERSION} with `go install` (first run only; a few minutes cold)",
        )
        try:
            await run(
                [go, "install", f"{VERSITYGW_MODULE}@{VERSITYGW_VERSION}"],
                what=f"go install {VERSITYGW_MODULE}@{VERSITYGW_VERSION}",
                env=env,
                cwd=cache_dir,
                timeout_s=3600,
                log_path=cache_dir / "logs" / "versitygw-build.log",
            )
            built = gobin / "versitygw"
            if not built.is_file():
                raise InfraError(f"go install finished but {built} is missing")
            os.replace(built, binary)
            stamp.write_text(VERSITYGW_VERSION + "\n")
        finally:
            shutil.rmtree(gobin, ignore_errors=True)
    return binary


def xattrs_supported(directory: Path) -> bool:
    """Can we set user.* extended attributes on files in ``directory``?"""
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=directory, prefix=".xattr-probe-") as fh:
        try:
            os.setxattr(fh.name, "user.leadwire.probe", b"1")
            return os.getxattr(fh.name, "user.leadwire.probe") == b"1"
        except OSError:
            return False


def client_config(**overrides: Any) -> Any:
    """botocore/aiobotocore client config that S3-compatible servers accept."""
    from aiobotocore.config import AioConfig

    options: dict[str, Any] = {
        "s3": {"addressing_style": "path"},
        "request_checksum_calculation": "when_required",
        "response_checksum_validation": "when_required",
        "retries": {"max_attempts": 2, "mode": "standard"},
        "connect_timeout": 3,
        "read_timeout": 15,
    }
    options.update(overrides)
    return AioConfig(**options)


class S3(Component):
    name = "s3"
    port_env = ENV_S3_PORT
    stop_timeout = 15.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._session: Any = None

    @property
    def port(self) -> int:
        return self.config.ports.s3

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def home(self) -> Path:
        return self.config.state_dir / "s3"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def sidecar_dir(self) -> Path:
        return self.home / "sidecar"

    async def install(self) -> None:
        await ensure_versitygw(self.config.cache_dir)

    def client(self, **config: Any) -> AbstractAsyncContextManager[Any]:
        """``async with stack.s3.client() as s3:`` an aioboto3 S3 client for this server."""
        import aioboto3

        if self._session is None:
            self._session = aioboto3.Session()
        return self._session.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.config.s3_access_key,
            aws_secret_access_key=self.config.s3_secret_key,
            region_name=self.config.s3_region,
            config=client_config(**config),
        )

    async def _launch(self, timeout_s: float) -> None:
        binary = await ensure_versitygw(self.config.cache_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            str(binary),
            "--port",
            f"{HOST}:{self.port}",
            "--region",
            self.config.s3_region,
            "--quiet",
            "posix",
        ]
        if not self.sidecar_dir.is_dir() and not xattrs_supported(self.data_dir):
            progress(
                "s3",
                f"no user xattrs on {self.data_dir}; keeping object metadata in {self.sidecar_dir}",
            )
            self.sidecar_dir.mkdir(parents=True, exist_ok=True)
        if self.sidecar_dir.is_dir():  # sticky: the metadata of existing objects lives there
            argv += ["--sidecar", str(self.sidecar_dir)]
        argv.append(str(self.data_dir))
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("VGW_", "ROOT_ACCESS", "ROOT_SECRET"))
        }
        env["ROOT_ACCESS_KEY_ID"] = self.config.s3_access_key
        env["ROOT_SECRET_ACCESS_KEY"] = self.config.s3_secret_key
        spawn(
            self.name,
            argv,
            run_dir=self.config.run_dir,
            log_path=self.log_path,
            env=env,
            cwd=self.home,
            kind="infra",
        )

    async def probe(self) -> bool:
        if not port_listening(self.port):
            return False
        try:
            async with self.client(retries={"max_attempts": 1, "mode": "standard"}) as s3:
                await s3.list_buckets()
            return True
        except Exception:
            return False

    async def _after_ready(self) -> None:
        async with self.client() as s3:
            names = {b["Name"] for b in (await s3.list_buckets()).get("Buckets", [])}
            if self.config.s3_bucket in names:
                return
            try:
                await s3.create_bucket(Bucket=self.config.s3_bucket)
                progress("s3", f"created bucket {self.config.s3_bucket}")
            except s3.exceptions.BucketAlreadyOwnedByYou:
                pass
