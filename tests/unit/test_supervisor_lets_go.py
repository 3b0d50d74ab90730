"""The supervisor hands each cycle on and lets it go: while it waits for the next one, it
holds nothing of the last (see gateway/cycle.py)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator

from gateway.backoff import Backoff
from gateway.cycle import Cycle
from gateway.health import DeviceHealth
from gateway.reading import Reading
from gateway.status import DeviceStatus
from gateway.supervisor import DeviceSupervisor
from tests.unit.fakes import cycle


class OneCycle:
    """Yields one cycle, then waits (as a connector waits for its next poll)."""

    def __init__(self) -> None:
        self.waiting = asyncio.Event()
        self.forever = asyncio.Event()

    async def start(self) -> bool:
        return True

    async def cycles(self) -> AsyncIterator[Cycle]:
        yield cycle("press", [1.0, 2.0])
        self.waiting.set()
        await self.forever.wait()

    async def stop(self) -> None:
        pass


async def test_the_supervisor_keeps_no_cycle_while_it_waits_for_the_next() -> None:
    connector = OneCycle()
    kept: list[list[Reading]] = []

    def on_cycle(handed: Cycle) -> None:
        kept.append(handed.readings)  # as the runtime's batch does, until delivered

    supervisor = DeviceSupervisor(
        connector,
        DeviceHealth(DeviceStatus("press"), 10.0),
        Backoff(0.1, 1.0),
        on_cycle,
        lambda _: None,
    )
    running = asyncio.ensure_future(supervisor.run())
    try:
        await asyncio.wait_for(connector.waiting.wait(), 5)
        readings = kept.pop()
        holders = [type(r).__name__ for r in gc.get_referrers(readings)]
        assert holders.count("Cycle") == 0, holders
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
