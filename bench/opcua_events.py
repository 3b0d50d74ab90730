"""OPC UA events through the gateway: the simulator's Boiler1 alarm switched every
``--alarm-period`` seconds (each switch is one event), subscribed by the gateway and published on
``.../events``; measures the events per second at the broker, their age there (server time to
receipt), and the gateway's CPU per event.

    python -m bench.opcua_events --alarm-period 0.01 --tick 0.01

Reuses the integration tests' process helpers: run it from the repository.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import psutil

from bench.measure import cpu_seconds, percentile
from tests.support.gateway import GatewayProcess
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt_watch import MqttWatch
from tests.support.opcua import OpcUaSimulator

PREFIX = "bench"
EVENTS = f"{PREFIX}/events-gw/boiler/events"


def gateway_config(broker: Mosquitto, sim: OpcUaSimulator) -> dict[str, Any]:
    speed = {"name": "speed", "node": "nsu=urn:edge-gateway:opcua-sim;s=Line1.Filler.Speed"}
    return {
        "gateway": {"id": "events-gw", "log_level": "WARNING"},
        "sinks": {
            "mqtt": {
                "type": "mqtt",
                "host": broker.host,
                "port": broker.port,
                "topic_prefix": PREFIX,
                "qos": 1,
            }
        },
        "devices": [
            {
                "id": "boiler",
                "type": "opcua",
                "endpoint": sim.endpoint,
                "groups": [{"name": "line", "interval": 1, "tags": [speed]}],
                "events": [{"interval": 0.1, "queue_size": 10000}],
            }
        ],
    }


def run(args: argparse.Namespace) -> str:
    with TemporaryDirectory(prefix="bench-events-") as tmp:
        work = Path(tmp)
        broker = Mosquitto(work / "mosquitto").start()
        sim = OpcUaSimulator(
            work / "sim",
            "--period",
            str(args.tick),
            "--alarm-period",
            str(args.alarm_period),
            "--log-level",
            "WARNING",
        )
        watch = MqttWatch(broker.host, broker.port, f"{PREFIX}/#")
        try:
            sim.start()
            watch.start()
            gateway = GatewayProcess(work / "gateway", gateway_config(broker, sim)).start()
            gateway.wait_api()
            time.sleep(args.warmup)  # a measurement window, not a wait for an effect
            process = psutil.Process(gateway.process.pid)
            cpu_before = cpu_seconds(process)
            started = time.time()
            time.sleep(args.duration)  # the measurement window
            elapsed = time.time() - started
            cpu = cpu_seconds(process) - cpu_before
            gateway.stop()
        finally:
            watch.stop()
            sim.stop()
            broker.close()
    window = [m for m in watch.messages(EVENTS) if started <= m.received_at <= started + elapsed]
    ages = [1000 * m.received_at - m.json()["time_ns"] / 1e6 for m in window]
    count = len(window)
    per_event = f"{1e6 * cpu / count:.0f}us" if count else "n/a"
    return (
        f"alarm_period={args.alarm_period:g}s tick={args.tick:g}s offered="
        f"{1 / max(args.alarm_period, args.tick):.0f}/s events/s={count / elapsed:.1f}"
        f" gateway_cpu={100 * cpu / elapsed:.1f}% cpu/event={per_event}"
        f" age_p50={percentile(ages, 0.5):.1f}ms age_p99={percentile(ages, 0.99):.1f}ms"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.opcua_events", description=__doc__)
    parser.add_argument("--alarm-period", type=float, default=0.01, help="s between switches")
    parser.add_argument("--tick", type=float, default=0.01, help="the simulator's tick, s")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--duration", type=float, default=20.0)
    args = parser.parse_args(argv)
    print(run(args), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
