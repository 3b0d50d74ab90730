"""The compose stack for real, with podman: images built from docker/Dockerfile on a locally made
base, brought up by podman-compose with the local override (docker/local/compose.podman.yaml),
health checks run, and everything removed afterwards.

Podman (Debian's 4.3) schedules health checks with systemd timers; without systemd (CI
containers) nobody runs them, and podman-compose ignores ``condition: service_healthy`` before
podman 4.6. ``HealthChecks`` does what the timers would: ``podman healthcheck run`` for every
container at an interval.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.processes import free_port

__all__ = ["HealthChecks", "ImageBuild", "PodmanStack", "podman_available"]

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILES = ("docker-compose.yml", "docker/local/compose.podman.yaml")
CONTAINERS_CONF = ROOT / "tests" / "containers" / "containers.conf"
SERVICES = ("mosquitto", "influxdb", "modbus-sim", "opcua-sim", "s7-sim", "gateway")
"""The long-running services with a health check (mosquitto-init runs once; grafana is off)."""


def podman_available() -> str | None:
    """None when the tier can run, else why not."""
    missing = [tool for tool in ("podman", "debootstrap") if shutil.which(tool) is None]
    if missing:
        return (
            f"{' and '.join(missing)} not installed"
            " (Debian packages: make test installs them when run as root)"
        )
    if os.geteuid() != 0:
        return "the container tier runs as root (podman with runc and debootstrap)"
    return None


def _run(args: Sequence[str], env: Mapping[str, str], timeout: float = 600) -> str:
    done = subprocess.run(
        args, cwd=ROOT, env=dict(env), capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        output = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        raise RuntimeError(f"{' '.join(args)} exited {done.returncode}\n{output}")
    return done.stdout


@dataclass(frozen=True, slots=True)
class ImageBuild:
    image: str
    seconds: float
    size_mb: float


@dataclass
class PodmanStack:
    """One project (its own name, ports and secrets), built and brought up by ``up()`` and
    removed, containers, volumes and pod, by ``down()`` even after a failure."""

    workdir: Path
    project: str = field(default_factory=lambda: f"egtest{os.getpid()}")
    env: dict[str, str] = field(init=False)
    base_image: str = ""
    builds: list[ImageBuild] = field(default_factory=list)
    started: float = 0.0
    """When ``up()`` was called (monotonic)."""

    def __post_init__(self) -> None:
        ports = {
            name: str(free_port())
            for name in (
                "MQTT_PORT", "INFLUX_PORT", "GATEWAY_API_PORT", "MODBUS_SIM_PORT",
                "OPCUA_SIM_PORT", "S7_SIM_PORT",
            )
        }  # fmt: skip
        secret_names = (
            "MQTT_PASSWORD", "MQTT_READER_PASSWORD", "INFLUX_ADMIN_PASSWORD", "INFLUX_TOKEN",
            "GRAFANA_ADMIN_PASSWORD", "GATEWAY_ADMIN_TOKEN", "GATEWAY_OPERATOR_TOKEN",
            "GATEWAY_VIEWER_TOKEN",
        )  # fmt: skip
        self.env = {
            **os.environ,
            **ports,
            **{name: secrets.token_hex(16) for name in secret_names},
            "CONTAINERS_CONF": str(CONTAINERS_CONF),
            "BUILDAH_FORMAT": "docker",  # OCI images drop HEALTHCHECK
            "COMPOSE_PROFILES": "simulators",
            "MQTT_TOPIC_PREFIX": "factory",
        }

    def port(self, name: str) -> int:
        return int(self.env[name])

    # -- images --------------------------------------------------------------------------

    def build(self) -> None:
        """The base (once per recipe), then the gateway and simulator targets of the project's
        Dockerfile and the stand-ins, each timed and sized."""
        started = time.monotonic()
        self.base_image = _run(["sh", "docker/local/base.sh"], self.env, timeout=900).strip()
        self.builds.append(
            ImageBuild(self.base_image, time.monotonic() - started, self._size(self.base_image))
        )
        self.env["PYTHON_IMAGE"] = self.base_image
        project, standins = "docker/Dockerfile", "docker/local/standins.Dockerfile"
        for image, dockerfile, target, arg, context in (
            ("localhost/edge-gateway:local", project, "gateway", "PYTHON_IMAGE", "."),
            ("localhost/edge-gateway-simulator:local", project, "simulator", "PYTHON_IMAGE", "."),
            ("localhost/edge-gateway-standins:local", standins, None, "BASE_IMAGE", "docker/local"),
        ):
            started = time.monotonic()
            args = ["podman", "build", "--network", "host", "--build-arg",
                    f"{arg}={self.base_image}", "-f", dockerfile, "-t", image]  # fmt: skip
            if target is not None:
                args += ["--target", target]
            _run([*args, context], self.env, timeout=900)
            self.builds.append(ImageBuild(image, time.monotonic() - started, self._size(image)))

    def _size(self, image: str) -> float:
        size = _run(["podman", "image", "inspect", image, "--format", "{{.Size}}"], self.env)
        return int(size.strip()) / 1e6

    # -- the stack -----------------------------------------------------------------------

    def compose(self, *args: str, timeout: float = 600) -> str:
        files = [arg for name in COMPOSE_FILES for arg in ("-f", name)]
        podman_compose = str(Path(sys.executable).with_name("podman-compose"))
        return _run([podman_compose, "-p", self.project, *files, *args], self.env, timeout)

    def up(self) -> None:
        self.started = time.monotonic()
        self.compose("up", "-d")

    def down(self) -> None:
        """Containers, volumes and the pod; what ``compose down`` might leave is removed by
        the project's label."""
        try:
            self.compose("down", "-v", "-t", "10", timeout=300)
        finally:
            label = f"io.podman.compose.project={self.project}"
            for kind in ("container", "pod", "volume"):
                subprocess.run(["podman", kind, "rm", "-f", *self._named(kind, label)],
                               env=self.env, capture_output=True, check=False)  # fmt: skip

    def _named(self, kind: str, label: str) -> list[str]:
        args = ["podman", kind, "ls", "-q", "--filter", f"label={label}"]
        if kind == "container":
            args.insert(3, "-a")
        done = subprocess.run(args, env=self.env, capture_output=True, text=True, check=False)
        return done.stdout.split()

    def leftovers(self) -> dict[str, list[str]]:
        label = f"io.podman.compose.project={self.project}"
        found = {kind: self._named(kind, label) for kind in ("container", "pod", "volume")}
        return {kind: names for kind, names in found.items() if names}

    def container(self, service: str) -> str:
        return f"{self.project}_{service}_1"

    def podman(self, *args: str, timeout: float = 120) -> str:
        return _run(["podman", *args], self.env, timeout)

    def inspect(self, service: str) -> dict[str, object]:
        found: list[dict[str, object]] = json.loads(self.podman("inspect", self.container(service)))
        return found[0]

    def logs(self, service: str, lines: int = 30) -> str:
        done = subprocess.run(
            ["podman", "logs", "--tail", str(lines), self.container(service)],
            env=self.env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        return done.stdout + done.stderr


class HealthChecks:
    """Runs every service's health check every ``interval`` seconds, as podman's systemd
    timers would, and keeps the latest result of each."""

    def __init__(self, stack: PodmanStack, interval: float = 2.0) -> None:
        self._stack = stack
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="healthchecks", daemon=True)
        self.status: dict[str, str] = {}

    def start(self) -> HealthChecks:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def check(self, service: str) -> str:
        done = subprocess.run(
            ["podman", "healthcheck", "run", self._stack.container(service)],
            env=self._stack.env, capture_output=True, text=True, check=False, timeout=30,
        )  # fmt: skip
        result = "healthy" if done.returncode == 0 else (done.stdout.strip() or "unhealthy")
        self.status[service] = result
        return result

    def _run(self) -> None:
        while not self._stop.is_set():
            for service in SERVICES:
                self.check(service)
            self._stop.wait(self._interval)

    def all_healthy(self) -> bool:
        return all(self.status.get(service) == "healthy" for service in SERVICES)
