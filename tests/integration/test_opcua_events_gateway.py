"""OPC UA events and alarms through the whole gateway: the simulator's Boiler1 temperature alarm
goes active and is published on ``.../events`` with its severity and message (and stored in the
TSDB's ``events`` measurement), is acknowledged over the API (policy and audit of writes),
returns to normal, and after a server restart the ConditionRefresh brings the active alarm
back."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from simulators.opcua.alarms import ACTIVE_SEVERITY
from simulators.opcua.plant import NAMESPACE
from tests.support.gateway import ADMIN_TOKEN, VIEWER_TOKEN, GatewayProcess
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt_watch import MqttWatch, Received
from tests.support.opcua import OpcUaSimulator
from tests.support.victoria import Series, VictoriaMetrics

pytestmark = pytest.mark.integration

PREFIX = "it-events"
GW = "gw-events"
EVENTS = f"{PREFIX}/{GW}/boiler/events"
ALARM_PERIOD = 4.0
"""Active for 4 s from the simulator's start, normal for 4 s, and so on."""


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[OpcUaSimulator]:
    simulator = OpcUaSimulator(
        tmp_path / "sim", "--period", "0.05", "--alarm-period", str(ALARM_PERIOD)
    )
    yield simulator
    simulator.stop()


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    server = VictoriaMetrics(tmp_path / "victoria").start()
    yield server
    server.stop()


@pytest.fixture
def watch(mosquitto: Mosquitto) -> Iterator[MqttWatch]:
    watcher = MqttWatch(mosquitto.host, mosquitto.port, f"{PREFIX}/#").start()
    yield watcher
    watcher.stop()


def gateway_config(
    mosquitto: Mosquitto, sim: OpcUaSimulator, victoria: VictoriaMetrics
) -> dict[str, Any]:
    speed = {"name": "speed", "node": f"nsu={NAMESPACE};s=Line1.Filler.Speed"}
    return {
        "gateway": {"id": GW, "log_level": "INFO"},
        "sinks": {
            "mqtt": {
                "type": "mqtt",
                "host": mosquitto.host,
                "port": mosquitto.port,
                "topic_prefix": PREFIX,
                "qos": 1,
            },
            "tsdb": {
                "type": "influxdb",
                "url": victoria.url,
                "org": "plant",
                "bucket": "telemetry",
                "token": "x",
            },
        },
        "runtime": {"reconnect_min": 0.1, "reconnect_max": 0.5, "status_interval": 1},
        "writes": {"enabled": True},
        "devices": [
            {
                "id": "boiler",
                "type": "opcua",
                "endpoint": sim.endpoint,
                "timeout": 2,
                "keepalive": 1,
                "groups": [{"name": "line", "interval": 0.5, "tags": [speed]}],
                "events": [{"interval": 0.2}],
            }
        ],
    }


def alarm(**wanted: object) -> Callable[[Received], bool]:
    def matches(message: Received) -> bool:
        if message.topic != EVENTS:
            return False
        event = message.json()
        return event.get("condition") == "TemperatureHigh" and all(
            event.get(key) == value for key, value in wanted.items()
        )

    return matches


def after(moment: float, predicate: Callable[[Received], bool]) -> Callable[[Received], bool]:
    return lambda m: m.received_at >= moment and predicate(m)


def test_an_alarm_published_acknowledged_cleared_and_refreshed_after_a_restart(
    sim: OpcUaSimulator,
    mosquitto: Mosquitto,
    watch: MqttWatch,
    victoria: VictoriaMetrics,
    run_gateway: Callable[[dict[str, Any]], GatewayProcess],
) -> None:
    gateway = run_gateway(gateway_config(mosquitto, sim.start(), victoria))
    url = gateway.wait_api()
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    viewer = {"Authorization": f"Bearer {VIEWER_TOKEN}"}

    active = watch.wait_for(alarm(active=True, acked=False), 20, "the alarm, active").json()
    assert active["severity"] == ACTIVE_SEVERITY
    assert active["message"].startswith("Temperature high")
    assert active["source"] and active["type"] and active["condition_id"]
    assert active["device"] == "boiler"
    event_id = active["event_id"]
    assert not [m for m in watch.messages(EVENTS) if m.retain]  # one message per event

    # The TSDB keeps the numbers (VictoriaMetrics drops string fields such as the message).
    def severity_stored(found: list[Series]) -> bool:
        return any(
            s.labels.get("condition") == "TemperatureHigh" and ACTIVE_SEVERITY in s.values
            for s in found
        )

    [stored, *_] = victoria.wait_for_series('{__name__="events_severity"}', severity_stored)
    assert stored.labels["device"] == "boiler" and stored.labels["gateway"] == GW
    assert stored.labels["source"] == active["source"] and stored.labels["type"] == active["type"]

    with httpx.Client(base_url=url, timeout=20) as api:
        listed = api.get("/api/v1/devices/boiler/events", headers=viewer).json()["items"]
        assert event_id in [e["event_id"] for e in listed]
        path = f"/api/v1/devices/boiler/events/{event_id}/acknowledge"
        refused = api.post(path, headers=viewer, json={"comment": "seen"})
        assert refused.status_code == 403, refused.text

        acked_at = time.time()
        answer = api.post(path, headers=admin, json={"comment": "seen by the shift"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["result"] == "written"
        watch.wait_for(after(acked_at, alarm(acked=True)), 10, "the alarm, acknowledged")

        again = api.post(path, headers=admin, json={})
        assert again.status_code == 502, again.text
        assert "Bad" in again.json()["detail"]

        unknown = api.post("/api/v1/devices/boiler/events/00ff/acknowledge", headers=admin)
        assert unknown.status_code == 404, unknown.text

        audit = api.get("/api/v1/audit", params={"device": "boiler"}, headers=admin).json()
        entries = [e for e in audit["items"] if e["tag"] == active["condition_id"]]
        results = sorted(e["result"] for e in entries)
        assert results == ["failed", "refused", "written"], entries
        written = next(e for e in entries if e["result"] == "written")
        assert written["method"] == "OPC UA Acknowledge"
        assert written["requested"] == {
            "action": "acknowledge",
            "event_id": event_id,
            "comment": "seen by the shift",
        }
        assert written["who"] == "token:test-admin"

    watch.wait_for(after(acked_at, alarm(active=False)), 3 * ALARM_PERIOD, "back to normal")

    # A restarted server starts with the alarm active: the refresh after the reconnect says so.
    sim.stop()
    restarted = time.time()
    sim.start()
    refreshed = watch.wait_for(
        after(restarted, alarm(active=True, refresh=True)), 30, "the refreshed alarm"
    ).json()
    assert refreshed["acked"] is False
    assert "Traceback" not in gateway.log()
