"""The durable outbox: what is accepted is on disk until every sink confirmed it."""

from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.buffer import SinkBuffer
from gateway.config import RuntimeConfig
from gateway.errors import RetryableSinkError
from gateway.outbox import IdRanges, Outbox, OutboxConfig, decode_batch, encode_batch
from gateway.reading import Batch, Quality, Reading
from tests.support.processes import async_wait_until
from tests.unit.fakes import FakeSink, batch

CONFIG = OutboxConfig()


async def store(outbox: Outbox, one: Batch) -> int:
    """Store one batch as the runtime does; its id (0: not stored)."""
    [row_id] = await outbox.store([one])
    outbox.handed_out([row_id])
    return row_id


def test_batches_round_trip_including_odd_readings() -> None:
    readings = [
        Reading("d", "a", 1.5, Quality.GOOD, 100, 150),
        Reading("d", "b", None, Quality.BAD, 100, 160, "modbus exception 2"),
        Reading("d", "c", "txt", Quality.UNCERTAIN, 90, 150, "sensor cal"),
        Reading("d", "e", [1, 2], Quality.GOOD, 100, 150),
        Reading("d", "f", math.inf, Quality.GOOD, 100, 150),
    ]
    original = Batch("d", readings, 100, {"line": "1"}, "m")
    decoded = decode_batch(encode_batch(original))
    # JSON has no infinity: a non-finite float comes back as None, which every sink treats
    # as it treats infinity (MQTT null, not written to InfluxDB).
    assert decoded.readings[-1] == readings[-1]._replace(value=None)
    assert decoded.readings[:-1] == readings[:-1]
    assert (decoded.device, decoded.cycle_ns, decoded.labels, decoded.measurement) == (
        "d",
        100,
        {"line": "1"},
        "m",
    )
    assert decoded.readings[1].quality is Quality.BAD
    empty = Batch("d", [], 5)
    assert decode_batch(encode_batch(empty)) == empty


def test_id_ranges_merge_and_intersect() -> None:
    ranges = IdRanges([(0, 0)])
    for row_id in (1, 2, 5, 3, 7, 6):
        ranges.add(row_id)
    assert ranges.ranges() == [(0, 3), (5, 7)]
    assert ranges.floor == 3
    assert 6 in ranges and 4 not in ranges
    ranges.add(4)
    assert ranges.ranges() == [(0, 7)]
    other = IdRanges([(0, 2), (5, 9)])
    assert ranges.intersection(other).ranges() == [(0, 2), (5, 7)]


async def test_confirmations_survive_a_restart_and_confirmed_rows_go(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    outbox = Outbox(path, ["mqtt", "influx"], CONFIG)
    ids = [await store(outbox, batch("d", [i] * 10, cycle_ns=i)) for i in range(1, 6)]
    outbox.confirm("mqtt", ids, 50)
    outbox.confirm("influx", ids[:2], 20)
    assert outbox.pending_readings == {"mqtt": 0, "influx": 30}
    outbox.close()  # like a crash right after the last save

    again = Outbox(path, ["mqtt", "influx", "new-sink"], CONFIG)
    assert again.pending_readings == {"mqtt": 0, "influx": 30, "new-sink": 0}
    backlog = await again.backlog("influx", None, 1000)
    assert [b.cycle_ns for _, b in backlog] == [3, 4, 5]
    assert await again.backlog("mqtt", None, 1000) == []
    assert await again.backlog("new-sink", None, 1000) == []
    again.confirm("influx", [row_id for row_id, _ in backlog], 30)
    await again.persist()
    assert again.size == 0
    again.close()


async def test_bounds_drop_the_oldest_and_count_per_sink(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "g.db", ["a", "b"], OutboxConfig(max_mb=16))
    now = time.time_ns()
    first = await store(outbox, batch("d", [0.0] * 1000, cycle_ns=now))
    outbox.confirm("a", [first], 1000)
    for i in range(20):
        await store(outbox, batch("d", [float(i)] * 100_000, cycle_ns=now + 2 + i))
    assert outbox.size > 16 * 1024 * 1024
    await outbox.enforce_bounds()
    assert 0 < outbox.size <= 16 * 1024 * 1024
    kept = await outbox.backlog("b", None, 10**9)
    assert [b.cycle_ns - now for _, b in kept] == list(range(22 - len(kept), 22)), "newest stay"
    lost = 1000 + 100_000 * (20 - len(kept))
    assert outbox.dropped_readings == {"a": lost - 1000, "b": lost}, "a had confirmed the first"
    assert outbox.pending_readings == {"a": 100_000 * len(kept), "b": 100_000 * len(kept)}
    outbox.close()


async def test_batches_older_than_the_age_bound_are_dropped(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "g.db", ["a"], OutboxConfig(max_age_hours=1))
    await store(outbox, batch("d", [1.0] * 10, cycle_ns=time.time_ns() - 2 * 3600 * 10**9))
    await store(outbox, batch("d", [2.0] * 10, cycle_ns=time.time_ns()))
    await outbox.enforce_bounds()
    assert outbox.dropped_readings == {"a": 10}
    assert [b.readings[0].value for _, b in await outbox.backlog("a", None, 100)] == [2.0]
    outbox.close()


async def test_a_dropped_batch_delivered_after_all_is_no_loss(tmp_path: Path) -> None:
    """Dropped by the age bound while already in a sink's buffer, then delivered: the drop is
    taken back, so that delivered + dropped stays exactly what was accepted."""
    outbox = Outbox(tmp_path / "g.db", ["a"], OutboxConfig(max_age_hours=1))
    old = await store(outbox, batch("d", [1.0] * 10, cycle_ns=time.time_ns() - 2 * 3600 * 10**9))
    await store(outbox, batch("d", [2.0] * 10, cycle_ns=time.time_ns()))
    await outbox.enforce_bounds()
    assert (outbox.dropped_readings, outbox.pending_readings) == ({"a": 10}, {"a": 10})
    outbox.confirm("a", [old], 10)  # the buffer held it and the sink took it
    assert (outbox.dropped_readings, outbox.pending_readings) == ({"a": 0}, {"a": 10})
    outbox.close()


@pytest.fixture
async def tasks() -> AsyncIterator[list[asyncio.Task[None]]]:
    running: list[asyncio.Task[None]] = []
    yield running
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)


async def test_an_outage_longer_than_memory_loses_nothing(
    tmp_path: Path, tasks: list[asyncio.Task[None]]
) -> None:
    config = RuntimeConfig(
        buffer_max_mb=0.15,  # about 1000 readings
        retry_min=0.001,
        retry_max=0.01,
        outbox=OutboxConfig(drain_rate=20_000),
    )
    outbox = Outbox(tmp_path / "g.db", ["fake"], config.outbox)
    sink = FakeSink(failures=[RetryableSinkError("broker down")] * 3)
    sink.gate.clear()  # the outage
    buffer = SinkBuffer(sink, config, outbox)
    tasks.append(asyncio.create_task(buffer.run()))
    for cycle in range(50):  # 5000 readings: five times what memory holds
        b = batch("d", [cycle] * 100, cycle_ns=cycle)
        buffer.put(b, await store(outbox, b))
    assert buffer.depth == 5000 and buffer.backlog
    sink.gate.set()
    await async_wait_until(lambda: buffer.depth == 0, 10, "backlog drained")
    cycles = [b.cycle_ns for b in sink.written]
    assert sorted(set(cycles)) == list(range(50)), "every cycle delivered"
    assert len(cycles) == 50, "and exactly once"
    # Live batches (the newest, in memory) went first; the spilled ones oldest first after.
    spilled = [c for c in cycles if c < 40]
    assert spilled == sorted(spilled)
    assert buffer.dropped == 0


async def test_a_restart_replays_the_backlog_at_the_drain_rate(
    tmp_path: Path, tasks: list[asyncio.Task[None]]
) -> None:
    path = tmp_path / "g.db"
    before = Outbox(path, ["fake"], CONFIG)
    for cycle in range(30):
        await store(before, batch("d", [cycle] * 100, cycle_ns=cycle))
    before.close()  # the gateway died with 3000 readings unconfirmed

    config = RuntimeConfig(outbox=OutboxConfig(drain_rate=1000))
    outbox = Outbox(path, ["fake"], config.outbox)
    sink = FakeSink()
    buffer = SinkBuffer(sink, config, outbox)
    assert buffer.backlog and buffer.depth == 3000
    loop = asyncio.get_running_loop()
    started = loop.time()
    tasks.append(asyncio.create_task(buffer.run()))
    live = batch("d", [99], cycle_ns=99)
    buffer.put(live, await store(outbox, live))
    await async_wait_until(lambda: buffer.depth == 0, 10, "backlog replayed")
    elapsed = loop.time() - started
    # 3000 readings at 1000/s with a 1 s burst allowance: at least ~2 s.
    assert elapsed >= 1.8
    cycles = [b.cycle_ns for b in sink.written]
    assert sorted(cycles) == [*range(30), 99]
    assert cycles.index(99) < cycles.index(29), "live data does not wait for the backlog"


async def test_ids_are_not_reused_once_every_row_is_confirmed(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    outbox = Outbox(path, ["a"], CONFIG)
    first = await store(outbox, batch("d", [1.0], cycle_ns=1))
    outbox.confirm("a", [first], 1)
    await outbox.persist()  # the table is empty now
    second = await store(outbox, batch("d", [2.0], cycle_ns=2))
    assert second > first and not outbox.settled("a", second)
    outbox.close()  # a crash before it was confirmed
    again = Outbox(path, ["a"], CONFIG)
    assert [b.cycle_ns for _, b in await again.backlog("a", None, 100)] == [2], "replayed"
    again.close()


async def test_what_the_bounds_drop_is_not_also_written_from_memory(
    tmp_path: Path, tasks: list[asyncio.Task[None]]
) -> None:
    config = RuntimeConfig(retry_min=0.001, retry_max=0.005, outbox=OutboxConfig(max_mb=1))
    sink = FakeSink(failures=[RetryableSinkError("broker down")])
    outbox = Outbox(tmp_path / "g.db", ["fake"], config.outbox)
    buffer = SinkBuffer(sink, config, outbox)
    tasks.append(asyncio.create_task(buffer.run()))
    start = time.time_ns()

    async def put(cycle: int) -> None:
        one = batch("d", [float(cycle)] * 50, cycle_ns=start + cycle, tag="a_long_tag_name_")
        buffer.put(one, await store(outbox, one))

    sink.gate.clear()  # the broker hangs: writes wait
    await put(0)
    await asyncio.sleep(0)  # batch 0 is being written: that fails, it waits for a retry
    for cycle in range(1, 1000):  # about 1.5 MB, all of it also in memory
        await put(cycle)
    await outbox.enforce_bounds()
    assert outbox.dropped_readings["fake"] > 0
    sink.gate.set()
    await async_wait_until(lambda: buffer.depth == 0, 10, "the rest written")
    written = [b.cycle_ns - start for b in sink.written]
    assert written == list(range(1000 - len(written), 1000)), "the oldest went, and only they"
    assert buffer.written_readings + buffer.dropped == 1000 * 50


class FullDisk:
    """The outbox's connection on a disk that fills up: writes fail while ``full``."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.full = False

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if self.full and sql.lstrip().startswith(("INSERT", "DELETE")):
            raise sqlite3.OperationalError("database or disk is full")
        return self.db.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)

    def __enter__(self) -> sqlite3.Connection:
        return self.db.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self.db.__exit__(*exc)


async def test_a_full_disk_costs_the_replay_not_the_live_data(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    outbox = Outbox(tmp_path / "g.db", ["fake"], CONFIG)
    disk = FullDisk(outbox._db)
    outbox._db = disk  # type: ignore[assignment]
    sink = FakeSink()
    buffer = SinkBuffer(sink, RuntimeConfig(), outbox)
    worker = asyncio.create_task(buffer.run())
    stored = await store(outbox, batch("d", [1.0, 2.0]))
    buffer.put(batch("d", [1.0, 2.0]), stored)
    disk.full = True
    with caplog.at_level(logging.ERROR):
        for i in range(5):
            row_id = await store(outbox, batch("d", [float(i)] * 3))
            assert row_id == 0
            buffer.put(batch("d", [float(i)] * 3), row_id)
        await outbox.persist()  # refused too: the confirmations wait in memory
    assert outbox.unstored_readings == {"disk_full": 15}
    assert len([m for m in caplog.messages if "cannot store batches" in m]) == 1
    await async_wait_until(lambda: len(sink.written) == 6)  # live data still flows
    assert outbox.pending_readings == {"fake": 0}
    disk.full = False
    assert await store(outbox, batch("d", [9.0])) > stored
    await outbox.persist()
    worker.cancel()
    outbox.close()


async def test_what_the_outbox_could_not_store_counts_as_waiting(
    tmp_path: Path, tasks: list[asyncio.Task[None]]
) -> None:
    """Batches the outbox could not store (a full disk) wait in memory: the sink's depth (the
    gateway_sink_buffer_readings gauge) includes them until they are written, so whoever waits
    for it to reach 0 does not stop while they are still on their way."""
    config = RuntimeConfig(retry_min=0.001, retry_max=0.01)
    outbox = Outbox(tmp_path / "g.db", ["fake"], config.outbox)
    sink = FakeSink()
    sink.gate.clear()  # the broker is away
    buffer = SinkBuffer(sink, config, outbox)
    tasks.append(asyncio.create_task(buffer.run()))
    stored = batch("d", [1] * 100, cycle_ns=1)
    buffer.put(stored, await store(outbox, stored))
    buffer.put(batch("d", [2] * 30, cycle_ns=2), 0)  # not stored: the disk was full
    assert buffer.depth == 130
    sink.gate.set()
    await async_wait_until(lambda: buffer.depth == 0, 10, "both written")
    assert sorted(b.cycle_ns for b in sink.written) == [1, 2]
