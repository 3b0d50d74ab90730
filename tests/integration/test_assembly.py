"""The one assembly and the runtime's rules, end to end against real processes: named sinks on
two brokers, a gateway without its API, and device state decided by the runtime."""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.support.faults import Metrics
from tests.support.gateway import ADMIN_TOKEN, GatewayProcess
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt_watch import MqttWatch, Received
from tests.support.processes import wait_until
from tests.support.simulator import ModbusSimulator

pytestmark = pytest.mark.integration

PREFIX = "asm"
GW = "gw-asm"
TAGS = [{"name": f"r{i}", "address": i} for i in range(4)]


def modbus(device_id: str, port: int, unit: int, interval: float = 0.2) -> dict[str, Any]:
    return {
        "id": device_id,
        "type": "modbus",
        "host": "127.0.0.1",
        "port": port,
        "unit": unit,
        "timeout": 0.5,
        "groups": [{"name": "g", "interval": interval, "tags": TAGS}],
    }


def mqtt_sink(broker: Mosquitto) -> dict[str, Any]:
    return {
        "type": "mqtt",
        "host": broker.host,
        "port": broker.port,
        "topic_prefix": PREFIX,
        "reconnect_min": 0.1,
        "reconnect_max": 0.5,
        "publish_timeout": 2,
    }


def config(sinks: dict[str, Any], devices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "gateway": {"id": GW, "log_level": "INFO"},
        "sinks": sinks,
        "runtime": {
            "reconnect_min": 0.1,
            "reconnect_max": 0.5,
            "retry_min": 0.05,
            "retry_max": 0.5,
            "status_interval": 1,
        },
        "devices": devices,
        **extra,
    }


def topic(device: str, kind: str) -> str:
    return f"{PREFIX}/{GW}/{device}/{kind}"


def scrape(gateway: GatewayProcess) -> Metrics:
    response = httpx.get(f"{gateway.api_url}/metrics", timeout=5)
    response.raise_for_status()
    return Metrics(response.text)


def test_two_mqtt_sinks_on_two_brokers_and_one_stopped(
    mosquitto_factory: Callable[..., Mosquitto],
    launch_sim: Callable[..., ModbusSimulator],
    run_gateway: Callable[[dict[str, Any]], GatewayProcess],
) -> None:
    plant, cloud = mosquitto_factory(), mosquitto_factory()
    sim = launch_sim("--units", "1")
    with (
        MqttWatch(plant.host, plant.port, f"{PREFIX}/#").start() as on_plant,
        MqttWatch(cloud.host, cloud.port, f"{PREFIX}/#").start() as on_cloud,
    ):
        gateway = run_gateway(
            config(
                {"plant": mqtt_sink(plant), "cloud": mqtt_sink(cloud)}, [modbus("m1", sim.port, 1)]
            )
        )
        gateway.wait_api()
        # The same telemetry reaches both brokers.
        on_plant.wait_for_count(topic("m1", "telemetry"), 5)
        on_cloud.wait_for_count(topic("m1", "telemetry"), 5)
        sent = {m.json()["ts"] for m in on_plant.messages(topic("m1", "telemetry"))}
        wait_until(
            lambda: sent <= {m.json()["ts"] for m in on_cloud.messages(topic("m1", "telemetry"))},
            10,
            "every telemetry message of the plant broker on the cloud broker too",
        )
        # Each sink has its own client id: two sinks of one gateway never take each other's.
        assert "reachable again" not in gateway.log()

        cloud.stop()
        stopped_at = time.time()
        on_plant.clear()
        before = scrape(gateway)
        # The plant broker keeps getting every poll, on time, while the cloud's backlog grows.
        fresh = on_plant.wait_for_count(topic("m1", "telemetry"), 15, timeout=10)
        ages = [m.received_at - m.json()["ts"] / 1000 for m in fresh]
        assert max(ages) < 1.0, ages
        assert min(m.json()["ts"] for m in fresh) / 1000 < stopped_at + 1.0

        def cloud_backlog() -> bool:
            metrics = scrape(gateway)
            waiting = metrics.value("gateway_sink_buffer_readings", sink="cloud")
            return (
                waiting >= 40 and metrics.value("gateway_sink_buffer_readings", sink="plant") < 40
            )

        wait_until(cloud_backlog, 10, "the cloud sink's backlog in /metrics, the plant's empty")
        after = scrape(gateway)
        print(
            f"plant broker during the cloud's outage: {len(fresh)} messages, age max"
            f" {1000 * max(ages):.0f} ms; backlog cloud"
            f" {after.value('gateway_sink_buffer_readings', sink='cloud'):.0f}, plant"
            f" {after.value('gateway_sink_buffer_readings', sink='plant'):.0f} readings"
        )
        written = "gateway_sink_written_readings_total"
        assert after.value(written, sink="plant") > before.value(written, sink="plant")
        ready = httpx.get(f"{gateway.api_url}/readyz", timeout=5)
        assert ready.status_code == 503
        assert set(ready.json()["sinks"]) == {"cloud"}


def test_without_the_api_devices_registered_over_it_are_restored(
    mosquitto: Mosquitto,
    launch_sim: Callable[..., ModbusSimulator],
    run_gateway: Callable[[dict[str, Any]], GatewayProcess],
) -> None:
    sim = launch_sim("--units", "2")
    sinks = {"mqtt": mqtt_sink(mosquitto)}
    first = run_gateway(config(sinks, [modbus("from-file", sim.port, 1)]))
    url = first.wait_api()
    response = httpx.post(
        f"{url}/api/v1/devices",
        json=modbus("from-api", sim.port, 2),
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    data_dir = first.config_path.parent / "data"
    assert first.stop() == 0

    with MqttWatch(mosquitto.host, mosquitto.port, f"{PREFIX}/#").start() as watch:
        second = run_gateway(
            config(
                sinks,
                [modbus("from-file", sim.port, 1)],
                api={"enabled": False},
            )
            | {"gateway": {"id": GW, "log_level": "INFO", "data_dir": str(data_dir)}}
        )
        watch.wait_for_count(topic("from-api", "telemetry"), 3, timeout=15)
        watch.wait_for_count(topic("from-file", "telemetry"), 3)
        assert second.process.running
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{second.api_url}/healthz", timeout=1)


def test_a_busy_device_stays_degraded_with_every_value_and_its_neighbour_is_refreshed(
    mosquitto: Mosquitto,
    launch_sim: Callable[..., ModbusSimulator],
    run_gateway: Callable[[dict[str, Any]], GatewayProcess],
) -> None:
    # Unit 1 answers one read in seven "server device busy" (exception 6); unit 2 is healthy.
    sim = launch_sim("--units", "2", "--busy-every", "7", "--busy-units", "1")
    with MqttWatch(mosquitto.host, mosquitto.port, f"{PREFIX}/#").start() as watch:
        gateway = run_gateway(
            config(
                {"mqtt": mqtt_sink(mosquitto)},
                [modbus("busy", sim.port, 1, interval=0.1), modbus("calm", sim.port, 2)],
            )
        )
        gateway.wait_api()
        started = time.monotonic()
        watch.wait_for(
            lambda m: m.topic == topic("busy", "status") and m.json()["state"] == "degraded",
            10,
            "the busy device degraded",
        )
        # 12 s: the busy device answers busy about 17 times (10 polls/s, one in seven).
        wait_until(lambda: time.monotonic() - started > 12, 15, "12 s of polling")
        watch.barrier()

    busy_states = [m.json()["state"] for m in watch.messages(topic("busy", "status"))]
    assert "offline" not in busy_states
    # One change to degraded, then it stays there: no flapping.
    changes = [s for i, s in enumerate(busy_states) if i == 0 or s != busy_states[i - 1]]
    assert changes[-1] == "degraded" and len(changes) <= 2, changes
    last = watch.messages(topic("busy", "status"))[-1].json()
    assert last["busy_retries"] >= 10
    assert last["request_errors"] == 0
    assert "busy" in last["last_error"]
    # Every value of every cycle is published good: the retries got them.
    cycles = [m.json() for m in watch.messages(topic("busy", "telemetry"))]
    assert len(cycles) >= 80
    assert all(set(c["values"]) == {t["name"] for t in TAGS} and "bad" not in c for c in cycles)

    # The healthy neighbour's retained status is refreshed on schedule (every status_interval)
    # while the busy device changes state, with its counters moving on.
    calm = watch.messages(topic("calm", "status"))
    times = [m.received_at for m in calm if not m.retain]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(times) >= 9 and max(gaps) < 2.0, gaps
    print(
        f"busy: states {changes}, {last['busy_retries']} busy retries, {len(cycles)} cycles all"
        f" good; calm: {len(times)} status refreshes, gaps max {max(gaps):.2f} s"
    )
    polls = [m.json()["polls"] for m in calm]
    assert polls == sorted(polls) and polls[-1] >= 40
    assert calm[-1].json()["state"] == "online"


def test_an_undecodable_answer_is_named_as_such(
    mosquitto: Mosquitto, run_gateway: Callable[[dict[str, Any]], GatewayProcess]
) -> None:
    """A "device" that answers every request with bytes that are no Modbus frame."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(0.2)
                while not stop.is_set():
                    try:
                        if not conn.recv(256):
                            break
                    except TimeoutError:
                        continue
                    conn.sendall(b"\x17garbage-not-modbus\xff\x00")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with MqttWatch(mosquitto.host, mosquitto.port, f"{PREFIX}/#").start() as watch:
            run_gateway(config({"mqtt": mqtt_sink(mosquitto)}, [modbus("noise", port, 1)]))

            def undecodable(m: Received) -> bool:
                return m.topic == topic("noise", "status") and "undecodable" in str(
                    m.json().get("last_error")
                )

            status = watch.wait_for(undecodable, 15, "the status naming an undecodable answer")
            # Not one value came back: offline, and the reason says why.
            assert status.json()["state"] == "offline"
    finally:
        stop.set()
        thread.join(5)
        listener.close()
