"""End-to-end benchmark: N simulated S7 PLCs × M items at period P → gateway → Mosquitto.

Each PLC (one port of ``python -m simulators.s7 --plcs N``, its own connection) has M items in
its DB100, every 4 bytes: REAL and INT alternately (so blocks have holes to read through), all
in one group. Measures, after a warm-up, the values per second received by a subscriber, the
gateway's CPU (share of one core and µs per value), its peak RSS, the age of readings, and the
requests per cycle the simulator served.

    python -m bench.s7 --plcs 10 --items 500 --period 1 --duration 20
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from bench.measure import Subscriber, measure_window
from tests.support.gateway import GatewayProcess
from tests.support.mosquitto import Mosquitto
from tests.support.s7 import S7Simulator


def gateway_config(broker: Mosquitto, sim: S7Simulator, args: argparse.Namespace) -> dict[str, Any]:
    tags = [
        {"name": f"r{i}", "address": f"DB100.DBD{4 * i}", "data_type": "float32"}
        if i % 2 == 0
        else {"name": f"w{i}", "address": f"DB100.DBW{4 * i}", "data_type": "int16"}
        for i in range(args.items)
    ]
    profile = {"id": "bulk", "type": "s7", "groups": [{"interval": args.period, "tags": tags}]}
    devices = [
        {"id": f"plc{k:03d}", "type": "s7", "host": sim.host, "port": port, "profile": "bulk"}
        for k, port in enumerate(sim.ports)
    ]
    return {
        "gateway": {"id": "bench-gw", "log_level": "WARNING"},
        "sinks": {
            "mqtt": {
                "type": "mqtt",
                "host": broker.host,
                "port": broker.port,
                "topic_prefix": "bench",
                "qos": 1,
            }
        },
        "runtime": {"status_interval": 1, "outbox": {"enabled": args.outbox == "on"}},
        "api": {"enabled": args.api == "on"},
        "profiles": [profile],
        "devices": devices,
    }


def run(args: argparse.Namespace) -> str:
    with TemporaryDirectory(prefix="bench-s7-") as tmp:
        work = Path(tmp)
        broker = Mosquitto(work / "mosquitto").start()
        sim = S7Simulator(
            work / "sim", "--plcs", str(args.plcs), "--bulk-bytes", str(4 * args.items),
            "--log-level", "WARNING", port=0,
        )  # fmt: skip
        gateway: GatewayProcess | None = None
        subscriber: Subscriber | None = None
        try:
            sim.start()
            subscriber = Subscriber(broker.host, broker.port, "bench")
            gateway = GatewayProcess(work / "gateway", gateway_config(broker, sim, args)).start()
            served_before = len(sim.record.read_text().splitlines()) if sim.record.exists() else 0
            window = measure_window(
                gateway, [sim.process], subscriber, args.plcs, args.warmup, args.duration
            )
            lines = sim.record.read_text().splitlines()[served_before:]
        finally:
            if subscriber is not None:
                subscriber.close()
            if gateway is not None:
                gateway.stop()
            sim.stop()
            broker.close()
    reads = [json.loads(line) for line in lines if line.startswith('{"read"')]
    cycles = max(1.0, (args.warmup + args.duration) / args.period * args.plcs)
    rate = window.values / window.elapsed
    expected = args.plcs * args.items / args.period
    return (
        f"plcs={args.plcs} items={args.items} period={args.period:g}s outbox={args.outbox} "
        f"api={args.api} values/s={rate:,.0f} (offered {expected:,.0f}, "
        f"{100 * rate / expected:.1f}%) requests/cycle={len(reads) / cycles:.1f} "
        f"{window.summary()}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plcs", type=int, default=10)
    parser.add_argument("--items", type=int, default=500, help="items per PLC")
    parser.add_argument("--period", type=float, default=1.0, help="poll period, seconds")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before measuring")
    parser.add_argument("--outbox", choices=("on", "off"), default="on")
    parser.add_argument("--api", choices=("on", "off"), default="on")
    print(run(parser.parse_args(argv)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
