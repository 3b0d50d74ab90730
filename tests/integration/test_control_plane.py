"""The control plane over HTTP against a real gateway process, simulator and broker."""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.gateway import ADMIN_TOKEN, VIEWER_TOKEN, GatewayProcess, example_profile
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt_watch import MqttWatch, Received
from tests.support.processes import wait_until
from tests.support.simulator import ModbusSimulator

pytestmark = pytest.mark.integration

GW = "gw-api"
PREFIX = "api"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
VIEWER = {"Authorization": f"Bearer {VIEWER_TOKEN}"}


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[ModbusSimulator]:
    simulator = ModbusSimulator(tmp_path / "sim", "--units", "3", "--period", "1000").start()
    yield simulator
    simulator.stop()


@pytest.fixture
def watch(mosquitto: Mosquitto) -> Iterator[MqttWatch]:
    watcher = MqttWatch(mosquitto.host, mosquitto.port, f"{PREFIX}/#").start()
    yield watcher
    watcher.stop()


def gateway_config(broker: Mosquitto, sim: ModbusSimulator, **extra: Any) -> dict[str, Any]:
    profile = example_profile()
    for group in profile["groups"]:
        group["interval"] = 0.2
    return {
        "gateway": {"id": GW},
        "sinks": {
            "mqtt": {
                "type": "mqtt",
                "host": broker.host,
                "port": broker.port,
                "topic_prefix": PREFIX,
            },
            "local": {"type": "local", "history": {"min_interval": 0, "flush_interval": 0.1}},
        },
        "runtime": {"reconnect_min": 0.1, "reconnect_max": 0.5, "status_interval": 1},
        "profiles": [profile],
        "devices": [
            {
                "id": "file-plc",
                "type": "modbus",
                "host": "127.0.0.1",
                "port": sim.port,
                "unit": 3,
                "profile": "sim-plc",
            }
        ],
        **extra,
    }


@pytest.fixture
def gateway(tmp_path: Path, mosquitto: Mosquitto, sim: ModbusSimulator) -> Iterator[GatewayProcess]:
    process = GatewayProcess(tmp_path / "gateway", gateway_config(mosquitto, sim)).start()
    process.wait_api()
    yield process
    process.stop()


@pytest.fixture
def api(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.api_url, headers=ADMIN, timeout=10) as client:
        yield client


def telemetry(device: str) -> Callable[[Received], bool]:
    return lambda m: m.topic == f"{PREFIX}/{GW}/{device}/telemetry"


def plc(device_id: str, sim: ModbusSimulator, unit: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "id": device_id,
        "type": "modbus",
        "host": "127.0.0.1",
        "port": sim.port,
        "unit": unit,
        "labels": {"line": "api"},
        **extra,
    }


def links(gateway: GatewayProcess, port: int) -> set[int]:
    """Local ports of the gateway's TCP connections to ``port``."""
    connections = psutil.Process(gateway.process.pid).net_connections("tcp")
    return {c.laddr.port for c in connections if c.raddr and c.raddr.port == port}


def test_register_change_and_delete_a_device_live(
    api: httpx.Client, gateway: GatewayProcess, sim: ModbusSimulator, watch: MqttWatch
) -> None:
    created = api.post("/api/v1/devices", json=plc("press-1", sim, profile="sim-plc"))
    assert created.status_code == 201, created.text
    assert created.json()["source"] == "api"
    message = watch.wait_for(telemetry("press-1"), 10, "telemetry of the new device")
    assert message.json()["values"]["part_count"] == 1000

    before = links(gateway, sim.port)
    own_tags = [{"name": "g", "interval": 0.2, "tags": [{"name": "spare_setpoint", "address": 1}]}]
    changed = api.put("/api/v1/devices/press-1", json=plc("press-1", sim, groups=own_tags))
    assert changed.status_code == 200, changed.text
    watch.wait_for(lambda m: telemetry("press-1")(m) and "spare_setpoint" in m.json()["values"], 10)
    # Its connection settings did not change: the same TCP connection carries on.
    assert links(gateway, sim.port) == before and len(before) == 1

    assert api.delete("/api/v1/devices/press-1").status_code == 204
    watch.wait_for(
        lambda m: m.topic == f"{PREFIX}/{GW}/press-1/status" and m.payload == b"", 10,
        "the retained status cleared",
    )  # fmt: skip
    watch.clear()
    watch.barrier()
    time.sleep(0.6)  # three poll periods: the window in which a running device would publish
    assert not [m for m in watch.messages() if telemetry("press-1")(m)]
    assert api.get("/api/v1/devices/press-1").status_code == 404


def test_api_devices_survive_a_gateway_restart(
    tmp_path: Path, mosquitto: Mosquitto, sim: ModbusSimulator, watch: MqttWatch
) -> None:
    config = gateway_config(mosquitto, sim)
    first = GatewayProcess(tmp_path / "gw", config).start()
    try:
        first.wait_api()
        with httpx.Client(base_url=first.api_url, headers=ADMIN) as client:
            entries = [plc(f"bulk-{u}", sim, u) for u in (1, 2)]
            for entry in entries:
                del entry["type"]  # the profile's type
            response = client.post(
                "/api/v1/devices/bulk", json={"profile": "sim-plc", "devices": entries}
            )
            assert response.status_code == 201, response.text
        assert first.stop() == 0
        watch.clear()
        second = GatewayProcess(tmp_path / "gw", config).start()
        try:
            second.wait_api()
            for device in ("bulk-1", "bulk-2"):
                watch.wait_for(telemetry(device), 10, f"{device} polling after the restart")
            with httpx.Client(base_url=second.api_url, headers=VIEWER) as client:
                ids = [d["id"] for d in client.get("/api/v1/devices").json()["items"]]
            assert ids == ["file-plc", "bulk-1", "bulk-2"]
        finally:
            second.stop()
    finally:
        first.stop()


def test_bad_requests_get_clean_problem_details(api: httpx.Client, sim: ModbusSimulator) -> None:
    devices, bulk = "/api/v1/devices", "/api/v1/devices/bulk"
    typo = plc("x", sim, groups=[{"tags": [{"name": "a", "address": 0, "data_type": "f32"}]}])
    file_plc = {**plc("file-plc", sim), "profile": "sim-plc"}
    many_labels = {f"k{i}": "v" for i in range(40)}
    cases: list[tuple[str, str, Any, int, str]] = [
        ("post", devices, {**plc("x", sim), "unit": 999, "profile": "sim-plc"}, 422, "unit"),
        ("post", devices, {**plc("x", sim), "profile": "nope"}, 422, "profile"),
        ("post", devices, {**plc("x", sim), "bogus": 1, "profile": "sim-plc"}, 422, "bogus"),
        ("post", devices, typo, 422, "groups[0].tags[0].data_type"),
        ("post", devices, file_plc, 409, ""),
        ("put", f"{devices}/file-plc", file_plc, 409, ""),
        ("delete", f"{devices}/nope", None, 404, ""),
        ("get", f"{devices}?limit=0", None, 422, "query.limit"),
        ("get", f"{devices}?label=nolabel", None, 422, "query.label[0]"),
        ("delete", "/api/v1/profiles/sim-plc", None, 409, ""),
        ("post", bulk, {"profile": "sim-plc", "devices": [{"id": "b1"}]}, 422, "devices[0]"),
        ("post", bulk, {"devices": [{"id": "b1", "host": "h"}]}, 422, "devices[0].profile"),
        ("post", devices, {**plc("FILE-PLC", sim), "profile": "sim-plc"}, 409, ""),
        ("get", f"{devices}?state=sleepy", None, 422, "query.state"),
        ("get", f"{devices}?stat=online", None, 422, "query.stat"),
        ("get", f"{devices}?offset={10**25}", None, 422, "query.offset"),  # was a 500
        ("get", f"{devices}/file-plc/tags/nope/history", None, 404, ""),
        ("get", f"{devices}/file-plc/tags/speed/history?from=1", None, 422, "query.from"),
        ("get", f"{devices}/file-plc/tags/speed/history?start={2**63}", None, 422, "query.start"),
        (
            "post",
            devices,
            {**plc("x", sim), "profile": "sim-plc", "labels": many_labels},
            422,
            "labels",
        ),
        ("post", devices, {**plc("x", sim), "profile": "sim-plc", "host": "h" * 300}, 422, "host"),
        # Integers beyond 64 bits would not fit the stored JSON: refused, never a 500.
        (
            "post",
            devices,
            {**plc("x", sim), "profile": "sim-plc", "baudrate": 10**30},
            422,
            "baudrate",
        ),
        ("post", f"{devices}/file-plc/write", {"values": {"speed": 2**64}}, 403, ""),
    ]
    for method, url, body, status, field in cases:
        response = api.request(method, url, json=body)
        assert response.status_code == status, (method, url, response.text)
        problem = response.json()
        assert response.headers["content-type"] == "application/problem+json"
        assert problem["status"] == status and problem["title"] and problem["detail"]
        if field:
            assert field in [e["field"] for e in problem["errors"]], problem
    raw = api.post(
        "/api/v1/devices", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert raw.status_code == 400 and raw.json()["title"] == "Malformed body"
    huge = api.post(
        devices, content=b"x" * (2 * 1024 * 1024), headers={"content-type": "application/json"}
    )
    assert huge.status_code == 413 and "api.max_body_kb" in huge.json()["detail"]
    assert huge.headers["content-type"] == "application/problem+json"
    csv = "id,host,port,unit,labels\nc1,h,502,1,line=2\nc2,h,notaport,1,\nc3,h,502,1,oops\n"
    bad_csv = api.post(f"{bulk}?profile=sim-plc", content=csv, headers={"content-type": "text/csv"})
    assert bad_csv.status_code == 422
    assert {e["field"] for e in bad_csv.json()["errors"]} == {"line 3.port", "line 4.labels"}
    assert api.get(f"{devices}/c1").status_code == 404  # all or nothing
    other = api.post(bulk, content=b"id\nz", headers={"content-type": "text/plain"})
    assert other.status_code == 415


def test_tokens_and_roles(gateway: GatewayProcess) -> None:
    url = f"{gateway.api_url}/api/v1/devices"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url).headers["www-authenticate"] == "Bearer"
    assert httpx.get(url, headers={"Authorization": "Bearer wrong-token"}).status_code == 401
    assert httpx.get(url, headers=VIEWER).status_code == 200
    assert httpx.post(url, headers=VIEWER, json={}).status_code == 403
    assert httpx.get(f"{gateway.api_url}/healthz").status_code == 200


def test_status_latest_history_stream_and_metrics(
    api: httpx.Client, gateway: GatewayProcess
) -> None:
    def online() -> bool:
        return bool(api.get("/api/v1/devices/file-plc/status").json()["state"] == "online")

    def latest_values() -> dict[str, Any]:
        values: dict[str, Any] = api.get("/api/v1/devices/file-plc/latest").json()["values"]
        return values

    wait_until(online, 10, "file-plc online")
    # Each group's first poll comes within a second, on its own phase.
    wait_until(lambda: {"model", "part_count"} <= set(latest_values()), 10, "both groups read")
    latest = api.get("/api/v1/devices/file-plc/latest").json()
    assert latest["values"]["model"]["value"] == "SIM-PLC-3"
    assert latest["values"]["part_count"]["quality"] == "good"

    def history() -> list[dict[str, Any]]:
        points: list[dict[str, Any]] = api.get(
            "/api/v1/devices/file-plc/tags/part_count/history"
        ).json()["points"]
        return points if len(points) >= 3 else []

    assert all(p["value"] == 3000 for p in wait_until(history, 10, "history points"))
    bucketed = api.get(
        "/api/v1/devices/file-plc/tags/speed/history", params={"bucket": 3600}
    ).json()
    assert len(bucketed["points"]) in (1, 2)  # the last hour, in hour buckets
    assert (
        bucketed["points"][0]["min"]
        <= bucketed["points"][0]["value"]
        <= bucketed["points"][0]["max"]
    )

    with api.stream("GET", "/api/v1/stream", params={"device": "file-plc"}) as stream:
        events = []
        for line in stream.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line.removeprefix("data: ")))
            if len(events) == 2:
                break
    assert {e["device"] for e in events} == {"file-plc"}
    assert all("values" in e for e in events)

    metrics = httpx.get(f"{gateway.api_url}/metrics").text
    assert 'gateway_device_readings_total{device="file-plc"}' in metrics
    assert 'gateway_devices{state="online"} 1.0' in metrics
    assert 'gateway_sink_latency_seconds_count{sink="mqtt"}' in metrics
    ready = httpx.get(f"{gateway.api_url}/readyz")
    assert ready.status_code == 200, ready.text


def test_an_open_event_stream_does_not_hold_up_a_clean_stop(gateway: GatewayProcess) -> None:
    with (
        httpx.Client(base_url=gateway.api_url, headers=VIEWER) as client,
        client.stream("GET", "/api/v1/stream") as stream,
    ):
        assert next(stream.iter_lines()) == ": connected"
        started = time.monotonic()
        assert gateway.stop() == 0, gateway.process.describe()
        assert time.monotonic() - started < 10
    assert "stopped" in gateway.log()


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, in PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gateway-test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "api.crt", directory / "api.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def test_the_api_over_tls_with_security_headers(
    tmp_path: Path, mosquitto: Mosquitto, sim: ModbusSimulator
) -> None:
    cert_file, key_file = self_signed(tmp_path)
    config = gateway_config(mosquitto, sim)
    config["api"] = {"tls": {"cert_file": str(cert_file), "key_file": str(key_file)}}
    process = GatewayProcess(tmp_path / "gateway", config).start()
    try:
        url = process.api_url.replace("http://", "https://")
        trust = ssl.create_default_context(cafile=str(cert_file))
        with httpx.Client(base_url=url, verify=trust, headers=ADMIN, timeout=5) as api:

            def up() -> bool:
                try:
                    return api.get("/healthz").status_code == 200
                except httpx.TransportError:
                    return False

            wait_until(up, 20, "the API answering over TLS")
            answer = api.get("/api/v1/devices")
            assert answer.status_code == 200
            assert answer.headers["strict-transport-security"].startswith("max-age=")
            assert answer.headers["x-content-type-options"] == "nosniff"
            assert answer.headers["x-frame-options"] == "DENY"
        with pytest.raises(httpx.TransportError):  # no plain HTTP on the TLS port
            httpx.get(f"{process.api_url}/healthz", timeout=5)
    finally:
        assert process.stop() == 0


def test_writes_are_off_by_default_refused_and_audited(api: httpx.Client) -> None:
    answer = api.post("/api/v1/devices/file-plc/write", json={"values": {"speed": 1}})
    assert answer.status_code == 403
    assert answer.headers["content-type"] == "application/problem+json"
    assert "writes are off in this gateway (writes.enabled: false)" in answer.json()["detail"]
    [entry] = api.get("/api/v1/audit").json()["items"]
    assert (entry["device"], entry["tag"], entry["requested"]) == ("file-plc", "speed", 1)
    assert (entry["result"], entry["who"]) == ("refused", "token:test-admin")
