"""End-to-end benchmark: N OPC UA devices × M subscribed nodes changing every P s → gateway →
Mosquitto, printed as one line.

Each simulator process serves the bulk nodes of ``--devices-per-sim`` devices (each device
subscribes its own M nodes), keeping a simulator at or below ~5k changes/s, the asyncua
server's own limit. Measures, after a warm-up, values per second received by a subscriber,
the gateway's CPU (share of one core and µs per value), its peak RSS, and the age of
readings (gateway receipt → subscriber) p50/p99.

    python -m bench.opcua --devices 10 --nodes 1000 --period 1 --duration 20

Reuses the integration tests' process helpers (tests/support): run it from the repository.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from bench.measure import Subscriber, measure_window
from simulators.opcua.plant import BULK_FOLDER, NAMESPACE
from simulators.opcua.server import MAX_CHANGES_PER_SECOND
from tests.support.gateway import GatewayProcess
from tests.support.mosquitto import Mosquitto
from tests.support.opcua import OpcUaSimulator


def gateway_config(
    broker: Mosquitto, sims: list[OpcUaSimulator], args: argparse.Namespace
) -> dict[str, Any]:
    devices = []
    for index in range(args.devices):
        sim = sims[index // args.devices_per_sim]
        first = (index % args.devices_per_sim) * args.nodes
        tags = [
            {"name": f"v{i}", "node": f"nsu={NAMESPACE};s={BULK_FOLDER}.V{first + i:05d}"}
            for i in range(args.nodes)
        ]
        devices.append(
            {
                "id": f"dev{index:04d}",
                "type": "opcua",
                "endpoint": sim.endpoint,
                "timeout": 5,
                "labels": {"line": "bench"},
                "groups": [{"name": "bulk", "interval": args.period, "tags": tags}],
            }
        )
    return {
        "gateway": {"id": "bench-gw", "log_level": "WARNING"},
        "sinks": {
            "mqtt": {
                "type": "mqtt",
                "host": broker.host,
                "port": broker.port,
                "topic_prefix": "bench",
                "qos": args.qos,
            }
        },
        "runtime": {"status_interval": 1},
        "devices": devices,
    }


def run(args: argparse.Namespace) -> str:
    with TemporaryDirectory(prefix="bench-opcua-") as tmp:
        work = Path(tmp)
        broker = Mosquitto(work / "mosquitto").start()
        sims: list[OpcUaSimulator] = []
        gateway: GatewayProcess | None = None
        subscriber: Subscriber | None = None
        try:
            for first in range(0, args.devices, args.devices_per_sim):
                devices = min(args.devices_per_sim, args.devices - first)
                sim = OpcUaSimulator(
                    work / f"sim{len(sims)}",
                    "--nodes", str(devices * args.nodes), "--period", str(args.period),
                    name=f"sim{len(sims)}",
                )  # fmt: skip
                sims.append(sim.start(timeout=120))
            subscriber = Subscriber(broker.host, broker.port, "bench")
            gateway = GatewayProcess(work / "gateway", gateway_config(broker, sims, args)).start()
            window = measure_window(
                gateway,
                [sim.process for sim in sims],
                subscriber,
                args.devices,
                args.warmup,
                args.duration,
            )
        finally:
            if subscriber is not None:
                subscriber.close()
            if gateway is not None:
                gateway.stop()
            for sim in sims:
                sim.stop()
            broker.close()
    rate = window.values / window.elapsed
    offered = args.devices * args.nodes / args.period
    skipped = sum(int(s.get("skipped_cycles", 0)) for s in window.statuses.values())
    return (
        f"opcua devices={args.devices} nodes={args.nodes} period={args.period:g}s"
        f" simulators={len(sims)} qos={args.qos} values/s={rate:,.0f} (offered {offered:,.0f},"
        f" {100 * rate / offered:.1f}%) {window.summary()} dropped_batches={skipped}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--nodes", type=int, default=1000, help="subscribed nodes per device")
    parser.add_argument("--period", type=float, default=1.0, help="change and publishing interval")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before measuring")
    parser.add_argument("--devices-per-sim", type=int, default=4, help="devices per simulator")
    parser.add_argument("--qos", type=int, default=1, choices=(0, 1, 2))
    args = parser.parse_args(argv)
    if args.devices_per_sim < 1:
        parser.error("--devices-per-sim must be at least 1")
    per_sim = args.devices_per_sim * args.nodes / args.period
    if per_sim > MAX_CHANGES_PER_SECOND:
        parser.error(
            f"{per_sim:,.0f} changes/s per simulator: lower --devices-per-sim"
            f" (one serves about {MAX_CHANGES_PER_SECOND})"
        )
    if args.devices < 1 or args.nodes < 1 or args.period <= 0:
        parser.error("--devices and --nodes must be at least 1, --period above 0")
    print(run(args), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
