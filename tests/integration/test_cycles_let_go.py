"""A cycle is handed on and let go: while the connector waits for its next poll, nothing of it
holds the last cycle's readings (at 100 devices × 1000 tags that was 100,000 readings, 12 MiB,
kept a whole period)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncGenerator, AsyncIterator, Callable

import pytest

from connectors.modbus.config import ModbusDeviceConfig, ModbusGroup, ModbusTag
from connectors.modbus.connector import ModbusConnector
from connectors.modbus.link import LinkPool
from gateway.cycle import Cycle
from gateway.reading import Reading
from tests.support.simulator import ModbusSimulator

pytestmark = pytest.mark.integration


def holders(readings: list[Reading], test_code: object) -> list[str]:
    """What refers to ``readings``, other than the test's own coroutine."""
    found: list[str] = []
    for referrer in gc.get_referrers(readings):
        if isinstance(referrer, Cycle):
            found.extend(f"cycle held by {type(r).__name__}" for r in gc.get_referrers(referrer))
        elif getattr(referrer, "cr_code", None) is not test_code:
            name = getattr(referrer, "__qualname__", "")
            found.append(f"{type(referrer).__name__} {name}".strip())
    return found


async def waiting(cycles: AsyncIterator[Cycle]) -> None:
    """Until the generator, asked for its next cycle, waits (its poll is not due yet)."""
    for _ in range(1000):
        if getattr(cycles, "ag_await", None) is not None:
            return
        await asyncio.sleep(0)
    raise AssertionError("the connector never waited for its next poll")


async def test_the_modbus_connector_keeps_no_cycle_while_it_waits(
    launch_sim: Callable[..., ModbusSimulator],
) -> None:
    sim = launch_sim("--units", "1")
    group = ModbusGroup(
        name="all", interval=30.0, tags=[ModbusTag(name=f"r{i}", address=i) for i in range(20)]
    )
    device = ModbusDeviceConfig(
        id="plc", type="modbus", host="127.0.0.1", port=sim.port, groups=[group]
    )
    connector = ModbusConnector(device, [group], LinkPool())
    await connector.start()
    cycles = connector.cycles()
    assert isinstance(cycles, AsyncGenerator)
    first = await anext(cycles)
    readings = first.readings
    assert len(readings) == 20
    del first
    following = asyncio.ensure_future(anext(cycles))
    try:
        await waiting(cycles)
        me = test_the_modbus_connector_keeps_no_cycle_while_it_waits.__code__
        assert holders(readings, me) == []
    finally:
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following
        await cycles.aclose()
        await connector.stop()
