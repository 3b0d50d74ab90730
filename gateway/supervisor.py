"""One supervisor per device: connect, stream cycles, and on any failure back off and retry.

This is the one place that catches ``Exception``: a broken device must never take down the
runtime or stall other devices. A device going down is logged once, and so is its recovery.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from gateway.backoff import Backoff
from gateway.cycle import Cycle
from gateway.health import DeviceHealth
from gateway.protocols import Connector
from gateway.status import DeviceState, DeviceStatus

__all__ = ["DeviceSupervisor"]

log = logging.getLogger(__name__)


def _raise_if_cancelled(task: asyncio.Task[None]) -> None:
    """Python 3.11's ``asyncio.wait_for`` (inside pymodbus and asyncua) returns a result that
    arrives together with a cancellation and drops the cancellation (fixed in 3.12); the task
    still counts it. Raise it again, or a removed device polls on and a shutdown waits forever."""
    if task.cancelling():
        raise asyncio.CancelledError


class DeviceSupervisor:
    def __init__(
        self,
        connector: Connector,
        health: DeviceHealth,
        backoff: Backoff,
        on_cycle: Callable[[Cycle], None],
        on_status: Callable[[DeviceStatus], None],
    ) -> None:
        self._connector = connector
        self._health = health
        self._backoff = backoff
        self._on_cycle = on_cycle
        self._on_status = on_status
        self._reported = health.status.state

    async def run(self) -> None:
        health = self._health
        status = health.status
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        while True:
            try:
                if await self._connector.start():
                    health.connected()
                async for cycle in self._connector.cycles():
                    health.cycle(cycle, loop.time())
                    self._on_cycle(cycle)
                    del cycle  # not held through the wait for the next (see gateway/cycle.py)
                    if status.state is not DeviceState.OFFLINE:
                        self._backoff.reset()
                    self._report()
                    _raise_if_cancelled(task)
                health.link_down("the connector stopped", loop.time())
            except Exception as exc:  # the supervisor boundary: see module docstring
                health.link_down(str(exc) or type(exc).__name__, loop.time())
            finally:
                await self._connector.stop()
            self._report()
            _raise_if_cancelled(task)
            await asyncio.sleep(self._backoff.next_delay())

    def _report(self) -> None:
        """Publish and log a change of state, once per change."""
        status = self._health.status
        before, now = self._reported, status.state
        if now is before:
            return
        self._reported = now
        if now is DeviceState.ONLINE:
            log.info("device %s: online", status.device)
        else:
            log.warning("device %s: %s: %s", status.device, now.value, status.last_error)
        self._on_status(status)
