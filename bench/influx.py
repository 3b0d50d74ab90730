"""InfluxDB sink benchmark: influxdb-client's ``Point`` vs the direct line protocol builder, and
end to end through the sink (influxdb-client's async write API) into a real VictoriaMetrics.

Prints one line: µs per value and points per second for each serializer, then the points and
values per second VictoriaMetrics accepted, with the sink's CPU per value (client side).

    python -m bench.influx --points 20000 --tags 50

Reuses the integration tests' process helpers (tests/support): run it from the repository.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from influxdb_client.client.write.point import Point
from influxdb_client.domain.write_precision import WritePrecision
from pydantic import SecretStr

from gateway.reading import Batch, Quality, Reading, Value
from gateway.sinks.influx import InfluxSink
from gateway.sinks.influx_config import InfluxConfig
from gateway.sinks.line_protocol import LineEncoder
from tests.support.processes import wait_until
from tests.support.victoria import VictoriaMetrics

MEASUREMENT = "bench"
LABELS = {"site": "plant1", "line": "line 1", "cell": "filling"}
T0 = 1_732_600_000_000_000_000


def make_batches(points: int, tags: int, devices: int = 100) -> list[Batch]:
    """``points`` polls of ``devices`` devices: floats, ints and a bool per poll, like a PLC."""
    batches = []
    for i in range(points):
        device = f"plc-{i % devices}"
        ns = T0 + (i // devices) * 1_000_000
        values: list[Value] = [
            (i * 0.37 + t if t % 3 == 0 else i + t) if t % 10 else bool(i % 2) for t in range(tags)
        ]
        readings = [
            Reading(device, f"tag{t:03d}", v, Quality.GOOD, ns, ns) for t, v in enumerate(values)
        ]
        batches.append(Batch(device, readings, ns, LABELS, MEASUREMENT))
    return batches


def with_points(batches: list[Batch], gateway: str) -> bytes:
    """The same lines through influxdb-client's Point (its documented way to build points)."""
    lines = []
    for batch in batches:
        point = Point(batch.measurement or MEASUREMENT).tag("gateway", gateway)  # type: ignore[no-untyped-call]
        point.tag("device", batch.device)
        for name, label in batch.labels.items():
            point.tag(name, label)
        for reading in batch.readings:
            point.field(reading.tag, reading.value)
        point.time(batch.cycle_ns, WritePrecision.MS)
        lines.append(point.to_line_protocol())
    return "\n".join(lines).encode()


def timed(run: object) -> float:
    """Best of three, seconds."""
    assert callable(run)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


async def into_victoria(batches: list[Batch], chunk: int, workdir: Path) -> tuple[float, float]:
    """Write every batch through the sink; (wall seconds, sink CPU seconds)."""
    server = VictoriaMetrics(workdir).start()
    try:
        config = InfluxConfig(url=server.url, org="bench", bucket="bench", token=SecretStr("x"))
        sink = InfluxSink(config, "gw-bench")
        await sink.start()
        try:
            wall, cpu = time.perf_counter(), time.process_time()
            for start in range(0, len(batches), chunk):
                await sink.write(batches[start : start + chunk])
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        finally:
            await sink.stop()
        last = batches[-1]
        expected = sum(1 for b in batches if b.device == last.device)
        match = f'{{__name__="{MEASUREMENT}_tag001",device="{last.device}"}}'

        def stored() -> bool:
            server.flush()
            return sum(len(s.values) for s in server.export(match)) >= expected

        wait_until(stored, 30, "every point of the last device stored", interval=0.2)
        return wall, cpu
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=20_000, help="points (device polls)")
    parser.add_argument("--tags", type=int, default=50, help="values per point")
    parser.add_argument("--chunk", type=int, default=256, help="points per write request")
    args = parser.parse_args()
    batches = make_batches(args.points, args.tags)
    values = args.points * args.tags
    encoder = LineEncoder("gw-bench", MEASUREMENT, "ms", unsigned=True)
    assert len(encoder.encode(batches).body) > 0
    point_s = timed(lambda: with_points(batches, "gw-bench"))
    direct_s = timed(lambda: encoder.encode(batches))
    with TemporaryDirectory(prefix="bench-influx-") as workdir:
        wall, cpu = asyncio.run(into_victoria(batches, args.chunk, Path(workdir)))
    print(
        f"influx: {args.points} points x {args.tags} values | "
        f"Point {point_s / values * 1e6:.2f} us/value ({args.points / point_s / 1e3:.1f}k "
        f"points/s) | direct {direct_s / values * 1e6:.3f} us/value "
        f"({args.points / direct_s / 1e3:.1f}k points/s, {point_s / direct_s:.0f}x) | "
        f"into VictoriaMetrics {args.points / wall / 1e3:.1f}k points/s = "
        f"{values / wall / 1e6:.2f}M values/s, sink CPU {cpu / values * 1e6:.3f} us/value "
        f"({args.chunk} points/request)"
    )


if __name__ == "__main__":
    main()
