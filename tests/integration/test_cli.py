"""The command line as a user meets it: check-config, demo (what `make demo` runs) and watch."""

from __future__ import annotations

import contextlib
import signal
import sys
from pathlib import Path

import httpx
import psutil
import pytest
import yaml
from paho.mqtt import publish

from gateway.cli import main
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt_watch import MqttWatch
from tests.support.processes import ManagedProcess, wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_check_config_prints_a_summary_or_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check-config", str(ROOT / "config" / "gateway.yaml")]) == 0
    assert "5 device(s)" in capsys.readouterr().out
    document = yaml.safe_load((ROOT / "config" / "gateway.yaml").read_text())
    document["devices"][2]["unit"] = 300
    document["profiles"][0]["groups"][0]["tags"][5]["data_type"] = "float33"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(document))
    assert main(["check-config", str(bad)]) == 1
    errors = capsys.readouterr().err
    assert "devices[2].unit" in errors
    assert "profiles[0].groups[0].tags[5].data_type" in errors


def test_demo_publishes_then_ctrl_c_stops_everything_it_started(tmp_path: Path) -> None:
    demo = ManagedProcess(
        [sys.executable, "-m", "gateway.cli", "demo", "--workdir", str(tmp_path / "demo")],
        tmp_path,
        name="demo",
        cwd=ROOT,
    ).start()
    try:
        banner = demo.wait_for_line(r"MQTT broker\s+127\.0\.0\.1:(\d+)", 30)
        port = int(banner.group(1))
        children = psutil.Process(demo.pid).children()
        assert len(children) == 4, children  # the broker and the three simulators
        page = demo.wait_for_line(r"Page:\s+(http://\S+)/#token=(\S+)", 5)
        url, token = page.group(1), page.group(2)

        def ready() -> bool:
            try:
                return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(ready, 20, "the demo's control plane ready")
        listed = httpx.get(f"{url}/api/v1/devices", headers={"Authorization": f"Bearer {token}"})
        devices = ["filler-1", "filler-2", "capper-1", "line1-opcua", "press-s7"]
        assert [d["id"] for d in listed.json()["items"]] == devices
        with MqttWatch("127.0.0.1", port, "factory/plant1-gw/line1-opcua/telemetry") as opcua:
            assert "speed" in opcua.wait_for(lambda m: True, 15).json()["values"]
        with MqttWatch("127.0.0.1", port, "factory/plant1-gw/press-s7/telemetry") as s7:
            assert "counter" in s7.wait_for(lambda m: "values" in m.json(), 15).json()["values"]
        with MqttWatch("127.0.0.1", port, "factory/plant1-gw/#") as watch:
            message = watch.wait_for(lambda m: m.topic.endswith("/filler-1/telemetry"), 15)
            assert message.json()["values"]["door_closed"] is True
            demo.send_signal(signal.SIGINT)
            watch.wait_for(
                lambda m: m.topic == "factory/plant1-gw/status" and m.json()["state"] == "offline",
                10,
                "the gateway's own offline status before the broker stops",
            )
        assert demo.wait_exit(15) == 0
        assert not any(child.is_running() for child in children)
    finally:
        demo.stop()


def test_a_killed_demo_takes_what_it_started_with_it_and_counts_api_devices(
    tmp_path: Path,
) -> None:
    argv = [sys.executable, "-m", "gateway.cli", "demo", "--workdir", str(tmp_path / "demo")]
    first = ManagedProcess(argv, tmp_path, name="demo", cwd=ROOT).start()
    children: list[psutil.Process] = []
    try:
        page = first.wait_for_line(r"Page:\s+(http://\S+)/#token=(\S+)", 30)
        assert (
            "5 devices from" in first.output() and "registered over the API" not in first.output()
        )
        url, token = page.group(1), page.group(2)
        children = psutil.Process(first.pid).children()
        assert len(children) == 4, children
        api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"})

        def ready() -> bool:
            try:
                return api.get("/readyz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(ready, 20, "the demo's control plane ready")
        body = {"id": "extra", "type": "modbus", "host": "127.0.0.1", "port": 9, "enabled": False}
        assert api.post("/api/v1/devices", json={**body, "profile": "sim-plc"}).status_code == 201
        first.kill()
        wait_until(
            lambda: (
                not any(
                    child.is_running() and child.status() != psutil.STATUS_ZOMBIE
                    for child in children
                )
            ),
            15,
            "the broker and simulators gone after the demo's SIGKILL",
        )
        second = ManagedProcess(argv, tmp_path, name="demo-again", cwd=ROOT).start()
        try:
            second.wait_for_line(
                r"gateway\s+\S+: 5 devices from \S+, 1 registered over the API", 30
            )
            second.send_signal(signal.SIGINT)
            assert second.wait_exit(20) == 0
        finally:
            second.stop()
    finally:
        first.stop()
        for child in children:  # if the parent-death signal failed, still stop them
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()


def test_watch_prints_messages(tmp_path: Path, mosquitto: Mosquitto) -> None:
    argv = [sys.executable, "-m", "gateway.cli", "watch", "--port", str(mosquitto.port)]
    watcher = ManagedProcess([*argv, "--count", "1", "t/#"], tmp_path, name="watch", cwd=ROOT)
    watcher.start()
    try:
        # Until the watcher has subscribed, a message goes nowhere: publish until it shows.
        def printed() -> bool:
            publish.single("t/x", b'{"a":1}', hostname=mosquitto.host, port=mosquitto.port)
            return "t/x" in watcher.output()

        wait_until(printed, 10, "watch printed the message", interval=0.2)
        assert watcher.wait_exit(5) == 0
        assert 't/x {"a":1}' in watcher.output()
    finally:
        watcher.stop()
