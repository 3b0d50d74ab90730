"""Soak: the Modbus benchmark's stack run for a long time, sampling the gateway's RSS and CPU
per value every ``--every`` seconds, to show both stay flat (once the local history has filled
its retention) or to find what grows.

    python -m bench.soak --devices 100 --tags 1000 --period 1 --minutes 60 --every 60

Takes every option of bench.modbus_mqtt (``--duration`` and ``--warmup`` are not used).
"""

from __future__ import annotations

import argparse
import threading

import psutil

from bench.measure import cpu_seconds
from bench.modbus_mqtt import add_arguments, bench_stack
from tests.support.processes import wait_until


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--every", type=float, default=60.0, help="seconds between samples")
    args = parser.parse_args(argv)
    ticks = threading.Event()  # never set: its wait() paces the samples
    with bench_stack(args) as (gateway, _, subscriber):
        wait_until(lambda: len(subscriber.devices_seen) == args.devices, 120, "all devices")
        process = psutil.Process(gateway.process.pid)
        print("minute rss_mib cpu_per_value_us values_per_s", flush=True)
        elapsed, cpu = 0.0, cpu_seconds(process)
        subscriber.reset()
        while elapsed < args.minutes * 60:
            ticks.wait(args.every)  # a sampling period, not a wait for an effect
            elapsed += args.every
            values, _ = subscriber.reset()
            now = cpu_seconds(process)
            per_value = 1e6 * (now - cpu) / max(values, 1)
            rss = process.memory_info().rss / 2**20
            print(
                f"{elapsed / 60:6.1f} {rss:7.1f} {per_value:16.2f} {values / args.every:12,.0f}",
                flush=True,
            )
            cpu = now
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
