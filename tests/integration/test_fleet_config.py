"""A desired configuration pushed over MQTT (real Mosquitto, real gateway and simulator):
applied live, reported in sync, refused with every error named, secrets kept local, listed by
``gateway fleet``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import yaml
from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.gateway import ADMIN_TOKEN, ROOT, GatewayProcess, example_profile
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt_watch import MqttWatch
from tests.support.processes import wait_until
from tests.support.simulator import ModbusSimulator

PREFIX = "plant"


def _config(mosquitto: Mosquitto, gateway_id: str) -> dict[str, Any]:
    return {
        "gateway": {"id": gateway_id, "log_level": "INFO"},
        "sinks": {
            "mqtt": {
                "type": "mqtt",
                "host": mosquitto.host,
                "port": mosquitto.port,
                "topic_prefix": PREFIX,
            }
        },
        "runtime": {"status_interval": 1},
        "fleet": {"enabled": True},
    }


def _desired(version: int, sim: ModbusSimulator, *ids: str) -> dict[str, Any]:
    profile = example_profile()
    device = {"type": "modbus", "host": sim.host, "port": sim.port, "profile": profile["id"]}
    return {
        "version": version,
        "profiles": [profile],
        "devices": [{"id": device_id, **device} for device_id in ids],
    }


def _fleet(mosquitto: Mosquitto, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "fleet", "--broker",
         f"{mosquitto.host}:{mosquitto.port}", "--prefix", PREFIX, *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def _push(mosquitto: Mosquitto, tmp_path: Path, document: dict[str, Any], *gateways: str) -> Any:
    path = tmp_path / f"desired-{document['version']}.yaml"
    path.write_text(yaml.safe_dump(document))
    done = _fleet(mosquitto, "--json", "--wait", "20", "push", *gateways, str(path))
    return done.returncode, json.loads(done.stdout)


def _devices(gateway: GatewayProcess) -> dict[str, str]:
    response = httpx.get(
        f"{gateway.api_url}/api/v1/devices",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=10,
    )
    response.raise_for_status()
    body = response.json()
    items = body["items"] if isinstance(body, dict) else body
    return {d["id"]: d.get("source", "") for d in items}


def test_a_pushed_configuration_is_applied_reported_and_listed(
    mosquitto: Mosquitto,
    launch_sim: Callable[..., ModbusSimulator],
    run_gateway: Callable[[dict[str, Any]], GatewayProcess],
    tmp_path: Path,
) -> None:
    sim = launch_sim()
    gateways = [run_gateway(_config(mosquitto, f"line{n}")) for n in (1, 2)]
    for gateway in gateways:
        gateway.wait_api()
    watch = MqttWatch(mosquitto.host, mosquitto.port, f"{PREFIX}/+/press-a/telemetry").start()
    try:
        code, reports = _push(mosquitto, tmp_path, _desired(1, sim, "press-a"), "line1", "line2")
        assert code == 0, reports
        for gateway_id in ("line1", "line2"):
            report = reports[gateway_id]
            assert (report["state"], report["version"], report["errors"]) == ("in_sync", 1, [])
            assert report["changes"]["devices_added"] == 1
        # Applied live: the new device publishes telemetry from both gateways.
        wait_until(
            lambda: {m.topic.split("/")[1] for m in watch.messages()} == {"line1", "line2"},
            30,
            "telemetry of press-a from both gateways",
        )
    finally:
        watch.stop()
    assert _devices(gateways[0]) == {"press-a": "api"}

    # Version 2 adds one device and changes nothing else.
    code, reports = _push(mosquitto, tmp_path, _desired(2, sim, "press-a", "press-b"), "line1")
    assert code == 0
    assert reports["line1"]["changes"]["devices_added"] == 1
    assert reports["line1"]["changes"]["devices_changed"] == 0
    assert set(_devices(gateways[0])) == {"press-a", "press-b"}

    # A bad document: every problem named, nothing applied, the previous version kept.
    bad = _desired(3, sim, "press-a", "press-c")
    bad["devices"][1]["port"] = 70000
    bad["devices"].append({"id": "press-d", "type": "modbus", "host": "h", "profile": "nope"})
    code, reports = _push(mosquitto, tmp_path, bad, "line1")
    assert code == 1
    report = reports["line1"]
    assert report["state"] == "failed"
    assert report["applied_version"] == 2
    paths = {e["path"] for e in report["errors"]}
    assert "devices[1].port" in paths, report["errors"]
    assert set(_devices(gateways[0])) == {"press-a", "press-b"}

    # A literal secret never travels: refused; an ${ENV} reference would be filled locally.
    secret = _desired(4, sim, "press-a")
    secret["devices"] = [
        {"id": "ua", "type": "opcua", "endpoint": "opc.tcp://127.0.0.1:4840",
         "username": "op", "password": "hunter2", "profile": "x"}
    ]  # fmt: skip
    code, reports = _push(mosquitto, tmp_path, secret, "line1")
    assert code == 1
    messages = [e["message"] for e in reports["line1"]["errors"]]
    assert any("secrets never travel over MQTT" in m for m in messages), messages

    # The fleet view: both gateways online, their devices, versions and sync states.
    listed = _fleet(mosquitto, "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {row["gateway"]: row for row in json.loads(listed.stdout)}
    assert rows["line1"]["state"] == rows["line2"]["state"] == "online"
    assert (rows["line1"]["config_version"], rows["line1"]["config_state"]) == (4, "failed")
    assert (rows["line2"]["config_version"], rows["line2"]["config_state"]) == (1, "in_sync")
    assert rows["line2"]["devices"] == 1
    table = _fleet(mosquitto)
    assert "2 gateway(s), 2 online; 1 of 2 managed in sync" in table.stdout, table.stdout

    # A restart: the retained document comes back, nothing changes, still in sync.
    gateways[1].stop()
    wait_until(
        lambda: json.loads(_fleet(mosquitto, "--json").stdout)[1]["state"] == "offline",
        30,
        "line2 offline in the fleet view",
    )
    gateways[1].start()

    def line2_back() -> dict[str, Any] | None:
        row = json.loads(_fleet(mosquitto, "--json").stdout)[1]
        return row if row["state"] == "online" and row["config_state"] == "in_sync" else None

    row = wait_until(line2_back, 60, "line2 online and in sync again")
    assert row["config_version"] == 1


def test_the_shipped_acl_lets_only_the_fleet_manager_configure_gateways(
    launch_sim: Callable[..., ModbusSimulator],
    run_gateway: Callable[[dict[str, Any]], GatewayProcess],
    tmp_path: Path,
) -> None:
    """config/mosquitto-fleet.acl (the README's): a gateway's own login cannot write a
    desired configuration, for itself or another gateway; the fleet manager's can."""
    broker = Mosquitto(tmp_path / "broker", users={"fleet": "fleet-pw", "line1": "line1-pw"})
    acl = broker.readable_copy(ROOT / "config" / "mosquitto-fleet.acl")
    broker.extra_config = f"acl_file {acl}"
    broker.start()
    try:
        sim = launch_sim()
        config = _config(broker, "line1")
        config["sinks"]["mqtt"] |= {"username": "line1", "password": "line1-pw"}
        run_gateway(config).wait_api()
        path = tmp_path / "desired.yaml"
        path.write_text(yaml.safe_dump(_desired(1, sim, "press-a")))
        pushed = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "fleet", "--broker",
             f"{broker.host}:{broker.port}", "--prefix", "plant", "--json", "--wait", "20",
             "--username", "fleet", "push", "line1", str(path)],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
            env={**os.environ, "FLEET_MQTT_PASSWORD": "fleet-pw"},
        )  # fmt: skip
        assert pushed.returncode == 0, pushed.stdout + pushed.stderr
        assert json.loads(pushed.stdout)["line1"]["state"] == "in_sync"

        watch = MqttWatch(
            broker.host, broker.port, "plant/#", username="fleet", password="fleet-pw"
        ).start()
        try:
            # A marker the fleet manager may send (to a gateway that does not exist) comes
            # through once everything before it was handled.
            fleet = _Publisher(broker, "fleet", "fleet-pw")
            fleet.send("plant/marker/config/desired", b"{}")
            wait_until(lambda: watch.messages("plant/marker/config/desired"), 10, "marker")
            watch.clear()  # the retained messages and the first marker
            forged = orjson.dumps(_desired(99, sim))
            for topic in ("plant/line1/config/desired", "plant/line2/config/desired"):
                rogue = _Publisher(broker, "line1", "line1-pw")
                # Acknowledged and dropped, or the connection closed (Mosquitto 2.0 does
                # either): handled by the broker before the marker below is sent.
                rogue.send(topic, forged, retain=True)
                rogue.close()
            fleet.send("plant/marker/config/desired", b"{}")
            wait_until(lambda: watch.messages("plant/marker/config/desired"), 10, "marker")
            assert watch.messages("plant/line1/config/desired") == []
            assert watch.messages("plant/line2/config/desired") == []
            reports = [m.json() for m in watch.messages("plant/line1/config/reported")]
            assert all(r["version"] == 1 for r in reports), reports
            fleet.close()
        finally:
            watch.stop()
    finally:
        broker.close()


class _Publisher:
    """A client that only publishes, with a login."""

    def __init__(self, broker: Mosquitto, username: str, password: str) -> None:
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self._client.username_pw_set(username, password)
        connected, self._gone = threading.Event(), threading.Event()
        self._client.on_connect = lambda *_: connected.set()
        self._client.on_disconnect = lambda *_: self._gone.set()
        self._client.connect(broker.host, broker.port)
        self._client.loop_start()
        assert connected.wait(10), "the publisher's CONNACK"

    def send(self, topic: str, payload: bytes, retain: bool = False) -> None:
        """Until the broker acknowledged it or closed the connection."""
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        wait_until(lambda: info.is_published() or self._gone.is_set(), 10, f"PUBACK of {topic}")

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
