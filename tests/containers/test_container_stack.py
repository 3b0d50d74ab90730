"""The container tier: the project's images built and the compose stack brought up with podman,
as a plant would run it (docker-compose.yml), with only the images this machine cannot pull
swapped for stand-ins (docker/local/compose.podman.yaml). Skipped, saying why, without podman.

One stack for the module (building and starting it takes a minute or two); the tests run in
order against it and the last one stops the broker and restarts the gateway.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.mqtt_watch import MqttWatch
from tests.support.podman_stack import SERVICES, HealthChecks, PodmanStack, podman_available
from tests.support.processes import wait_until

pytestmark = [
    pytest.mark.containers,
    pytest.mark.skipif(podman_available() is not None, reason=str(podman_available())),
]

HEALTHY_WITHIN = 240.0
SIMULATED = {"filler-1", "filler-2", "capper-1", "line1-opcua", "press-s7"}
"""The devices of config/compose.yaml: the Modbus, OPC UA and S7 simulator containers."""


class Report:
    """Figures for the closing note, printed at the end of the module."""

    lines: list[str] = []


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[PodmanStack]:
    stack = PodmanStack(tmp_path_factory.mktemp("podman"))
    try:
        stack.build()
        for build in stack.builds:
            Report.lines.append(
                f"image {build.image}: {build.seconds:.1f} s, {build.size_mb:.0f} MB"
            )
        stack.up()
        yield stack
    finally:
        try:
            stack.down()
            assert stack.leftovers() == {}, stack.leftovers()
        finally:
            # Shown in make test's output, not captured: the figures of the closing notes.
            capture = request.config.pluginmanager.getplugin("capturemanager")
            with capture.global_and_fixture_disabled():
                print("\n" + "\n".join(f"  container tier: {line}" for line in Report.lines))


@pytest.fixture(scope="module")
def health(stack: PodmanStack) -> Iterator[HealthChecks]:
    checks = HealthChecks(stack).start()
    yield checks
    checks.stop()


@pytest.fixture(scope="module")
def api(stack: PodmanStack) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {stack.env['GATEWAY_ADMIN_TOKEN']}"}
    url = f"http://127.0.0.1:{stack.port('GATEWAY_API_PORT')}"
    with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def watch(stack: PodmanStack) -> Iterator[MqttWatch]:
    watcher = MqttWatch(
        "127.0.0.1", stack.port("MQTT_PORT"), "factory/#",
        username="reader", password=stack.env["MQTT_READER_PASSWORD"],
    )  # fmt: skip
    wait_until(lambda: _try_start(watcher), 120, "the broker container accepts the reader")
    yield watcher
    watcher.stop()


def _try_start(watcher: MqttWatch) -> bool:
    try:
        watcher.start(timeout=2)
    except (OSError, TimeoutError):
        return False
    return True


def test_every_service_becomes_healthy(stack: PodmanStack, health: HealthChecks) -> None:
    wait_until(
        health.all_healthy, HEALTHY_WITHIN,
        lambda: f"all healthy: {health.status}\n{stack.logs('gateway')}",
    )  # fmt: skip
    elapsed = time.monotonic() - stack.started
    Report.lines.append(f"stack healthy {elapsed:.1f} s after 'up' ({', '.join(SERVICES)})")


def test_the_images_run_as_intended(stack: PodmanStack) -> None:
    gateway = stack.inspect("gateway")
    config = gateway["Config"]
    host_config = gateway["HostConfig"]
    assert isinstance(config, dict) and isinstance(host_config, dict)
    assert config["User"] == "edge-gateway"
    assert host_config["ReadonlyRootfs"] is True
    assert stack.podman("exec", stack.container("gateway"), "id", "-u").strip() == "10001"
    touched = stack.podman(
        "exec", stack.container("gateway"), "sh", "-c", "touch /opt/x 2>&1; echo rc=$?"
    )
    assert "Read-only file system" in touched
    # State only in the volume: the data dir is the mount, and the root has nothing new.
    mounts = gateway["Mounts"]
    assert isinstance(mounts, list)
    assert any(
        m["Destination"] == "/var/lib/edge-gateway" and m["Type"] == "volume" for m in mounts
    )
    files = stack.podman("exec", stack.container("gateway"), "ls", "/var/lib/edge-gateway")
    assert "gateway.db" in files.split()
    for service in ("modbus-sim", "opcua-sim", "s7-sim"):
        assert stack.inspect(service)["Config"]["User"] == "edge-gateway", service  # type: ignore[index]


def test_telemetry_of_every_simulator_reaches_the_broker_and_the_tsdb(
    stack: PodmanStack, health: HealthChecks, watch: MqttWatch
) -> None:
    def seen(at_least: int = 1) -> set[str]:
        devices = [m.topic.split("/")[2] for m in watch.messages("factory/+/+/telemetry")]
        return {device for device in devices if devices.count(device) >= at_least}

    wait_until(
        lambda: seen(3) >= SIMULATED, 120, lambda: f"3 messages of each of {SIMULATED}: {seen()}"
    )
    influx = f"http://127.0.0.1:{stack.port('INFLUX_PORT')}"

    def series() -> dict[str, int]:
        answer = httpx.post(f"{influx}/api/v1/export", data={"match[]": '{__name__=~".+"}'})
        found: dict[str, int] = {}
        for line in answer.text.splitlines():
            labels = json.loads(line)["metric"]
            if "device" in labels:
                found[labels["device"]] = found.get(labels["device"], 0) + 1
        return found

    stored = wait_until(
        lambda: series() if set(series()) >= SIMULATED else None, 120, "points of every device"
    )
    messages = len(watch.messages("factory/+/+/telemetry"))
    Report.lines.append(
        f"telemetry: {messages} MQTT messages from {len(seen())} devices;"
        f" {sum(stored.values())} series in VictoriaMetrics for {len(stored)} devices"
    )


def test_a_device_registered_over_the_api_and_the_outbox_survive_a_gateway_restart(
    stack: PodmanStack, health: HealthChecks, watch: MqttWatch, api: httpx.Client
) -> None:
    modbus = {"host": "127.0.0.1", "port": stack.port("MODBUS_SIM_PORT")}
    created = api.post(
        "/api/v1/devices",
        json={"id": "filler-9", "type": "modbus", "unit": 2, "profile": "sim-plc", **modbus},
    )
    assert created.status_code == 201, created.text
    watch.wait_for(lambda m: m.topic == "factory/plant1-gw/filler-9/telemetry", 30)

    # The broker down: the gateway keeps reading into its outbox, and says it is not ready.
    stack.podman("stop", "-t", "5", stack.container("mosquitto"))
    outage = time.time()

    def not_ready() -> httpx.Response | None:
        answer = api.get("/readyz")
        return answer if answer.status_code == 503 else None

    assert "plant" in wait_until(not_ready, 60, "/readyz 503").json()["sinks"]
    wait_until(lambda: health.check("gateway") == "unhealthy", 60, "the gateway unhealthy")

    def backlog_age() -> float:
        for line in api.get("/metrics").text.splitlines():
            if line.startswith('gateway_sink_backlog_age_seconds{sink="plant"}'):
                return float(line.split()[-1])
        return 0.0

    wait_until(lambda: backlog_age() > 2, 60, "readings kept in the outbox for the broker")

    # The gateway stopped and started again (podman starts it only with its broker running).
    stack.podman("stop", "-t", "30", stack.container("gateway"))
    stopped = time.time()
    stack.podman("start", stack.container("mosquitto"))
    wait_until(lambda: health.check("mosquitto") == "healthy", 60, "the broker back")
    stack.podman("start", stack.container("gateway"))
    wait_until(lambda: _answers(api), 120, "the restarted gateway's API")
    assert api.get("/api/v1/devices/filler-9").status_code == 200
    wait_until(lambda: health.check("gateway") == "healthy", 120, "the gateway healthy again")

    def replayed() -> int:
        return sum(
            1
            for m in watch.messages("factory/+/+/telemetry")
            if outage * 1000 < m.json()["ts"] < stopped * 1000
        )

    count = wait_until(replayed, 120, "readings taken during the outage, before the restart")
    Report.lines.append(
        f"broker stopped, gateway stopped and started: filler-9 kept, {count} telemetry"
        " messages of the outage replayed from the outbox"
    )


def _answers(api: httpx.Client) -> bool:
    try:
        return api.get("/healthz").status_code == 200
    except httpx.TransportError:
        return False
