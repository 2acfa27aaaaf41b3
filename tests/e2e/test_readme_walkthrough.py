"""A newcomer follows the README literally: `make up`, the curl it prints, the CLI calls it
documents, `make down`. If the README and the code disagree, this test fails.

It runs as a second, named stack (LEADWIRE_STACK) on its own ports, so it never touches a
developer's `make up`; `make down` must leave no process and no listening port behind.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from infra import Stack, list_processes

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
# Public listeners (the processor and the archiver have none), and every service's ops
# listener (/healthz, /readyz, /metrics).
SERVICE_PORTS = {"ingest": 18280, "notifier": 18282, "analytics": 18283, "api": 18285}
OPS_PORTS = {
    "ingest": 18380,
    "processor": 18381,
    "notifier": 18382,
    "analytics": 18383,
    "archiver": 18384,
    "api": 18385,
}


def _section(title: str) -> str:
    start = README.index(f"## {title}")
    end = README.find("\n## ", start + 3)
    return README[start : end if end > 0 else None]


def _code_blocks(text: str, lang: str = "") -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _make(target: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", target], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


def test_readme_names_the_two_commands() -> None:
    block = _code_blocks(_section("The two commands"), "sh")[0]
    commands = [
        line.split("#")[0].strip() for line in block.splitlines() if line.strip().startswith("make")
    ]
    assert commands == ["make run", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    for target in ("run", "test", "up", "down", "bench", "soak", "lint", "fmt"):
        assert re.search(rf"^{target}:", makefile, flags=re.M), f"Makefile has no `{target}` target"
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_newcomer_walkthrough(tmp_path: Path) -> None:
    name = f"readme{uuid.uuid4().hex[:4]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADWIRE_")}
    env.update({"LEADWIRE_STACK": name, "LEADWIRE_INGEST_WORKERS": "1"})
    env.update({f"LEADWIRE_{svc.upper()}_PORT": str(port) for svc, port in SERVICE_PORTS.items()})
    env.update({f"LEADWIRE_{svc.upper()}_OPS_PORT": str(port) for svc, port in OPS_PORTS.items()})
    env["LEADWIRE_PUBLIC_URL"] = f"http://127.0.0.1:{SERVICE_PORTS['ingest']}"
    stack = Stack.for_name(name, ROOT)
    infra_ports = [
        stack.config.ports.kafka,
        stack.config.ports.kafka_controller,
        stack.config.ports.postgres,
        stack.config.ports.s3,
    ]
    pids: list[int] = []
    try:
        # 1. `make up` (the background twin of `make run`) prints a ready-to-paste curl.
        up = _make("up", env)
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-4000:]
        curl = re.search(r"^curl .*?(?=\n\n)", up.stdout, flags=re.S | re.M)
        assert curl, f"`make up` printed no curl:\n{up.stdout}"
        stack_env_path = ROOT / ".leadwire" / name / "stack.env"
        stack_env = dict(
            line.split("=", 1)
            for line in stack_env_path.read_text().splitlines()
            if line and not line.startswith("#")
        )
        for key in (
            "LEADWIRE_DATABASE_URL",
            "LEADWIRE_KAFKA_BOOTSTRAP",
            "LEADWIRE_S3_ENDPOINT",
            "LEADWIRE_S3_BUCKET",
            "LEADWIRE_S3_ACCESS_KEY",
            "LEADWIRE_S3_SECRET_KEY",
            *(f"LEADWIRE_{s.upper()}_URL" for s in SERVICE_PORTS),
            *(f"LEADWIRE_{s.upper()}_OPS_URL" for s in OPS_PORTS),
        ):
            assert stack_env.get(key), f"{key} missing from stack.env"
        for svc, port in OPS_PORTS.items():
            assert stack_env[f"LEADWIRE_{svc.upper()}_OPS_URL"] == f"http://127.0.0.1:{port}"
        assert not {"LEADWIRE_PROCESSOR_URL", "LEADWIRE_ARCHIVER_URL"} & set(stack_env)
        pids = [p.pid for p in list_processes(name, project_root=ROOT)]
        assert len(pids) >= 3 + len(OPS_PORTS)

        # 2. Paste the curl: the answer has the fields the README shows.
        answer = subprocess.run(
            ["bash", "-c", curl.group(0)], capture_output=True, text=True, timeout=60
        )
        assert answer.returncode == 0, answer.stderr
        body = json.loads(answer.stdout)
        readme_answer = next(b for b in _code_blocks(_section("The two commands"), "json"))
        documented = set(re.findall(r'"(\w+)":', readme_answer))
        assert documented <= set(body), (
            f"README shows {sorted(documented - set(body))} the answer lacks"
        )
        assert body["success"] is True and body["status"] == "processed", body
        assert body["match_type"] in ("new", "crm_id", "phone", "email")

        # 3. Every CLI call the README documents works as written.
        cli_block = _code_blocks(_section("The admin CLI"), "sh")[0]
        calls = [line for line in cli_block.splitlines() if line.startswith("leadwire ")]
        assert len(calls) >= 8
        cli_env = {
            **env,
            "PATH": f"{ROOT / '.venv' / 'bin'}:{env['PATH']}",
            "LEADWIRE_STACK_ENV": str(stack_env_path),
        }

        def bash(call: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                ["bash", "-c", call],
                cwd=ROOT,
                env=cli_env,
                capture_output=True,
                text=True,
                timeout=120,
            )

        for call in calls:
            done = bash(call)
            assert done.returncode == 0, f"README command failed: {call}\n{done.stderr}"
            # Commands that create or rotate things are not repeated; the rest, with --json,
            # print exactly one JSON document.
            if call.split()[1:3] in (
                ["workspace", "create"],
                ["webhook", "create"],
                ["board", "create"],
                ["rule", "add"],
                ["webhook", "rotate-secret"],
                ["apikey", "create"],
            ):
                continue
            as_json = bash(f"{call} --json")
            assert as_json.returncode == 0, f"{call} --json failed: {as_json.stderr}"
            json.loads(as_json.stdout)

        # 4. The management API answers the README's curl, with a key the CLI made.
        made = bash("leadwire apikey create --workspace acme --scope read --json")
        assert made.returncode == 0, made.stderr
        api_call = _code_blocks(_section("The admin CLI"), "sh")[1]
        listed = subprocess.run(
            ["bash", "-c", api_call],
            env={
                **cli_env,
                "KEY": json.loads(made.stdout)["key"],
                "LEADWIRE_API_URL": stack_env["LEADWIRE_API_URL"],
            },
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert listed.returncode == 0, listed.stderr
        assert [w["name"] for w in json.loads(listed.stdout)["items"]] == ["acme"]

        # 5. Analytics answers the README's curl with the operator's key make up wrote, and
        # nothing without it.
        assert stack_env["LEADWIRE_OPERATOR_KEY"].startswith("lwk_")
        figures_call = _code_blocks(_section("The two commands"), "sh")[1].replace(
            ".leadwire/stack.env", str(stack_env_path)
        )
        figures = subprocess.run(
            ["bash", "-c", figures_call], env=env, capture_output=True, text=True, timeout=60
        )
        assert figures.returncode == 0, figures.stderr
        names = [w["name"] for w in json.loads(figures.stdout)["workspaces"]]
        assert "demo" in names and "acme" in names, names
        anonymous = subprocess.run(
            [
                "bash",
                "-c",
                figures_call.strip().replace("Bearer $LEADWIRE_OPERATOR_KEY", "Bearer ")
                + " -o /dev/null -w '%{http_code}'",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert anonymous.stdout == "401", anonymous.stdout
    finally:
        down = _make("down", env)
    assert down.returncode == 0, down.stderr[-4000:]

    # 6. `make down` leaves nothing behind.
    assert list_processes(name, project_root=ROOT) == []
    for pid in pids:
        assert (
            not Path(f"/proc/{pid}").exists()
            or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
        )
    busy = [
        p for p in [*SERVICE_PORTS.values(), *OPS_PORTS.values(), *infra_ports] if _listening(p)
    ]
    assert busy == [], f"ports still listening after `make down`: {busy}"
    subprocess.run(
        [sys.executable, "-m", "infra", "destroy", "--stack", name],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=120,
    )
