"""A protocol plugin that lives only in the tests (tests/plugins) runs end to end: found by its
entry point, checked by ``gateway check-config``, polled by ``gateway run``, published to a real
broker, its device state decided by the runtime; no file of the gateway knows it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.gateway import ADMIN_TOKEN, ROOT, GatewayProcess
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt_watch import MqttWatch

pytestmark = pytest.mark.integration

PLUGIN_PATH = {"PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "plugins"), str(ROOT)])}


def config(broker: Mosquitto) -> dict[str, Any]:
    return {
        "gateway": {"id": "gw-plug", "log_level": "INFO"},
        "sinks": {"mqtt": {"type": "mqtt", "host": broker.host, "port": broker.port}},
        "runtime": {"status_interval": 1, "degraded_hold": 1},
        "profiles": [
            {
                "id": "counting",
                "type": "counter",
                "groups": [{"interval": 0.1, "tags": [{"name": "n"}, {"name": "m", "step": 2}]}],
            }
        ],
        "devices": [
            {"id": "c1", "type": "counter", "profile": "counting", "start": 100},
            {"id": "c2", "type": "counter", "profile": "counting", "fail_every": 5},
        ],
    }


def test_check_config_knows_the_plugins_types(tmp_path: Path, mosquitto: Mosquitto) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(yaml.safe_dump(config(mosquitto)))
    broken = config(mosquitto)
    broken["devices"][0]["start"] = "lots"
    bad.write_text(yaml.safe_dump(broken))
    argv = [sys.executable, "-m", "gateway.cli", "check-config"]
    env = {**os.environ, **PLUGIN_PATH}
    ok = subprocess.run([*argv, str(good)], capture_output=True, text=True, env=env, cwd=ROOT)
    assert ok.returncode == 0, ok.stderr
    assert "2 device(s)" in ok.stdout
    refused = subprocess.run([*argv, str(bad)], capture_output=True, text=True, env=env, cwd=ROOT)
    assert refused.returncode == 1
    assert "devices[0].start:" in refused.stderr
    # Without the plugin on the path, the same file names the unknown type.
    plain = subprocess.run([*argv, str(good)], capture_output=True, text=True, cwd=ROOT)
    assert plain.returncode == 1
    assert "devices[0].type:" in plain.stderr and "'modbus'" in plain.stderr


def test_a_device_of_a_test_plugin_runs_end_to_end(tmp_path: Path, mosquitto: Mosquitto) -> None:
    with MqttWatch(mosquitto.host, mosquitto.port, "gateway/gw-plug/#").start() as watch:
        gateway = GatewayProcess(tmp_path / "gw", config(mosquitto), env=PLUGIN_PATH).start()
        try:
            url = gateway.wait_api()
            # The control plane knows the plugin's type (and the page asks for its fields).
            auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            protocols = httpx.get(f"{url}/api/v1/protocols", headers=auth, timeout=5).json()
            fields = {p["type"]: [f["name"] for f in p["fields"]] for p in protocols}
            assert fields == {
                "modbus": ["host", "port", "unit"],
                "opcua": ["endpoint"],
                "s7": ["host", "port", "rack", "slot"],
                "counter": [],
            }
            created = httpx.post(
                f"{url}/api/v1/devices",
                json={"id": "c3", "type": "counter", "profile": "counting", "start": 7},
                headers=auth,
                timeout=5,
            )
            assert created.status_code == 201, created.text
            refused = httpx.post(
                f"{url}/api/v1/devices",
                json={"id": "c4", "type": "counter", "profile": "counting", "start": "x"},
                headers=auth,
                timeout=5,
            )
            assert refused.status_code == 422
            assert [e["field"] for e in refused.json()["errors"]] == ["start"]
            watch.wait_for_count("gateway/gw-plug/c3/telemetry", 3)
            received = watch.wait_for_count("gateway/gw-plug/c1/telemetry", 10)
            values = [m.json()["values"] for m in received]
            assert all(v["m"] - 100 == 2 * (v["n"] - 100) for v in values)
            ns = [v["n"] for v in values]
            assert ns == sorted(ns) and ns[0] >= 101
            # Every fifth cycle of c2 fails: the runtime, not the plugin, makes it degraded.
            status = watch.wait_for(
                lambda m: (
                    m.topic == "gateway/gw-plug/c2/status" and m.json()["state"] == "degraded"
                ),
                10,
            )
            assert status.json()["last_error"] == "counter refused"
            bad = watch.wait_for(
                lambda m: m.topic == "gateway/gw-plug/c2/telemetry" and "bad" in m.json(), 10
            )
            assert bad.json()["bad"] == {"n": "refused", "m": "refused"}
        finally:
            assert gateway.stop() == 0
    assert "Traceback" not in gateway.log()
