"""Soak: the Modbus benchmark's stack run for a long time, sampling the gateway's RSS and CPU
per value every ``--every`` seconds, to show both stay flat (once the local history has filled
its retention) or to find what grows.

    python -m bench.soak --devices 100 --tags 1000 --period 1 --minutes 60 --every 60

Takes every option of bench.modbus_mqtt (``--duration`` and ``--warmup`` are not used).

Beside the gateway's figures, each line has the simulators' CPU per value and the local
history's size. The simulators do the same work every minute, so their CPU per value gauges
the machine: when the gateway's and theirs rise together, the machine slowed (a shared host),
not the gateway. ``ratio`` is the gateway's over theirs. The history's size is its file and
its write-ahead log.
"""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

import psutil

from bench.measure import cpu_seconds
from bench.modbus_mqtt import add_arguments, bench_stack
from gateway.history import HISTORY_FILE
from tests.support.processes import wait_until


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--every", type=float, default=60.0, help="seconds between samples")
    args = parser.parse_args(argv)
    ticks = threading.Event()  # never set: its wait() paces the samples
    with bench_stack(args) as (gateway, sims, subscriber):
        wait_until(lambda: len(subscriber.devices_seen) == args.devices, 120, "all devices")
        process = psutil.Process(gateway.process.pid)
        simulators = [psutil.Process(sim.process.pid) for sim in sims]
        history = gateway.data_dir / HISTORY_FILE
        print(
            "minute rss_mib cpu_per_value_us values_per_s sims_us_per_value ratio history_mib",
            flush=True,
        )
        elapsed, cpu, sims_cpu = 0.0, cpu_seconds(process), _total_cpu(simulators)
        subscriber.reset()
        while elapsed < args.minutes * 60:
            ticks.wait(args.every)  # a sampling period, not a wait for an effect
            elapsed += args.every
            values, _ = subscriber.reset()
            now, sims_now = cpu_seconds(process), _total_cpu(simulators)
            per_value = 1e6 * (now - cpu) / max(values, 1)
            sims_per_value = 1e6 * (sims_now - sims_cpu) / max(values, 1)
            rss = process.memory_info().rss / 2**20
            stored = _size(history) + _size(history.with_name(f"{HISTORY_FILE}-wal"))
            print(
                f"{elapsed / 60:6.1f} {rss:7.1f} {per_value:16.2f} {values / args.every:12,.0f}"
                f" {sims_per_value:17.2f} {per_value / max(sims_per_value, 1e-9):5.2f}"
                f" {stored:11.1f}",
                flush=True,
            )
            cpu, sims_cpu = now, sims_now
    return 0


def _size(path: Path) -> float:
    return path.stat().st_size / 2**20 if path.exists() else 0.0


def _total_cpu(processes: list[psutil.Process]) -> float:
    return sum(cpu_seconds(process) for process in processes)


if __name__ == "__main__":
    raise SystemExit(main())
