"""A shared Modbus line: whose turn, the silence between frames, the load, and what a dropped
RTU answer was."""

from __future__ import annotations

import asyncio

import pytest

from connectors.modbus.line import (
    WRITE_PRIORITY,
    LineLoad,
    LineTurns,
    answer_bytes,
    char_time,
    frame_gap,
    read_time,
)
from connectors.modbus.link import _rtu_fault
from gateway.schedule import PollScheduler
from simulators.modbus.line import LineFaults, wire_bytes


def test_character_and_gap_times_follow_the_baud_rate() -> None:
    assert char_time(19200, "N", 1) == pytest.approx(10 / 19200)
    assert char_time(9600, "E", 1) == pytest.approx(11 / 9600)
    assert char_time(9600, "N", 2) == pytest.approx(11 / 9600)
    assert frame_gap(9600, char_time(9600, "E", 1)) == pytest.approx(3.5 * 11 / 9600)
    assert frame_gap(115200, char_time(115200, "N", 1)) == 0.00175


def test_a_read_holds_the_line_for_its_frames_and_gaps() -> None:
    assert answer_bytes(is_bits=False, count=10) == 25
    assert answer_bytes(is_bits=True, count=9) == 7
    char = char_time(19200, "N", 1)
    gap = frame_gap(19200, char)
    assert read_time(False, 10, char, gap) == pytest.approx(33 * char + 2 * gap)
    # The simulator's wire delay agrees with the gateway's estimate of the frames.
    assert wire_bytes(3, 10) == 8 + answer_bytes(False, 10)
    assert wire_bytes(1, 9) == 8 + answer_bytes(True, 9)


async def test_turns_go_by_priority_then_arrival() -> None:
    turns = LineTurns()
    order: list[str] = []
    await turns.acquire(5)  # the line is busy

    async def take(name: str, priority: int) -> None:
        async with turns.at(priority):
            order.append(name)

    tasks = [
        asyncio.create_task(take(name, priority))
        for name, priority in (("low", 9), ("mid-1", 5), ("high", 1), ("mid-2", 5))
    ]
    await asyncio.sleep(0)
    assert turns.waiting == 4
    turns.release()
    await asyncio.gather(*tasks)
    assert order == ["high", "mid-1", "mid-2", "low"]
    assert turns.waiting == 0


async def test_writes_go_before_waiting_polls() -> None:
    turns = LineTurns()
    order: list[str] = []
    await turns.acquire(5)

    async def poll() -> None:
        async with turns.at(1):
            order.append("poll")

    async def write() -> None:
        async with turns:
            order.append("write")

    tasks = [asyncio.create_task(poll()), asyncio.create_task(write())]
    await asyncio.sleep(0)
    turns.release()
    await asyncio.gather(*tasks)
    assert order == ["write", "poll"]
    assert WRITE_PRIORITY < 1


async def test_a_cancelled_waiter_does_not_keep_the_line() -> None:
    turns = LineTurns()
    await turns.acquire(5)
    gone = asyncio.create_task(turns.acquire(1))
    await asyncio.sleep(0)
    gone.cancel()
    later = asyncio.create_task(turns.acquire(9))
    await asyncio.sleep(0)
    turns.release()
    await asyncio.wait_for(later, 1)
    turns.release()
    assert turns.waiting == 0
    await asyncio.wait_for(turns.acquire(5), 1)  # free again


async def test_a_waiter_cancelled_after_its_turn_came_passes_it_on() -> None:
    turns = LineTurns()
    await turns.acquire(5)
    first = asyncio.create_task(turns.acquire(1))
    second = asyncio.create_task(turns.acquire(2))
    await asyncio.sleep(0)
    turns.release()  # granted to ``first``...
    first.cancel()  # ...which is cancelled before it runs
    await asyncio.wait_for(second, 1)


def test_the_load_reports_each_units_share_and_the_demand() -> None:
    load = LineLoad("serial:///dev/ttyUSB0", 9600)
    load.demand("meter-1", 0.3)
    load.demand("meter-2", 0.9)
    load.busy(0.2, unit=1)
    load.busy(0.1, unit=2)
    load.timeouts += 1
    report = load.snapshot(unit=1)
    assert report["endpoint"] == "serial:///dev/ttyUSB0"
    assert report["demand_pct"] == 120.0
    assert report["oversubscribed"] is True
    assert report["units"] == 2
    assert report["requests"] == 2
    assert report["timeouts"] == 1
    assert report["usage_pct"] >= report["unit_usage_pct"] > 0
    load.demand("meter-2", None)
    assert load.snapshot(unit=1)["oversubscribed"] is False


def _frame(body: bytes) -> bytes:
    from pymodbus.framer import FramerRTU

    return body + FramerRTU.compute_CRC(body).to_bytes(2, "big")


def test_a_dropped_rtu_answer_is_told_apart() -> None:
    whole = _frame(bytes([1, 3, 4, 0, 1, 0, 2]))
    assert _rtu_fault(whole, expected=len(whole)) is None
    garbled = whole[:-1] + bytes([whole[-1] ^ 0xFF])
    assert _rtu_fault(garbled, expected=len(whole)) == "crc"
    assert _rtu_fault(whole[:4], expected=len(whole)) == "partial"
    assert _rtu_fault(whole[:2], expected=len(whole)) == "partial"
    assert _rtu_fault(b"", expected=len(whole)) is None
    assert _rtu_fault(garbled, expected=None) == "crc"


def test_the_simulated_line_garbles_and_cuts_only_the_faulty_units_answers() -> None:
    faults = LineFaults(garble_every=2, truncate_every=3, units=[2])
    answer_1 = _frame(bytes([1, 3, 2, 0, 7]))
    answer_2 = _frame(bytes([2, 3, 2, 0, 7]))
    assert [faults(True, answer_1) for _ in range(6)] == [answer_1] * 6
    sent = [faults(True, answer_2) for _ in range(4)]
    assert sent[0] == answer_2
    assert _rtu_fault(sent[1], len(answer_2)) == "crc"
    assert _rtu_fault(sent[2], len(answer_2)) == "partial"
    assert _rtu_fault(sent[3], len(answer_2)) == "crc"
    assert faults(False, answer_2) == answer_2  # requests are never touched
    assert (faults.garbled, faults.truncated) == (2, 1)


def test_deferring_holds_back_every_group() -> None:
    schedule = PollScheduler([1.0, 10.0], [0.0, 0.0], begin=100.0)
    schedule.defer(105.0)
    assert schedule.next() == (0, 105.0)
    schedule.done(0, 105.1, answered=False)
    index, due = schedule.next()
    assert (index, due) == (1, 105.0)
