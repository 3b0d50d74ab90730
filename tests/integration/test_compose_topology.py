"""The compose topology without Docker: the services of docker-compose.yml as processes.

Mosquitto runs docker/mosquitto/mosquitto.conf with the password file and ACL that the
mosquitto-init script writes; VictoriaMetrics stands in for InfluxDB 2 (it takes the same v2
writes); the simulators run their compose commands; the gateway runs config/compose.yaml with
the environment compose would give its container, made from a .env that docker/make-env.sh
wrote. Host names cannot be mapped here (/etc/hosts is not ours), so the variables that name
the compose services (MQTT_HOST=mosquitto, ...) are pointed at 127.0.0.1 and free ports
instead -- the one difference from the stack, and why config/compose.yaml takes every host and
port from the environment.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.config import GatewayConfig, load_config
from gateway.sinks.mqtt_config import MqttConfig
from tests.support.mosquitto import mosquitto_binary
from tests.support.mqtt_watch import MqttWatch
from tests.support.processes import ManagedProcess, free_port, port_accepts, wait_until
from tests.support.victoria import Series, VictoriaMetrics
from tests.unit.test_deploy_static import (
    ENV_EXAMPLE,
    ROOT,
    command_option,
    dashboard_series,
    host_path,
    interpolate,
    load_compose,
    mounts,
    read_env_file,
    service_environment,
    stage_instructions,
)

pytestmark = pytest.mark.integration

MAKE_ENV = ROOT / "docker" / "make-env.sh"


def make_env(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(MAKE_ENV), str(path)], capture_output=True, text=True, timeout=30, check=False
    )


def test_make_env_writes_new_secrets_and_never_overwrites(tmp_path: Path) -> None:
    first, second = tmp_path / "a.env", tmp_path / "b.env"
    assert make_env(first).returncode == 0
    assert make_env(second).returncode == 0
    example, made, other = (read_env_file(p) for p in (ENV_EXAMPLE, first, second))
    assert set(made) == set(example)
    secrets = {name for name, value in example.items() if value.startswith("change-me")}
    assert len(secrets) >= 5
    for name, value in example.items():
        if name in secrets:
            assert re.fullmatch(r"[0-9a-f]{32}", made[name]), name
            assert made[name] != other[name], name
        else:
            assert made[name] == value, name
    assert first.stat().st_mode & 0o777 == 0o600
    before = first.read_text()
    again = make_env(first)
    assert again.returncode == 1
    assert "already exists" in again.stderr
    assert first.read_text() == before


@dataclass(frozen=True)
class Stack:
    dotenv: dict[str, str]
    config: GatewayConfig
    broker_port: int
    victoria: VictoriaMetrics
    api_url: str
    api_port: int
    sim_ports: dict[str, int]


def _entrypoint(target: str) -> list[str]:
    """The image's ENTRYPOINT, with ``python`` as this interpreter."""
    (entrypoint,) = stage_instructions(target, "ENTRYPOINT")
    words: list[str] = json.loads(entrypoint)
    return [sys.executable if word == "python" else word for word in words]


def _give_to_mosquitto(path: Path) -> None:
    """Started as root, mosquitto runs as user mosquitto (shared/services.md)."""
    if os.geteuid() != 0:
        return
    try:
        user = pwd.getpwnam("mosquitto")
    except KeyError:
        return
    os.chown(path, user.pw_uid, user.pw_gid)


def _start_mosquitto(
    services: dict[str, Any],
    dotenv: dict[str, str],
    workdir: Path,
    files: Path,
    port: int,
    stops: list[Callable[[], object]],
) -> None:
    """The mosquitto-init script, then the broker with the stack's mosquitto.conf."""
    init = services["mosquitto-init"]
    script = host_path(init, init["entrypoint"][-1])
    auth_dir, data_dir = files / "auth", files / "data"
    init_env = {"PATH": os.environ["PATH"], **service_environment("mosquitto-init", dotenv)}
    result = subprocess.run(
        ["sh", str(script)],
        env={**init_env, "MOSQUITTO_AUTH_DIR": str(auth_dir)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    data_dir.mkdir()
    _give_to_mosquitto(data_dir)
    broker = services["mosquitto"]
    volumes = {m.source: m.target for m in mounts(broker) if not m.bind}
    conf = host_path(broker, "/mosquitto/config/mosquitto.conf").read_text()
    conf = conf.replace(volumes["mosquitto-auth"], str(auth_dir))
    conf = conf.replace(volumes["mosquitto-data"], str(data_dir))
    conf, listeners = re.subn(r"(?m)^listener 1883$", f"listener {port} 127.0.0.1", conf)
    assert listeners == 1
    conf_path = workdir / "mosquitto.conf"
    conf_path.write_text(conf)
    process = ManagedProcess(
        [mosquitto_binary(), "-c", str(conf_path)], workdir, name="mosquitto", merge_stderr=True
    )
    stops.append(process.stop)
    process.start()

    def accepting() -> bool:
        if not process.running:
            raise RuntimeError(f"mosquitto exited\n{process.describe()}")
        return port_accepts("127.0.0.1", port)

    wait_until(accepting, 10, "mosquitto accepts connections")


def _start_simulator(
    services: dict[str, Any], name: str, workdir: Path, port: int, stops: list[Callable[[], object]]
) -> None:
    command = list(services[name]["command"])
    command[command.index("--host") + 1] = "127.0.0.1"
    command[command.index("--port") + 1] = str(port)
    process = ManagedProcess([*_entrypoint("simulator"), *command], workdir, name=name, cwd=ROOT)
    stops.append(process.stop)
    process.start()
    process.wait_for_line(rf"READY port={port}\b", 30)


def _ready(api_url: str, process: ManagedProcess) -> bool:
    if not process.running:
        raise RuntimeError(f"the gateway exited\n{process.describe()}")
    try:
        return httpx.get(f"{api_url}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("compose")
    assert make_env(workdir / ".env").returncode == 0
    dotenv = read_env_file(workdir / ".env")
    services = load_compose()["services"]
    stops: list[Callable[[], object]] = []
    # pytest's tmp dirs are 0700 root: the broker, once it is user mosquitto, could not enter.
    files = Path(tempfile.mkdtemp(prefix="compose-mosquitto-"))
    files.chmod(0o755)
    stops.append(lambda: shutil.rmtree(files, ignore_errors=True))
    try:
        broker_port = free_port()
        _start_mosquitto(services, dotenv, workdir, files, broker_port, stops)
        victoria = VictoriaMetrics(workdir / "victoria")
        stops.append(victoria.stop)
        victoria.start()
        sim_ports = {"modbus-sim": free_port(), "opcua-sim": free_port(), "s7-sim": free_port()}
        for name, port in sim_ports.items():
            _start_simulator(services, name, workdir, port, stops)

        # The container's environment, with the compose service names mapped to 127.0.0.1.
        env = service_environment("gateway", dotenv)
        mapped = {
            "MQTT_HOST": ("mosquitto", "127.0.0.1"),
            "MQTT_PORT": ("1883", str(broker_port)),
            "INFLUX_URL": ("http://influxdb:8086", victoria.url),
            "MODBUS_SIM_HOST": ("modbus-sim", "127.0.0.1"),
            "MODBUS_SIM_PORT": ("5020", str(sim_ports["modbus-sim"])),
            "OPCUA_SIM_HOST": ("opcua-sim", "127.0.0.1"),
            "OPCUA_SIM_PORT": ("4840", str(sim_ports["opcua-sim"])),
            "S7_SIM_HOST": ("s7-sim", "127.0.0.1"),
            "S7_SIM_PORT": ("1102", str(sim_ports["s7-sim"])),
            "GATEWAY_DATA_DIR": ("/var/lib/edge-gateway", str(workdir / "gateway-data")),
        }
        for name, (in_compose, here) in mapped.items():
            assert env[name] == in_compose, name
            env[name] = here
        gateway = services["gateway"]
        command = list(gateway["command"])
        config_path = host_path(gateway, command_option(command, "--config"))
        command[command.index("--config") + 1] = str(config_path)
        api_port = free_port()
        argv = [sys.executable, "-m", "gateway.cli", *command]  # the image's ENTRYPOINT gateway
        argv += ["--api-host", "127.0.0.1", "--api-port", str(api_port)]
        with pytest.MonkeyPatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            config = load_config(config_path)
        process = ManagedProcess(argv, workdir, name="gateway", env=env, cwd=ROOT)
        stops.append(lambda: process.stop(15))
        process.start()
        api_url = f"http://127.0.0.1:{api_port}"
        wait_until(lambda: _ready(api_url, process), 30, lambda: process.describe())
        yield Stack(dotenv, config, broker_port, victoria, api_url, api_port, sim_ports)
        assert "Traceback" not in process.errors()
    finally:
        for stop in reversed(stops):
            stop()


def _connack(port: int, username: str | None, password: str | None) -> ReasonCode:
    """The broker's answer to a CONNECT with these credentials."""
    answer: list[ReasonCode] = []
    done = threading.Event()

    def on_connect(
        client: mqtt.Client, userdata: Any, flags: Any, code: ReasonCode, props: Properties | None
    ) -> None:
        answer.append(code)
        done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{uuid.uuid4().hex[:12]}")
    client.on_connect = on_connect
    if username is not None:
        client.username_pw_set(username, password)
    client.connect("127.0.0.1", port, keepalive=10)
    client.loop_start()
    try:
        assert done.wait(10), "no CONNACK"
    finally:
        client.disconnect()
        client.loop_stop()
    return answer[0]


def test_the_broker_refuses_anonymous_and_wrong_passwords(stack: Stack) -> None:
    reader, password = stack.dotenv["MQTT_READER_USERNAME"], stack.dotenv["MQTT_READER_PASSWORD"]
    assert _connack(stack.broker_port, None, None).is_failure
    assert _connack(stack.broker_port, reader, password + "x").is_failure
    assert not _connack(stack.broker_port, reader, password).is_failure


def test_telemetry_of_every_device_reaches_the_reader_account(stack: Stack) -> None:
    mqtt = stack.config.sinks["plant"]
    assert isinstance(mqtt, MqttConfig)
    prefix, gateway_id = mqtt.topic_prefix, stack.config.gateway.id
    assert gateway_id == stack.dotenv["GATEWAY_ID"]
    device_ids = {device.id for device in stack.config.devices}
    watch = MqttWatch(
        "127.0.0.1",
        stack.broker_port,
        f"{prefix}/#",
        username=stack.dotenv["MQTT_READER_USERNAME"],
        password=stack.dotenv["MQTT_READER_PASSWORD"],
    ).start()
    try:
        status = watch.wait_for(lambda m: m.topic == f"{prefix}/{gateway_id}/status", 10)
        assert status.json()["state"] == "online"

        def flowing() -> dict[str, int] | None:
            counts = dict.fromkeys(device_ids, 0)
            for message in watch.messages(f"{prefix}/{gateway_id}/+/telemetry"):
                counts[message.topic.split("/")[-2]] += 1
            return counts if min(counts.values()) >= 3 else None

        def seen() -> str:
            return (
                f"3 telemetry messages per device; got {Counter(m.topic for m in watch.messages())}"
            )

        # Three messages from every device, all after subscribing: telemetry keeps flowing.
        wait_until(flowing, 30, seen)
        for device_id in device_ids:
            payload = watch.messages(f"{prefix}/{gateway_id}/{device_id}/telemetry")[-1].json()
            assert payload["values"], device_id
    finally:
        watch.stop()


def test_every_series_of_the_dashboard_lands_in_the_tsdb(stack: Stack) -> None:
    plotted = dashboard_series()
    wanted = {f"{measurement}_{field}" for measurement, field in plotted}
    measurements = "|".join(sorted({measurement for measurement, _ in plotted}))
    device_ids = {device.id for device in stack.config.devices}

    def complete(found: list[Series]) -> bool:
        return wanted <= {s.name for s in found} and device_ids <= {
            s.labels["device"] for s in found
        }

    match = f'{{__name__=~"({measurements})_.*"}}'
    found = stack.victoria.wait_for_series(match, complete, 30)
    for series in found:
        assert series.labels["gateway"] == stack.dotenv["GATEWAY_ID"], series.name
        assert {"device", "site", "line", "cell"} <= set(series.labels), series.name


def test_the_control_plane_is_ready_with_every_device_online(stack: Stack) -> None:
    ready = httpx.get(f"{stack.api_url}/readyz", timeout=5)
    assert (ready.status_code, ready.json()) == (
        200,
        {
            "status": "ready",
            "sinks": {},
            "delivery": {
                "plant": "at-least-once",
                "tsdb": "at-least-once",
                "local": "at-most-once",
            },
        },
    )
    viewer = {"Authorization": f"Bearer {stack.dotenv['GATEWAY_VIEWER_TOKEN']}"}
    assert httpx.get(f"{stack.api_url}/api/v1/devices", timeout=5).status_code == 401

    def states() -> dict[str, str] | None:
        page = httpx.get(f"{stack.api_url}/api/v1/devices", headers=viewer, timeout=5)
        assert page.status_code == 200, page.text
        found = {item["id"]: item["status"]["state"] for item in page.json()["items"]}
        return found if set(found.values()) == {"online"} else None

    online = wait_until(states, 30, "every device online")
    assert set(online) == {device.id for device in stack.config.devices}


def _check(argv: list[str], env: dict[str, str] | None = None) -> int:
    return subprocess.run(argv, env=env, capture_output=True, timeout=30, check=False).returncode


def test_the_health_checks_pass_against_the_running_services(stack: Stack) -> None:
    services = load_compose()["services"]
    (image_check,) = stage_instructions("gateway", "HEALTHCHECK")
    gateway_check = json.loads(image_check.split("CMD", 1)[1])
    assert gateway_check[0] == "python"
    ready = gateway_check[-1]
    assert "/readyz" in ready
    on_port = {**os.environ, "GATEWAY_API_PORT": str(stack.api_port)}
    assert _check([sys.executable, "-c", ready], on_port) == 0
    nobody = {**os.environ, "GATEWAY_API_PORT": str(free_port())}
    assert _check([sys.executable, "-c", ready], nobody)

    for name, port in stack.sim_ports.items():
        kind, *check = services[name]["healthcheck"]["test"]
        assert (kind, check[0]) == ("CMD", "python")
        compose_port = command_option(services[name]["command"], "--port")
        code = check[-1].replace(f", {compose_port})", f", {port})")
        assert _check([sys.executable, "-c", code]) == 0, name

    if shutil.which("mosquitto_sub") is None:
        pytest.skip("mosquitto_sub is not installed (apt-get install mosquitto-clients)")
    kind, command = services["mosquitto"]["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    command = interpolate(command, {}).replace("-p 1883", f"-p {stack.broker_port}")
    env = {"PATH": os.environ["PATH"], **service_environment("mosquitto", stack.dotenv)}
    assert _check(["sh", "-c", command], env) == 0
