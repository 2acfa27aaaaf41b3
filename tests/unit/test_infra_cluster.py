"""Cluster mode of the local stack (LEADWIRE_KAFKA_BROKERS=3), replicas per service
(LEADWIRE_<SERVICE>_REPLICAS) and make status's table, without starting anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.config import StackConfig
from infra.errors import InfraError
from infra.kafka import KafkaNode
from infra.kafka_cluster import Kafka, quorum_state
from infra.replicas import ops_url_key, plan, replica_count, service_of
from infra.status import Row, _ranges, render, settings_of
from shared.settings import CommonSettings

pytestmark = pytest.mark.unit


def _config(tmp_path: Path, brokers: int, monkeypatch: pytest.MonkeyPatch) -> StackConfig:
    monkeypatch.delenv("LEADWIRE_KAFKA_BROKERS", raising=False)
    return StackConfig.for_name("unit-cluster", tmp_path, kafka_brokers=brokers)


def _props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if not line.startswith("#"))


def test_three_nodes_have_their_own_ports_data_and_one_three_voter_quorum(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path, 3, monkeypatch)
    kafka = Kafka(config)
    assert [n.name for n in kafka.nodes] == ["kafka", "kafka-2", "kafka-3"]
    ports = [p for n in kafka.nodes for p in n.ports()]
    assert len(set(ports)) == 6
    assert len({n.data_dir for n in kafka.nodes}) == 3
    props = [_props(n.server_properties()) for n in kafka.nodes]
    voters = {p["controller.quorum.voters"] for p in props}
    assert len(voters) == 1 and voters.pop().count("@") == 3
    assert [p["node.id"] for p in props] == ["1", "2", "3"]
    for p in props:
        assert p["default.replication.factor"] == "3"
        assert p["min.insync.replicas"] == "2"
        assert p["offsets.topic.replication.factor"] == "3"
        assert p["transaction.state.log.min.isr"] == "2"


def test_services_get_every_broker_and_the_cluster_replication(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _config(tmp_path, 3, monkeypatch).settings_env()
    assert len(env["LEADWIRE_KAFKA_BOOTSTRAP"].split(",")) == 3
    assert env["LEADWIRE_KAFKA_REPLICATION_FACTOR"] == "3"
    assert env["LEADWIRE_KAFKA_MIN_INSYNC_REPLICAS"] == "2"
    settings = settings_of(env)
    assert (settings.kafka_replication_factor, settings.kafka_min_insync_replicas) == (3, 2)


def test_one_broker_stays_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEADWIRE_KAFKA_BROKERS", raising=False)
    config = StackConfig.for_name("unit-single", tmp_path)
    assert config.kafka_brokers == 1
    props = _props(KafkaNode(config).server_properties())
    assert props["default.replication.factor"] == "1"
    assert props["controller.quorum.voters"].count("@") == 1
    assert "," not in config.settings_env()["LEADWIRE_KAFKA_BOOTSTRAP"]


@pytest.mark.parametrize("raw", ["0", "9", "three", "-1"])
def test_a_broker_count_out_of_range_is_refused(
    raw: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEADWIRE_KAFKA_BROKERS", raw)
    with pytest.raises(InfraError, match="LEADWIRE_KAFKA_BROKERS"):
        StackConfig.for_name("unit-bad", tmp_path)


def test_a_stack_formatted_as_one_broker_refuses_to_start_as_three(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path, 3, monkeypatch)
    node = KafkaNode(config, 1)
    node.home.mkdir(parents=True)
    (node.home / "brokers").write_text("1\n")
    with pytest.raises(InfraError, match="formatted as 1 broker"):
        node._check_formatted_as_configured()


def test_the_active_controller_is_read_from_the_quorum_state(tmp_path: Path) -> None:
    meta = tmp_path / "__cluster_metadata-0"
    meta.mkdir()
    (meta / "quorum-state").write_text('{"leaderId": 2, "leaderEpoch": 7, "votedId": -1}')
    assert quorum_state(tmp_path) == (7, 2)
    assert quorum_state(tmp_path / "nowhere") is None


def test_replicas_get_names_and_ports_of_their_own() -> None:
    settings = CommonSettings()
    env = {"LEADWIRE_PROCESSOR_REPLICAS": "3", "LEADWIRE_ANALYTICS_REPLICAS": "2"}
    procs = plan(env, settings, ("ingest", "processor", "analytics"))
    assert [p.name for p in procs] == [
        "ingest",
        "processor",
        "processor-2",
        "processor-3",
        "analytics",
        "analytics-2",
    ]
    assert len({p.ops_port for p in procs}) == len(procs)
    second = next(p for p in procs if p.name == "analytics-2")
    assert second.env() == {
        "LEADWIRE_ANALYTICS_OPS_PORT": str(settings.analytics_ops_port + 10),
        "LEADWIRE_ANALYTICS_PORT": str(settings.analytics_port + 10),
    }
    assert procs[1].env() == {}  # replica 1 keeps the service's own settings
    assert service_of("processor-2") == "processor" and service_of("kafka-2") == "kafka-2"
    assert ops_url_key("processor-2") == "LEADWIRE_PROCESSOR_2_OPS_URL"


def test_replicas_apply_to_consumer_services_only_and_refuse_nonsense() -> None:
    assert replica_count({"LEADWIRE_INGEST_REPLICAS": "4"}, "ingest") == 1
    assert replica_count({}, "notifier") == 1
    with pytest.raises(InfraError, match="LEADWIRE_ARCHIVER_REPLICAS"):
        replica_count({"LEADWIRE_ARCHIVER_REPLICAS": "0"}, "archiver")


def test_status_is_a_readable_table_not_reprs() -> None:
    rows = [
        Row("kafka", "10", "ready", "127.0.0.1:19092", "node 1, active controller"),
        Row("processor-2", "12", "ready", "http://127.0.0.1:9091", "leadwire-processor: raw 2-3"),
    ]
    text = render(rows, "stack dev")
    lines = text.splitlines()
    assert lines[0] == "stack dev"
    assert lines[1].split() == ["PROCESS", "PID", "STATE", "ADDRESS", "DETAIL"]
    assert "ComponentStatus(" not in text and "Row(" not in text
    # Columns line up: every row's address starts where the header's does.
    col = lines[1].index("ADDRESS")
    assert all(line[col:].startswith(("127", "http")) for line in lines[2:])
    assert _ranges([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"


def test_the_gateway_windows_are_judged_on_new_acknowledgements() -> None:
    from bench.loadgen.generator import Attempt
    from bench.soak.cluster import Window, judge

    def attempt(at: float, status: int, answer: str) -> Attempt:
        return Attempt(at=at, status=status, answer=answer, request_id=None, error=None, ms=100)

    class Item:
        def __init__(self, *attempts: Attempt) -> None:
            self.attempts = list(attempts)

    class Gen:
        items = {
            "a": Item(attempt(11, 503, ""), attempt(21, 202, "accepted")),
            "b": Item(attempt(12, 202, "duplicate")),  # a retry answered from the record
        }
        extras: list[Item] = []

    one_broker = Window("only node 1 up", 503, 10, 20)
    lines, broken = judge(Gen(), [one_broker])  # type: ignore[arg-type]
    assert broken == [] and "202 duplicate: 1" in lines[0] and "503: 1" in lines[0]
    Gen.items["c"] = Item(attempt(13, 202, "accepted"))
    assert judge(Gen(), [one_broker])[1] == [  # type: ignore[arg-type]
        "only node 1 up: 1 answers 202 below min.insync.replicas"
    ]
    two_brokers = Window("broker 3 stopped", 202, 10, 20)
    assert "503 with two brokers up" in judge(Gen(), [two_brokers])[1][0]  # type: ignore[arg-type]
    assert "not judged" in judge(Gen(), [Window("empty", 202, 50, 60)])[1][0]  # type: ignore[arg-type]


async def test_a_killed_broker_leaves_a_window_to_judge_however_fast_it_restarts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio

    from bench.soak import cluster

    now = [100.0]

    async def sleep(seconds: float) -> None:  # the run's clock moves only when time passes
        now[0] += max(seconds, 0.0)

    class Node:
        async def start(self, timeout: float) -> None:  # an instant restart
            return None

    class Kafka:
        def active_controller(self) -> int:
            return 2

        async def kill9(self, node_id: int) -> None:
            return None

        def node(self, node_id: int) -> Node:
            return Node()

    class Stack:
        class stack:
            kafka = Kafka()

    monkeypatch.setattr(asyncio, "sleep", sleep)
    faults = cluster.ClusterFaults(stack=Stack(), clock=lambda: now[0])  # type: ignore[arg-type]
    await faults.kill_controller()()
    [window] = faults.windows
    assert window.expect == 202 and window.end - window.start >= cluster.JUDGED_S
