"""In-process cost of Sparkplug B encoding: DDATA payloads (aliases, timestamps, values) built
by the edge node from the batches the runtime hands its sink, in metrics per second of CPU on
one core; the MQTT sink's JSON telemetry of the same batches is measured in the same run for a
ratio. No broker: bench.modbus_mqtt measures the whole path.

    python -m bench.sparkplug --devices 100 --tags 100
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping, Sequence

from bench.pipeline import build_tags
from connectors.modbus.config import ModbusTag
from gateway.reading import Batch, Reading, good_readings
from gateway.sinks.mqtt_payload import encode_telemetry
from gateway.sinks.sparkplug.node import EdgeNode
from gateway.tags import TagBase


class _Directory:
    def __init__(self, tags: dict[str, tuple[ModbusTag, ...]]) -> None:
        self._tags = tags

    def running(self) -> Sequence[str]:
        return list(self._tags)

    def tags_of(self, device: str) -> Sequence[TagBase] | None:
        return self._tags.get(device)

    def current(self, device: str) -> Mapping[str, Reading]:
        return {}


def _value(tag: ModbusTag, cycle: int, index: int) -> bool | int | float:
    if tag.data_type.value == "bool":
        return (cycle + index) % 2 == 0
    if tag.value_type.value.startswith("float"):
        return cycle * 0.5 + index
    return (cycle * 7 + index) % 30_000


def _batches(devices: int, tags: list[ModbusTag], cycles: int) -> list[Batch]:
    names = [tag.name for tag in tags]
    out = []
    for cycle in range(cycles):
        now = 1_764_500_000_000_000_000 + cycle * 1_000_000_000
        for device in range(devices):
            values = [_value(tag, cycle, i) for i, tag in enumerate(tags)]
            readings = good_readings(f"d{device}", names, values, now, now)
            out.append(Batch(f"d{device}", readings, now))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--tags", type=int, default=100)
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5, help="best of this many runs")
    args = parser.parse_args()

    tags = build_tags(args.tags, mixed=True)
    batches = _batches(args.devices, tags, args.cycles)
    metrics = sum(len(batch.readings) for batch in batches)
    directory = _Directory({f"d{d}": tuple(tags) for d in range(args.devices)})

    def sparkplug() -> float:
        node = EdgeNode("bench", "gw", "0")
        node.node_birth(0, args.devices)
        for batch in batches[: args.devices]:  # births outside the measured loop
            node.device_data(batch, directory)
        started = time.process_time()
        for batch in batches:
            node.device_data(batch, directory)
        return time.process_time() - started

    def json() -> float:
        started = time.process_time()
        for batch in batches:
            encode_telemetry(batch)
        return time.process_time() - started

    spb = min(sparkplug() for _ in range(args.repeat))
    js = min(json() for _ in range(args.repeat))
    shape = f"{args.devices} devices x {args.tags} mixed tags x {args.cycles} cycles"
    print(f"{shape} = {metrics:,} metrics")
    per_core = f"{metrics / spb:,.0f} metrics/s per core"
    print(f"sparkplug DDATA: {spb / metrics * 1e6:.3f} µs/metric = {per_core}")
    print(f"MQTT JSON telemetry: {js / metrics * 1e6:.3f} µs/value = {metrics / js:,.0f} values/s")
    print(f"ratio sparkplug/json: {spb / js:.2f}")


if __name__ == "__main__":
    main()
