"""How busy a serial line gets: N Modbus RTU units on one virtual RS-485 line (a socat pty pair;
the simulator answers after the time the frames take at the baud rate), polled by the gateway.

Prints one line: the line's usage and the demand the gateway estimates, each unit's polls per
second and largest gap between two of its telemetry messages, timeouts, and the gateway's CPU.

    python -m bench.serial_line --units 3 --baudrate 19200 --registers 20 --interval 0.5
    python -m bench.serial_line --units 3 --silent 1     # plus one unit that never answers

Needs socat (Debian package). Reuses the integration tests' process helpers: run it from the
repository.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import httpx
import psutil

from bench.measure import cpu_seconds
from tests.support.gateway import ADMIN_TOKEN, GatewayProcess
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt_watch import MqttWatch
from tests.support.serial_line import SerialPair, SerialSimulator

PREFIX = "bench"
SILENT_FIRST_UNIT = 200


def gateway_config(broker: Mosquitto, line: SerialPair, args: argparse.Namespace) -> dict[str, Any]:
    tags = [{"name": f"r{i}", "address": 1000 + i} for i in range(args.registers)]
    units = [*range(1, args.units + 1), *range(SILENT_FIRST_UNIT, SILENT_FIRST_UNIT + args.silent)]
    return {
        "gateway": {"id": "serial-gw", "log_level": "WARNING"},
        "sinks": {
            "mqtt": {
                "type": "mqtt",
                "host": broker.host,
                "port": broker.port,
                "topic_prefix": PREFIX,
                "qos": 1,
            }
        },
        "runtime": {"status_interval": 1},
        "profiles": [
            {
                "id": "meter",
                "type": "modbus",
                "groups": [{"name": "all", "interval": args.interval, "tags": tags}],
            }
        ],
        "devices": [
            {
                "id": f"unit-{unit}",
                "type": "modbus",
                "transport": "serial",
                "serial_port": line.gateway,
                "baudrate": args.baudrate,
                "unit": unit,
                "timeout": args.timeout,
                "profile": "meter",
            }
            for unit in units
        ],
    }


def run(args: argparse.Namespace) -> str:
    with TemporaryDirectory(prefix="bench-serial-") as tmp:
        work = Path(tmp)
        broker = Mosquitto(work / "mosquitto").start()
        line = SerialPair(work / "line").start()
        sim = SerialSimulator(
            work / "sim",
            line.device,
            "--units",
            str(args.units),
            "--baudrate",
            str(args.baudrate),
            "--bulk-registers",
            str(args.registers),
            "--log-level",
            "WARNING",
        )
        watch = MqttWatch(broker.host, broker.port, f"{PREFIX}/#")
        gateway = GatewayProcess(work / "gateway", gateway_config(broker, line, args))
        try:
            sim.start()
            watch.start()
            gateway.start()
            url = gateway.wait_api()
            time.sleep(args.warmup)  # a measurement window, not a wait for an effect
            process = psutil.Process(gateway.process.pid)
            cpu_before = cpu_seconds(process)
            started = time.time()
            time.sleep(args.duration)  # the measurement window
            elapsed = time.time() - started
            cpu = cpu_seconds(process) - cpu_before
            headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            status = httpx.get(f"{url}/api/v1/devices/unit-1/status", headers=headers).json()
        finally:
            gateway.stop()
            watch.stop()
            sim.stop()
            line.stop()
            broker.close()
    report = status["line"]
    rates, gaps = [], []
    for unit in range(1, args.units + 1):
        times = [
            m.received_at
            for m in watch.messages(f"{PREFIX}/serial-gw/unit-{unit}/telemetry")
            if started <= m.received_at <= started + elapsed
        ]
        rates.append(len(times) / elapsed)
        gaps.append(max((b - a for a, b in itertools.pairwise(times)), default=float("nan")))
    return (
        f"units={args.units} silent={args.silent} baud={args.baudrate} registers={args.registers}"
        f" interval={args.interval:g}s usage={report['usage_pct']}%"
        f" demand={report['demand_pct']}% oversubscribed={report['oversubscribed']}"
        f" polls/s/unit={min(rates):.2f}..{max(rates):.2f} (asked {1 / args.interval:.2f})"
        f" max_gap={max(gaps):.2f}s timeouts={report['timeouts']}"
        f" requests={report['requests']} gateway_cpu={100 * cpu / elapsed:.1f}%"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.serial_line", description=__doc__)
    parser.add_argument("--units", type=int, default=3)
    parser.add_argument("--silent", type=int, default=0, help="units that never answer")
    parser.add_argument("--baudrate", type=int, default=19200)
    parser.add_argument("--registers", type=int, default=20, help="holding registers per unit")
    parser.add_argument("--interval", type=float, default=0.5, help="poll interval, seconds")
    parser.add_argument("--timeout", type=float, default=0.3, help="per-unit timeout, seconds")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--duration", type=float, default=20.0)
    args = parser.parse_args(argv)
    print(run(args), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
