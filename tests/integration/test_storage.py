"""The storage layer's edges, against real processes: a second gateway on one data dir, a
damaged database at start, and a full disk during a broker outage."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.faults import Metrics
from tests.support.gateway import GatewayProcess
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt_watch import MqttWatch
from tests.support.processes import wait_until
from tests.support.simulator import ModbusSimulator

pytestmark = pytest.mark.integration

GW = "gw-store"


def config(broker: Mosquitto, port: int, data_dir: Path, interval: float = 0.1) -> dict[str, Any]:
    return {
        "gateway": {"id": GW, "log_level": "INFO", "data_dir": str(data_dir)},
        "sinks": {
            "mqtt": {
                "type": "mqtt",
                "host": broker.host,
                "port": broker.port,
                "reconnect_min": 0.1,
                "reconnect_max": 0.5,
            }
        },
        "runtime": {"retry_min": 0.05, "retry_max": 0.5, "status_interval": 1},
        "devices": [
            {
                "id": "bulk",
                "type": "modbus",
                "host": "127.0.0.1",
                "port": port,
                "groups": [
                    {
                        "interval": interval,
                        "tags": [{"name": f"r{i}", "address": 1000 + i} for i in range(125)],
                    }
                ],
            }
        ],
    }


def test_a_second_gateway_on_the_same_data_dir_is_refused(
    tmp_path: Path, mosquitto: Mosquitto, launch_sim: Callable[..., ModbusSimulator]
) -> None:
    sim = launch_sim("--bulk-registers", "125")
    data = tmp_path / "data"
    first = GatewayProcess(tmp_path / "first", config(mosquitto, sim.port, data)).start()
    try:
        first.wait_api()
        second = GatewayProcess(tmp_path / "second", config(mosquitto, sim.port, data)).start()
        assert second.process.wait_exit(15) == 1
        assert f"data dir {data} is in use by PID {first.process.pid}" in second.log()
        assert first.process.running
    finally:
        assert first.stop() == 0


def test_a_damaged_database_is_set_aside_and_the_gateway_starts(
    tmp_path: Path, mosquitto: Mosquitto, launch_sim: Callable[..., ModbusSimulator]
) -> None:
    sim = launch_sim("--bulk-registers", "125")
    data = tmp_path / "data"
    data.mkdir()
    (data / "gateway.db").write_bytes(b"not a database at all " * 4096)
    with MqttWatch(mosquitto.host, mosquitto.port, f"gateway/{GW}/#").start() as watch:
        gateway = GatewayProcess(tmp_path / "gw", config(mosquitto, sim.port, data)).start()
        try:
            gateway.wait_api()
            watch.wait_for_count(f"gateway/{GW}/bulk/telemetry", 3)
        finally:
            assert gateway.stop() == 0
    [aside] = data.glob("gateway.db.damaged-*")
    assert aside.read_bytes().startswith(b"not a database")
    assert f"{data / 'gateway.db'} is damaged" in gateway.log()
    assert str(aside) in gateway.log()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB file system for the data dir (tmpfs: needs root)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a small tmpfs")
    target = tmp_path / "small"
    target.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(target)], check=True)
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def test_a_full_disk_during_an_outage_costs_the_replay_not_the_gateway(
    tmp_path: Path,
    small_disk: Path,
    mosquitto_factory: Callable[..., Mosquitto],
    launch_sim: Callable[..., ModbusSimulator],
) -> None:
    sim = launch_sim("--bulk-registers", "125")
    broker = Mosquitto(tmp_path / "broker")  # not started yet: the outage
    data = small_disk / "data"
    cfg = config(broker, sim.port, data, interval=0.02)
    cfg["runtime"]["outbox"] = {"min_free_mb": 0}  # let the disk fill up for real
    gateway = GatewayProcess(tmp_path / "gw", cfg).start()
    try:
        url = gateway.wait_api()

        def scrape() -> Metrics:
            return Metrics(httpx.get(f"{url}/metrics", timeout=5).text)

        wait_until(
            lambda: (
                scrape().value("gateway_outbox_unstored_readings_total", reason="disk_full") > 0
            ),
            90,
            "the disk full and counted",
        )
        polls = scrape().value("gateway_device_polls_total", device="bulk")
        wait_until(
            lambda: scrape().value("gateway_device_polls_total", device="bulk") > polls + 20,
            10,
            "polling goes on",
        )
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        assert gateway.log().count("cannot store batches") == 1
        # The broker comes back: live data flows at once, full disk or not.
        broker.start()
        with MqttWatch(broker.host, broker.port, f"gateway/{GW}/bulk/telemetry").start() as watch:
            watch.wait_for_count(f"gateway/{GW}/bulk/telemetry", 20, timeout=30)
        # Once delivered, confirmed rows go and the space comes back: storing resumes by itself.
        wait_until(lambda: "storing batches again" in gateway.log(), 60, "storing again")
    finally:
        assert gateway.stop() == 0
        broker.close()
    assert "Traceback" not in gateway.log()
