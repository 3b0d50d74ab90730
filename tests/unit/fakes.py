"""Test doubles of the two plugin contracts: a scripted connector and a recording sink."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from gateway.errors import ConnectorError, RetryableSinkError, SinkError
from gateway.reading import Batch, Quality, Reading
from gateway.status import DeviceState, DeviceStatus


def batch(device: str, values: Sequence[float], cycle_ns: int = 0, tag: str = "t") -> Batch:
    readings = [
        Reading(device, f"{tag}{i}", v, Quality.GOOD, cycle_ns, cycle_ns)
        for i, v in enumerate(values)
    ]
    return Batch(device, readings, cycle_ns)


class FakeSink:
    """Records what it is given; fails as scripted; can be held to simulate a slow server."""

    def __init__(self, name: str = "fake", failures: Sequence[Exception] = ()) -> None:
        self.name = name
        self.failures = list(failures)
        self.written: list[Batch] = []
        self.attempts = 0
        self.statuses: list[tuple[str, str]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.started = self.stopped = False

    async def start(self) -> None:
        self.started = True

    async def write(self, batches: Sequence[Batch]) -> None:
        self.attempts += 1
        await self.gate.wait()
        if self.failures:
            raise self.failures.pop(0)
        self.written.extend(batches)

    async def stop(self) -> None:
        self.stopped = True

    async def publish_device_status(self, status: DeviceStatus) -> None:
        self.statuses.append((status.device, status.state.value))

    async def clear_device_status(self, device: str) -> None:
        self.statuses.append((device, "cleared"))


class FakeConnector:
    """Yields ``cycles`` batches of counting values per start; the first ``fail_starts``
    starts raise ConnectorError, like an unplugged device."""

    def __init__(self, status: DeviceStatus, *, fail_starts: int = 0, cycles: int = 10**9) -> None:
        self.status = status
        self.fail_starts = fail_starts
        self.cycles = cycles
        self.starts = self.stops = 0

    async def start(self) -> None:
        self.starts += 1
        if self.fail_starts:
            self.fail_starts -= 1
            raise ConnectorError(f"cannot connect to {self.status.device}")

    async def batches(self) -> AsyncIterator[Batch]:
        for cycle in range(self.cycles):
            self.status.state = DeviceState.ONLINE
            self.status.polls += 1
            yield batch(self.status.device, [float(cycle)], cycle_ns=cycle)
            await asyncio.sleep(0.001)
        raise ConnectorError("connection lost")

    async def stop(self) -> None:
        self.stops += 1


__all__ = ["FakeConnector", "FakeSink", "RetryableSinkError", "SinkError", "batch"]
