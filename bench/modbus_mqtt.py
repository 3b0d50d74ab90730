"""End-to-end benchmark: N simulated Modbus devices × M tags at period P → gateway → Mosquitto.

Measures, after a warm-up, the values per second received by a subscriber, the gateway
process's CPU (share of one core and µs per value) and peak RSS, and the age of readings
(poll time → receipt at the subscriber) p50/p99, and prints them as one line.

    python -m bench.modbus_mqtt --devices 10 --tags 100 --period 1 --duration 20

Reuses the integration tests' process helpers (tests/support): run it from the repository.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from bench.measure import Subscriber, measure_window
from tests.support.gateway import GatewayProcess
from tests.support.mosquitto import Mosquitto
from tests.support.processes import ManagedProcess
from tests.support.simulator import ModbusSimulator

ROOT = Path(__file__).resolve().parents[1]

BULK_START = 1000


def gateway_config(
    broker: tuple[str, int], sims: list[ModbusSimulator], args: argparse.Namespace
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
        "sinks": {
            "mqtt": {
                "type": "mqtt",
                "host": broker[0],
                "port": broker[1],
                "topic_prefix": "bench",
                "qos": qos,
                "max_inflight": args.max_inflight,
                "protocol": args.protocol,
            }
        },
        "runtime": {"status_interval": 1, "outbox": {"enabled": args.outbox == "on"}},
        "api": {"enabled": args.api == "on"},
        "profiles": [profile],
        "devices": devices,
    }


Stack = tuple[GatewayProcess, list[ModbusSimulator], Subscriber]


@contextmanager
def bench_stack(
    args: argparse.Namespace,
) -> Iterator[tuple[GatewayProcess, list[ModbusSimulator], Subscriber]]:
    """Broker, simulators (and the delay proxy), a counting subscriber and the gateway, all
    stopped by PID when the block ends."""
    with TemporaryDirectory(prefix="bench-") as tmp, ExitStack() as stops:
        work = Path(tmp)
        inflight = f"max_inflight_messages {args.broker_inflight}"
        broker = Mosquitto(work / "mosquitto", extra_config=inflight).start()
        stops.callback(broker.close)
        sims: list[ModbusSimulator] = []
        remaining = args.devices
        while remaining:
            ports = min(remaining, args.devices_per_sim)
            sim = ModbusSimulator(
                work / f"sim{len(sims)}",
                "--ports", str(ports), "--bulk-registers", str(args.tags),
                "--log-level", "WARNING", port=0, name=f"sim{len(sims)}",
            )  # fmt: skip
            stops.callback(sim.stop)
            sims.append(sim.start())
            remaining -= ports
        link = (broker.host, broker.port)
        if args.link_delay_ms > 0:
            proxy = ManagedProcess(
                [sys.executable, "-m", "bench.delay_proxy", "--target",
                 f"{broker.host}:{broker.port}", "--delay-ms", str(args.link_delay_ms)],
                work, name="delay-proxy", cwd=ROOT,
            )  # fmt: skip
            stops.callback(proxy.stop)
            proxy.start()
            link = (broker.host, int(proxy.wait_for_line(r"READY port=(\d+)", 10).group(1)))
        subscriber = Subscriber(broker.host, broker.port, "bench")
        stops.callback(subscriber.close)
        gateway = GatewayProcess(work / "gateway", gateway_config(link, sims, args))
        stops.callback(gateway.stop)
        yield gateway.start(), sims, subscriber


def run(args: argparse.Namespace) -> str:
    with bench_stack(args) as (gateway, sims, subscriber):
        window = measure_window(
            gateway,
            [sim.process for sim in sims],
            subscriber,
            args.devices,
            args.warmup,
            args.duration,
        )
    rate = window.values / window.elapsed
    expected = args.devices * args.tags / args.period
    skipped = sum(int(s.get("skipped_cycles", 0)) for s in window.statuses.values())
    overruns = sum(int(s.get("overruns", 0)) for s in window.statuses.values())
    return (
        f"devices={args.devices} tags={args.tags} period={args.period:g}s qos={args.qos} "
        f"outbox={args.outbox} api={args.api} link_delay={args.link_delay_ms:g}ms "
        f"protocol={args.protocol} max_inflight={args.max_inflight or 'auto'} "
        f"broker_inflight={args.broker_inflight} "
        f"values/s={rate:,.0f} (offered {expected:,.0f}, {100 * rate / expected:.1f}%) "
        f"{window.summary()} overruns={overruns} skipped_cycles={skipped}"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
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
        "--link-delay-ms", type=float, default=0, help="gateway-broker delay each way (proxy)"
    )
    parser.add_argument(
        "--max-inflight", type=int, help="the sink's max_inflight (default: the sink's default)"
    )
    parser.add_argument("--protocol", choices=("3.1.1", "5"), default="3.1.1")
    parser.add_argument(
        "--broker-inflight",
        type=int,
        default=20,
        help="Mosquitto's max_inflight_messages (its Receive Maximum for MQTT 5), default 20",
    )
    parser.add_argument(
        "--outbox", choices=("on", "off"), default="on", help="the durable outbox (default on)"
    )
    parser.add_argument(
        "--api", choices=("on", "off"), default="on", help="control plane and local store"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    print(run(parser.parse_args(argv)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
