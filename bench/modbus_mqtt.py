"""End-to-end benchmark: N simulated Modbus devices × M tags at period P → gateway → Mosquitto.

Measures, after a warm-up, the values per second received by a subscriber, the gateway
process's CPU (share of one core and µs per value) and peak RSS, and the age of readings
(poll time → receipt at the subscriber) p50/p99, and prints them as one line.

    python -m bench.modbus_mqtt --devices 10 --tags 100 --period 1 --duration 20

Reuses the integration tests' process helpers (tests/support): run it from the repository.
"""

from __future__ import annotations

import argparse
import math
import threading
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import orjson
import psutil
from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.gateway import GatewayProcess
from tests.support.mosquitto import Mosquitto
from tests.support.processes import wait_until
from tests.support.simulator import ModbusSimulator

BULK_START = 1000
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


def gateway_config(
    broker: Mosquitto, sims: list[ModbusSimulator], args: argparse.Namespace
) -> dict[str, Any]:
    tags, period, qos = args.tags, args.period, args.qos
    profile = {
        "id": "bulk",
        "type": "modbus",
        "groups": [
            {
                "name": "all",
                "interval": period,
                "tags": [{"name": f"r{i}", "address": BULK_START + i} for i in range(tags)],
            }
        ],
    }
    # Every device on its own port, hence its own connection, as on a real plant network.
    endpoints = [(sim.host, port) for sim in sims for port in sim.ports]
    devices = [
        {
            "id": f"dev{index:04d}",
            "type": "modbus",
            "host": host,
            "port": port,
            "timeout": 2.0,
            "profile": "bulk",
            "labels": {"line": "bench"},
        }
        for index, (host, port) in enumerate(endpoints)
    ]
    return {
        "gateway": {"id": "bench-gw", "log_level": "WARNING"},
        "mqtt": {"host": broker.host, "port": broker.port, "topic_prefix": "bench", "qos": qos},
        "runtime": {"status_interval": 1, "outbox": {"enabled": args.outbox == "on"}},
        "api": {"enabled": args.api == "on"},
        "profiles": [profile],
        "devices": devices,
    }


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return math.nan


def run(args: argparse.Namespace) -> str:
    with TemporaryDirectory(prefix="bench-") as tmp:
        work = Path(tmp)
        broker = Mosquitto(work / "mosquitto").start()
        sims: list[ModbusSimulator] = []
        gateway: GatewayProcess | None = None
        subscriber: Subscriber | None = None
        try:
            remaining = args.devices
            while remaining:
                ports = min(remaining, args.devices_per_sim)
                sim = ModbusSimulator(
                    work / f"sim{len(sims)}",
                    "--ports", str(ports), "--bulk-registers", str(args.tags),
                    "--log-level", "WARNING", port=0, name=f"sim{len(sims)}",
                )  # fmt: skip
                sims.append(sim.start())
                remaining -= ports
            subscriber = Subscriber(broker.host, broker.port, "bench")
            config = gateway_config(broker, sims, args)
            gateway = GatewayProcess(work / "gateway", config).start()
            watched = subscriber
            wait_until(
                lambda: len(watched.devices_seen) == args.devices,
                60,
                message=lambda: f"telemetry from all devices\n{gateway.process.describe()}",
            )
            time.sleep(args.warmup)  # a measurement window, not a wait for an effect
            process = psutil.Process(gateway.process.pid)
            sim_processes = [psutil.Process(sim.process.pid) for sim in sims]
            cpu_before = cpu_seconds(process)
            sims_before = sum(cpu_seconds(p) for p in sim_processes)
            subscriber.reset()
            started = time.monotonic()
            time.sleep(args.duration)  # the measurement window
            elapsed = time.monotonic() - started
            values, messages, ages = subscriber.snapshot()
            cpu = cpu_seconds(process) - cpu_before
            sims_cpu = sum(cpu_seconds(p) for p in sim_processes) - sims_before
            rss = peak_rss_mib(gateway.process.pid)
            statuses = dict(subscriber.statuses)
        finally:
            if subscriber is not None:
                subscriber.close()
            if gateway is not None:
                gateway.stop()
            for sim in sims:
                sim.stop()
            broker.close()
    rate = values / elapsed
    expected = args.devices * args.tags / args.period
    skipped = sum(int(s.get("skipped_cycles", 0)) for s in statuses.values())
    overruns = sum(int(s.get("overruns", 0)) for s in statuses.values())
    return (
        f"devices={args.devices} tags={args.tags} period={args.period:g}s qos={args.qos} "
        f"outbox={args.outbox} api={args.api} "
        f"values/s={rate:,.0f} (offered {expected:,.0f}, {100 * rate / expected:.1f}%) "
        f"msgs/s={messages / elapsed:,.0f} gateway_cpu={100 * cpu / elapsed:.1f}% "
        f"cpu/value={1e6 * cpu / max(values, 1):.2f}us peak_rss={rss:.1f}MiB "
        f"age_p50={percentile(ages, 0.5):.1f}ms age_p99={percentile(ages, 0.99):.1f}ms "
        f"age_max={max(ages, default=math.nan):.0f}ms overruns={overruns} "
        f"skipped_cycles={skipped} simulators_cpu={100 * sims_cpu / elapsed:.0f}% "
        f"values/msg={values / max(messages, 1):.0f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--tags", type=int, default=100, help="uint16 tags per device")
    parser.add_argument("--period", type=float, default=1.0, help="poll period, seconds")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before measuring")
    parser.add_argument(
        "--devices-per-sim", type=int, default=50, help="devices (ports) per simulator process"
    )
    parser.add_argument("--qos", type=int, default=1, choices=(0, 1, 2))
    parser.add_argument(
        "--outbox", choices=("on", "off"), default="on", help="the durable outbox (default on)"
    )
    parser.add_argument(
        "--api", choices=("on", "off"), default="on", help="control plane and local store"
    )
    print(run(parser.parse_args(argv)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
