"""What both end-to-end benchmarks measure: a counting subscriber and one measured window."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psutil
from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.gateway import GatewayProcess
from tests.support.processes import ManagedProcess, wait_until

__all__ = ["Subscriber", "Window", "measure_window", "percentile"]

MAX_SAMPLES = 2_000_000


class Subscriber:
    """Counts values and reading ages of every telemetry message, and keeps device statuses."""

    def __init__(self, host: str, port: int, prefix: str) -> None:
        self._lock = threading.Lock()
        self.values = 0
        self.messages = 0
        self.ages_ms: list[float] = []
        self.statuses: dict[str, dict[str, Any]] = {}
        self.devices_seen: set[str] = set()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-subscriber")
        self._client.on_message = self._on_message
        self._client.connect(host, port)
        self._client.subscribe(f"{prefix}/#", qos=1)
        self._client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        now_ms = time.time() * 1000
        if not msg.payload:
            return
        body = orjson.loads(msg.payload)
        device = msg.topic.rsplit("/", 2)[-2]
        if msg.topic.endswith("/telemetry"):
            with self._lock:
                self.messages += 1
                self.values += len(body["values"])
                self.devices_seen.add(device)
                if len(self.ages_ms) < MAX_SAMPLES:
                    self.ages_ms.append(now_ms - body["ts"])
        elif msg.topic.endswith("/status") and "polls" in body:
            with self._lock:
                self.statuses[device] = body

    def reset(self) -> tuple[int, int]:
        with self._lock:
            counts = (self.values, self.messages)
            self.values = self.messages = 0
            self.ages_ms = []
            return counts

    def snapshot(self) -> tuple[int, int, list[float]]:
        with self._lock:
            return self.values, self.messages, list(self.ages_ms)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def peak_rss_mib(pid: int, field: str = "VmHWM") -> float:
    """The process's peak RSS (``VmRSS``: now) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return math.nan


@dataclass(frozen=True, slots=True)
class Window:
    elapsed: float
    values: int
    messages: int
    ages_ms: list[float]
    cpu: float
    """Gateway CPU seconds in the window."""
    simulators_cpu: float
    peak_rss_mib: float
    rss_mib: float
    """At the end of the window: the peak may be a start-up moment."""
    statuses: dict[str, dict[str, Any]]

    def summary(self) -> str:
        """The figures both benchmarks print."""
        return (
            f"msgs/s={self.messages / self.elapsed:,.0f} "
            f"gateway_cpu={100 * self.cpu / self.elapsed:.1f}% "
            f"cpu/value={1e6 * self.cpu / max(self.values, 1):.2f}us "
            f"peak_rss={self.peak_rss_mib:.1f}MiB rss_end={self.rss_mib:.1f}MiB "
            f"age_p50={percentile(self.ages_ms, 0.5):.1f}ms "
            f"age_p99={percentile(self.ages_ms, 0.99):.1f}ms "
            f"age_max={max(self.ages_ms, default=math.nan):.0f}ms "
            f"simulators_cpu={100 * self.simulators_cpu / self.elapsed:.0f}% "
            f"values/msg={self.values / max(self.messages, 1):.0f}"
        )


def measure_window(
    gateway: GatewayProcess,
    simulators: list[ManagedProcess],
    subscriber: Subscriber,
    devices: int,
    warmup: float,
    duration: float,
) -> Window:
    """Wait for telemetry from every device, warm up, then measure for ``duration`` s."""
    wait_until(
        lambda: len(subscriber.devices_seen) == devices,
        120,
        message=lambda: f"telemetry from all devices\n{gateway.process.describe()}",
    )
    time.sleep(warmup)  # a measurement window, not a wait for an effect
    process = psutil.Process(gateway.process.pid)
    sim_processes = [psutil.Process(sim.pid) for sim in simulators]
    cpu_before = cpu_seconds(process)
    sims_before = sum(cpu_seconds(p) for p in sim_processes)
    subscriber.reset()
    started = time.monotonic()
    time.sleep(duration)  # the measurement window
    elapsed = time.monotonic() - started
    values, messages, ages = subscriber.snapshot()
    return Window(
        elapsed=elapsed,
        values=values,
        messages=messages,
        ages_ms=ages,
        cpu=cpu_seconds(process) - cpu_before,
        simulators_cpu=sum(cpu_seconds(p) for p in sim_processes) - sims_before,
        peak_rss_mib=peak_rss_mib(gateway.process.pid),
        rss_mib=peak_rss_mib(gateway.process.pid, "VmRSS"),
        statuses=dict(subscriber.statuses),
    )
