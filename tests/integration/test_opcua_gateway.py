"""End to end: OPC UA simulator processes → ``gateway run`` process → real Mosquitto."""

from __future__ import annotations

import base64
import math
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from asyncua import ua

from simulators.opcua.plant import NAMESPACE, VARIABLES, Variable, expected_value
from tests.support.gateway import ROOT, GatewayProcess
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt_watch import MqttWatch, Received
from tests.support.opcua import OpcUaSimulator
from tests.support.processes import wait_until

pytestmark = pytest.mark.integration

PREFIX = "it-opcua"
GW = "gw-opcua"
FROZEN = ("--period", "1000")
"""Ticks of 1000 s: every value stays the one of tick 0 for the whole test."""
MAX_NODES_PER_READ = 7
RESUME_DEADLINE = 5.0
"""Seconds from the restarted simulator's READY to data at the broker (reconnect_max is 0.5)."""


def telemetry(device: str) -> str:
    return f"{PREFIX}/{GW}/{device}/telemetry"


def status(device: str) -> str:
    return f"{PREFIX}/{GW}/{device}/status"


def node(var: Variable) -> str:
    return f"nsu={NAMESPACE};s={var.node_id}"


def tag_name(var: Variable) -> str:
    return var.node_id.replace("Line1.", "").replace(".", "_")


def line_tags(*variables: Variable) -> list[dict[str, Any]]:
    return [{"name": tag_name(v), "node": node(v)} for v in variables or VARIABLES]


def as_json(var: Variable, tick: int) -> Any:
    """What the gateway publishes for ``var`` at ``tick`` (see connectors/opcua/values.py)."""
    value = expected_value(var.node_id, tick)
    if var.variant_type is ua.VariantType.DateTime:
        return value.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    if var.variant_type is ua.VariantType.ByteString:
        return base64.b64encode(value).decode()
    if var.variant_type is ua.VariantType.LocalizedText:
        return value.Text
    return value


def device(
    device_id: str, sim: OpcUaSimulator, groups: list[dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    return {
        "id": device_id,
        "type": "opcua",
        "endpoint": sim.endpoint,
        "timeout": 2,
        "keepalive": 1,
        "labels": {"line": "it"},
        "groups": groups,
        **extra,
    }


def config(broker: Mosquitto, devices: list[dict[str, Any]], data_dir: Path) -> dict[str, Any]:
    return {
        "gateway": {"id": GW, "log_level": "INFO", "data_dir": str(data_dir)},
        "sinks": {
            "mqtt": {
                "type": "mqtt",
                "host": broker.host,
                "port": broker.port,
                "topic_prefix": PREFIX,
                "qos": 1,
            }
        },
        "runtime": {
            "reconnect_min": 0.1,
            "reconnect_max": 0.5,
            "retry_min": 0.05,
            "retry_max": 0.5,
            "status_interval": 1,
        },
        "devices": devices,
    }


@pytest.fixture(scope="module")
def frozen_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpcUaSimulator]:
    """One simulator for the tests that only read: values of tick 0, MaxNodesPerRead 7."""
    sim = OpcUaSimulator(
        tmp_path_factory.mktemp("opcua-frozen"),
        *FROZEN,
        "--max-nodes-per-read",
        str(MAX_NODES_PER_READ),
    )
    try:
        yield sim.start()
    finally:
        sim.stop()


@pytest.fixture
def launch_sim(tmp_path: Path) -> Iterator[Callable[..., OpcUaSimulator]]:
    started: list[OpcUaSimulator] = []

    def launch(*args: str, port: int | None = None) -> OpcUaSimulator:
        sim = OpcUaSimulator(tmp_path / f"sim{len(started)}", *args, port=port)
        started.append(sim)
        return sim.start()

    yield launch
    for sim in started:
        sim.stop()


@pytest.fixture
def run_gateway(
    tmp_path: Path, mosquitto: Mosquitto
) -> Iterator[Callable[[list[dict[str, Any]]], GatewayProcess]]:
    started: list[GatewayProcess] = []

    def run(devices: list[dict[str, Any]]) -> GatewayProcess:
        cfg = config(mosquitto, devices, tmp_path / "data")
        gateway = GatewayProcess(tmp_path / f"gateway{len(started)}", cfg)
        started.append(gateway)
        return gateway.start()

    yield run
    for gateway in started:
        gateway.stop()


@pytest.fixture
def watch(mosquitto: Mosquitto) -> Iterator[MqttWatch]:
    watcher = MqttWatch(mosquitto.host, mosquitto.port, f"{PREFIX}/#").start()
    yield watcher
    watcher.stop()


def on(topic: str, check: Callable[[Any], bool] = lambda _: True) -> Callable[[Received], bool]:
    return lambda m: m.topic == topic and bool(m.payload) and check(m.json())


def merged(
    watch: MqttWatch, device_id: str, names: set[str], timeout: float = 20
) -> dict[str, Any]:
    """Values, uncertain and bad reasons of ``device_id``'s telemetry, merged over messages
    until every name in ``names`` was seen."""

    def collect() -> dict[str, Any] | None:
        seen: dict[str, Any] = {"values": {}, "uncertain": {}, "bad": {}}
        for payload in watch.payloads(telemetry(device_id)):
            for key in seen:
                seen[key].update(payload.get(key, {}))
        known = set(seen["values"]) | set(seen["bad"])
        return seen if names <= known else None

    return wait_until(collect, timeout, message=lambda: f"telemetry of {sorted(names)}")


def check_values(values: dict[str, Any], variables: list[Variable], tick: int) -> None:
    for var in variables:
        expected = as_json(var, tick)
        got = values[tag_name(var)]
        if isinstance(expected, float):
            assert got == pytest.approx(expected, rel=1e-6), var.node_id
        elif isinstance(expected, list) and expected and isinstance(expected[0], float):
            assert got == pytest.approx(expected), var.node_id
        else:
            assert got == expected, var.node_id
            assert type(got) is type(expected), var.node_id


GOOD_VARIABLES = [v for v in VARIABLES if v.status == "Good"]


def test_a_subscription_delivers_every_type(
    frozen_sim: OpcUaSimulator,
    watch: MqttWatch,
    run_gateway: Callable[[list[dict[str, Any]]], GatewayProcess],
) -> None:
    groups = [{"name": "all", "interval": 0.2, "tags": line_tags()}]
    gateway = run_gateway([device("line", frozen_sim, groups)])
    seen = merged(watch, "line", {tag_name(v) for v in VARIABLES})
    check_values(seen["values"], GOOD_VARIABLES, 0)
    assert seen["uncertain"] == {"Capper_TorqueSensor": "UncertainSensorNotAccurate"}
    assert seen["values"]["Capper_TorqueSensor"] == 1.25
    assert seen["bad"] == {"Conveyor_Encoder": "BadSensorFailure"}
    online = watch.wait_for(on(status("line"), lambda p: p["state"] == "online"), 10)
    assert online.json()["last_error"] is None
    assert "Traceback" not in gateway.log()


def test_polling_reads_everything_split_by_max_nodes_per_read(
    frozen_sim: OpcUaSimulator,
    watch: MqttWatch,
    run_gateway: Callable[[list[dict[str, Any]]], GatewayProcess],
) -> None:
    groups = [{"name": "poll", "mode": "polling", "interval": 0.2, "tags": line_tags()}]
    run_gateway([device("poller", frozen_sim, groups)])
    # One message per poll with every tag, although no Read carries more than 7 nodes.
    message = watch.wait_for(
        on(telemetry("poller"), lambda p: len(p["values"]) + len(p.get("bad", {})) == 26), 20
    )
    check_values(message.json()["values"], GOOD_VARIABLES, 0)
    reads_per_poll = math.ceil(len(VARIABLES) / MAX_NODES_PER_READ)
    counted = watch.wait_for(on(status("poller"), lambda p: p["polls"] >= 3), 10).json()
    assert counted["requests"] == reads_per_poll * counted["polls"], counted
    assert len(watch.messages(telemetry("poller"))) >= 3


def test_an_unknown_node_is_bad_with_its_reason_and_the_rest_flows(
    frozen_sim: OpcUaSimulator,
    watch: MqttWatch,
    run_gateway: Callable[[list[dict[str, Any]]], GatewayProcess],
) -> None:
    counter, speed = VARIABLES[2], VARIABLES[5]
    ghost = f"nsu={NAMESPACE};s=Line1.Filler.Ghost"
    groups = [
        {
            "name": "sub",
            "interval": 0.2,
            "namespace": NAMESPACE,
            "tags": [
                *line_tags(counter),
                {"name": "ghost", "node": ghost},
                {"name": "lost", "path": "Plant/Line1/Filler/Lost"},
            ],
        },
        {
            "name": "poll",
            "mode": "polling",
            "interval": 0.2,
            "tags": [*line_tags(speed), {"name": "ghost_polled", "node": ghost}],
        },
    ]
    run_gateway([device("holey", frozen_sim, groups)])
    seen = merged(watch, "holey", {"Filler_Counter", "ghost", "lost", "Filler_Speed"})
    assert seen["bad"]["ghost"].startswith("BadNodeIdUnknown")
    assert seen["bad"]["lost"].startswith("BadNoMatch")
    assert seen["bad"]["ghost_polled"] == "BadNodeIdUnknown"
    check_values(seen["values"], [counter, speed], 0)
    degraded = watch.wait_for(on(status("holey"), lambda p: p["state"] == "degraded"), 10)
    assert "ghost: BadNodeIdUnknown" in degraded.json()["last_error"]
    # The good tags keep flowing: the polled one arrives every cycle.
    wait_until(
        lambda: sum("Filler_Speed" in p["values"] for p in watch.payloads(telemetry("holey"))) >= 5,
        10,
        "polls of the good tag",
    )


def test_data_resumes_after_the_server_is_killed_and_restarted(
    launch_sim: Callable[..., OpcUaSimulator],
    watch: MqttWatch,
    run_gateway: Callable[[list[dict[str, Any]]], GatewayProcess],
) -> None:
    sim = launch_sim("--period", "0.1")
    counter, speed = VARIABLES[2], VARIABLES[5]
    groups = [
        {"name": "sub", "interval": 0.1, "tags": line_tags(counter)},
        {"name": "poll", "mode": "polling", "interval": 0.2, "tags": line_tags(speed)},
    ]
    run_gateway([device("plc", sim, groups)])
    watch.wait_for(on(telemetry("plc"), lambda p: p["values"].get("Filler_Counter", 0) > 5), 20)
    for _ in range(2):  # twice: the second restart is handled as well as the first
        sim.kill()
        down = watch.wait_for(on(status("plc"), lambda p: p["state"] == "offline"), 10).json()
        assert sim.endpoint in down["last_error"]
        watch.clear()
        sim.start()
        ready = time.time()
        # The restarted server counts from 0 again: values below 50 are from the new session.
        first = watch.wait_for(
            on(telemetry("plc"), lambda p: 0 <= p["values"].get("Filler_Counter", -1) < 50),
            RESUME_DEADLINE + 5,
        )
        resumed_after = first.received_at - ready
        print(f"data resumed {resumed_after:.2f} s after the restarted server was ready")
        assert resumed_after < RESUME_DEADLINE
        watch.wait_for(on(telemetry("plc"), lambda p: "Filler_Speed" in p["values"]), 10)
        back = watch.wait_for(on(status("plc"), lambda p: p["state"] == "online"), 10).json()
        assert back["last_error"] is None


def test_node_ids_by_namespace_uri_survive_an_index_change(
    launch_sim: Callable[..., OpcUaSimulator],
    watch: MqttWatch,
    run_gateway: Callable[[list[dict[str, Any]]], GatewayProcess],
) -> None:
    first = launch_sim(*FROZEN)
    label = VARIABLES[11]
    groups = [{"name": "sub", "interval": 0.2, "tags": line_tags(label)}]
    run_gateway([device("plc", first, groups)])
    watch.wait_for(on(telemetry("plc"), lambda p: p["values"].get("Filler_Label") == "idle"), 20)
    first.kill()
    watch.wait_for(on(status("plc"), lambda p: p["state"] == "offline"), 10)
    watch.clear()
    # The "new PLC program" registers three namespaces first: the line's index is now 5.
    launch_sim(*FROZEN, "--extra-namespaces", "3", port=first.port)
    watch.wait_for(on(telemetry("plc"), lambda p: p["values"].get("Filler_Label") == "idle"), 15)
    watch.wait_for(on(status("plc"), lambda p: p["state"] == "online"), 10)


def test_secure_endpoint_with_username_and_clear_errors(
    launch_sim: Callable[..., OpcUaSimulator],
    tmp_path: Path,
    watch: MqttWatch,
    run_gateway: Callable[[list[dict[str, Any]]], GatewayProcess],
) -> None:
    sim = launch_sim(
        *FROZEN, "--secure", "--username", "operator", "--password", "s3cret",
        "--pki-dir", str(tmp_path / "server-pki"),
    )  # fmt: skip
    groups = [{"name": "sub", "interval": 0.2, "tags": line_tags(VARIABLES[11])}]
    secure = {"policy": "Basic256Sha256", "mode": "SignAndEncrypt", "trust_on_first_use": True}
    trust_dir = tmp_path / "data" / "opcua" / "pki" / "trusted"
    gateway = run_gateway(
        [
            device("good", sim, groups, security=secure, username="operator", password="s3cret"),
            device("wrong", sim, groups, security=secure, username="operator", password="nope"),
            device(
                "untrusted",
                sim,
                groups,
                security={"policy": "Basic256Sha256", "trust_dir": str(tmp_path / "empty")},
                username="operator",
                password="s3cret",
            ),
            device("plain", sim, groups, username="operator", password="s3cret"),
        ]
    )
    watch.wait_for(on(telemetry("good"), lambda p: p["values"].get("Filler_Label") == "idle"), 20)
    watch.wait_for(on(status("good"), lambda p: p["state"] == "online"), 10)
    assert len(list(trust_dir.glob("*.der"))) == 1
    assert "trusting on first use" in gateway.log()

    wrong = watch.wait_for(on(status("wrong"), lambda p: p["state"] == "offline"), 20).json()
    assert "wrong username or password" in wrong["last_error"]
    assert "BadUserAccessDenied" in wrong["last_error"] or "BadIdentityToken" in wrong["last_error"]
    assert "nope" not in wrong["last_error"]

    untrusted = watch.wait_for(on(status("untrusted"), lambda p: p["state"] == "offline"), 20)
    assert "is not trusted" in untrusted.json()["last_error"]
    assert list((tmp_path / "data" / "opcua" / "pki" / "rejected").glob("*.der"))

    plain = watch.wait_for(on(status("plain"), lambda p: p["state"] == "offline"), 20).json()
    assert "no endpoint with security policy None" in plain["last_error"], plain
    assert not watch.messages(telemetry("wrong"))
    assert not watch.messages(telemetry("untrusted"))


def test_browse_yaml_pasted_as_config_runs(
    frozen_sim: OpcUaSimulator,
    watch: MqttWatch,
    run_gateway: Callable[[list[dict[str, Any]]], GatewayProcess],
) -> None:
    argv = [
        sys.executable, "-m", "gateway.cli", "browse", frozen_sim.endpoint,
        "--node", f"nsu={NAMESPACE};s=Plant", "--yaml",
    ]  # fmt: skip
    browsed = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert browsed.returncode == 0, browsed.stderr
    assert browsed.stdout.startswith(f"# {len(VARIABLES)} variable(s) below")
    block = yaml.safe_load(browsed.stdout)
    [profile] = block["profiles"]
    [dev] = block["devices"]
    assert dev["endpoint"] == frozen_sim.endpoint and dev["profile"] == profile["id"] == "plant"
    tags = profile["groups"][0]["tags"]
    names = {t["name"] for t in tags}
    assert len(names) == len(VARIABLES)
    # The pasted profile goes in as the device's own groups, at a test-friendly interval.
    profile["groups"][0]["interval"] = 0.2
    own = {key: value for key, value in dev.items() if key != "profile"}
    run_gateway([{**own, "groups": profile["groups"]}])
    seen = merged(watch, dev["id"], names)
    assert seen["values"]["Line1.Filler.Label"] == "idle"
    assert seen["bad"] == {"Line1.Conveyor.Encoder": "BadSensorFailure"}

    table = subprocess.run(
        [*argv[:-1], "--depth", "2"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert table.returncode == 0, table.stderr
    rows = table.stdout.splitlines()
    assert rows[0].split()[:2] == ["NODE", "ID"]
    assert any("Line1/ResetCount" in row and "UInt32" in row for row in rows)
    assert not any("Line1/Filler/" in row for row in rows)  # deeper than --depth 2
