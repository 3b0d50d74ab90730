"""In-process cost of the gateway's own hot path per value, without sockets or servers.

Decode a 125-register block → good readings → report-by-exception → MQTT JSON payload, for
one device of M uint16 tags (and once more with mixed types and byte orders), then the same
with the durable outbox (encode, INSERT, confirm) and with the local store and a history
sample every cycle, and print µs of CPU per value. Cycles are 1 s apart. Pymodbus' request and
paho's publish are not included: bench.modbus_mqtt measures the whole path. The garbage
collector runs with the gateway's thresholds (gateway/memory.py): at Python's defaults it
collected far more often than in the gateway, and priced everything that keeps objects a
while (the local store's columns: +0.2 µs per value here, +0.02 µs in the gateway).

    python -m bench.pipeline --tags 1000
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from connectors.modbus.config import ModbusTag
from connectors.modbus.decode import BlockDecoder
from connectors.modbus.planner import Span, plan_reads
from gateway.history import History, HistoryConfig
from gateway.local_store import LocalStore
from gateway.memory import collect_less_often
from gateway.normalize import ReportFilter
from gateway.outbox import Outbox, OutboxConfig
from gateway.reading import Batch, good_readings
from gateway.sinks.mqtt_payload import encode_telemetry

MIXED: list[dict[str, object]] = [
    {"data_type": "uint16"},
    {"data_type": "int16", "scale": 0.1},
    {"data_type": "float32"},
    {"data_type": "float32", "byte_order": "CDAB"},
    {"data_type": "uint32"},
    {"data_type": "bool", "bit": 3},
]


def build_tags(count: int, mixed: bool) -> list[ModbusTag]:
    tags = []
    address = 0
    for i in range(count):
        extra: dict[str, object] = MIXED[i % len(MIXED)] if mixed else {}
        tag = ModbusTag.model_validate({"name": f"t{i}", "address": address, **extra})
        tags.append(tag)
        address += tag.size
    return tags


async def measure(
    count: int,
    mixed: bool,
    rounds: int,
    outbox: Outbox | None = None,
    store: LocalStore | None = None,
) -> float:
    tags = build_tags(count, mixed)
    spans = [Span(t.table, t.address, t.size, i) for i, t in enumerate(tags)]
    requests = plan_reads(spans, max_registers=125, max_bits=2000, max_gap=0)
    blocks = [
        (
            BlockDecoder(r.address, r.count, [(tags[s.tag], s.address) for s in r.spans]),
            tuple(tags[s.tag].name for s in r.spans),
            [(i * 7 + r.address) & 0xFFFF for i in range(r.count)],
        )
        for r in requests
    ]
    report = ReportFilter(tags)
    base = time.time_ns()
    started = time.process_time()
    for cycle in range(rounds):
        now = base + cycle * 1_000_000_000
        readings = []
        for decoder, names, registers in blocks:
            readings += good_readings("dev", names, decoder.decode(registers), now, now)
        batch = Batch("dev", readings, now)
        report.apply(batch)
        if outbox is not None:
            outbox.confirm("mqtt", await outbox.store([batch]), len(readings))
        encode_telemetry(batch)
        if store is not None:
            await store.write([batch])
    return 1e6 * (time.process_time() - started) / (rounds * count)


async def run(args: argparse.Namespace) -> str:
    plain = await measure(args.tags, False, args.rounds)
    mixed = await measure(args.tags, True, args.rounds)
    with TemporaryDirectory(prefix="pipeline-") as tmp:
        outbox = Outbox(Path(tmp) / "g.db", ["mqtt"], OutboxConfig())
        durable = await measure(args.tags, False, args.rounds, outbox=outbox)
        outbox.close()
        outbox = Outbox(Path(tmp) / "full.db", ["mqtt"], OutboxConfig(sync="full"))
        synced = await measure(args.tags, False, args.rounds, outbox=outbox)
        outbox.close()
        local = {}
        for every in (0.0, 5.0):
            history = History(Path(tmp) / f"h{every}.db", HistoryConfig(min_interval=every))
            local[every] = await measure(args.tags, False, args.rounds, store=LocalStore(history))
            await history.flush()
            history.close()
    return (
        f"pipeline tags={args.tags} uint16={plain:.3f}us/value "
        f"mixed_types_and_orders={mixed:.3f}us/value "
        f"uint16+outbox={durable:.3f}us/value "
        f"uint16+outbox(sync_full)={synced:.3f}us/value "
        f"uint16+local_store(history_every_cycle)={local[0.0]:.3f}us/value "
        f"uint16+local_store(history_default_5s)={local[5.0]:.3f}us/value"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tags", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=300)
    collect_less_often()
    print(asyncio.run(run(parser.parse_args(argv))), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
