"""The runtime's per-sink buffer: retries keep data, overflow drops the oldest and counts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gateway.buffer import SinkBuffer
from gateway.config import READING_BYTES, RuntimeConfig
from gateway.errors import RetryableSinkError, SinkError
from tests.unit.fakes import FakeSink, batch

# A cap of exactly 1000 readings.
FAST = RuntimeConfig(retry_min=0.001, retry_max=0.005, buffer_max_mb=1000 * READING_BYTES / 2**20)


@pytest.fixture
async def running() -> AsyncIterator[list[asyncio.Task[None]]]:
    tasks: list[asyncio.Task[None]] = []
    yield tasks
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_transient_failures_are_retried_until_written_in_order(
    running: list[asyncio.Task[None]],
) -> None:
    sink = FakeSink(failures=[RetryableSinkError("down")] * 3)
    buffer = SinkBuffer(sink, FAST)
    running.append(asyncio.create_task(buffer.run()))
    for cycle in range(5):
        buffer.put(batch("d", [cycle], cycle_ns=cycle))
    async with asyncio.timeout(5):
        await buffer.drain()
    assert [b.cycle_ns for b in sink.written] == [0, 1, 2, 3, 4]
    assert buffer.failed_writes == 3
    assert buffer.dropped_readings == 0
    assert buffer.written_readings == 5
    assert buffer.healthy and buffer.depth == 0


async def test_a_permanent_failure_drops_and_counts_only_that_write(
    running: list[asyncio.Task[None]],
) -> None:
    sink = FakeSink(failures=[SinkError("rejected")])
    sink.gate.clear()
    buffer = SinkBuffer(sink, FAST)
    running.append(asyncio.create_task(buffer.run()))
    buffer.put(batch("d", [1, 2, 3]))
    await asyncio.sleep(0)  # let the worker take the first batch alone
    buffer.put(batch("d", [4]))
    sink.gate.set()
    async with asyncio.timeout(5):
        await buffer.drain()
    assert buffer.dropped_readings == 3
    assert [r.value for b in sink.written for r in b.readings] == [4]
    assert buffer.last_error is None  # recovered with the next write


async def test_overflow_drops_the_oldest_and_counts_exactly(
    running: list[asyncio.Task[None]],
) -> None:
    sink = FakeSink()
    sink.gate.clear()  # the sink hangs: everything queues
    buffer = SinkBuffer(sink, FAST)
    running.append(asyncio.create_task(buffer.run()))
    buffer.put(batch("d", [0] * 100, cycle_ns=0))
    await asyncio.sleep(0)  # batch 0 is now being written (in flight, never dropped)
    for cycle in range(1, 16):
        buffer.put(batch("d", [cycle] * 100, cycle_ns=cycle))
    # 15 queued batches of 100 readings against a cap of 1000: the 5 oldest queued go.
    assert buffer.dropped_readings == 500
    assert buffer.depth == 1100
    sink.gate.set()
    async with asyncio.timeout(5):
        await buffer.drain()
    assert [b.cycle_ns for b in sink.written] == [0, *range(6, 16)]


async def test_retry_after_is_honoured(running: list[asyncio.Task[None]]) -> None:
    sink = FakeSink(failures=[RetryableSinkError("throttled", retry_after=0.3)])
    buffer = SinkBuffer(sink, FAST)
    running.append(asyncio.create_task(buffer.run()))
    loop = asyncio.get_running_loop()
    started = loop.time()
    buffer.put(batch("d", [1]))
    async with asyncio.timeout(5):
        await buffer.drain()
    assert loop.time() - started >= 0.3
    assert sink.attempts == 2
