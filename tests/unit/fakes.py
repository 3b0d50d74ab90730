"""Test doubles of the two plugin contracts: a scripted connector and a recording sink."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from gateway.cycle import Cycle
from gateway.errors import ConnectorError, RetryableSinkError, SinkError
from gateway.reading import Batch, Quality, Reading
from gateway.status import DeviceStatus


def readings(
    device: str, values: Sequence[float], cycle_ns: int = 0, tag: str = "t"
) -> list[Reading]:
    return [
        Reading(device, f"{tag}{i}", v, Quality.GOOD, cycle_ns, cycle_ns)
        for i, v in enumerate(values)
    ]


def batch(device: str, values: Sequence[float], cycle_ns: int = 0, tag: str = "t") -> Batch:
    return Batch(device, readings(device, values, cycle_ns, tag), cycle_ns)


def cycle(device: str, values: Sequence[float], cycle_ns: int = 0) -> Cycle:
    return Cycle(readings(device, values, cycle_ns), cycle_ns, requests=1)


class FakeSink:
    """Records what it is given; fails as scripted; can be held to simulate a slow server."""

    durable = True

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

    async def publish_device_statuses(self, statuses: Sequence[DeviceStatus]) -> None:
        self.statuses += [(status.device, status.state.value) for status in statuses]

    async def clear_device_status(self, device: str) -> None:
        self.statuses.append((device, "cleared"))


class FakeConnector:
    """Yields ``cycles`` cycles of counting values per start; the first ``fail_starts``
    starts raise ConnectorError, like an unplugged device."""

    def __init__(self, device: str, *, fail_starts: int = 0, cycles: int = 10**9) -> None:
        self.device = device
        self.fail_starts = fail_starts
        self.cycle_count = cycles
        self.starts = self.stops = 0

    async def start(self) -> bool:
        self.starts += 1
        if self.fail_starts:
            self.fail_starts -= 1
            raise ConnectorError(f"cannot connect to {self.device}")
        return True

    async def cycles(self) -> AsyncIterator[Cycle]:
        for number in range(self.cycle_count):
            yield cycle(self.device, [float(number)], cycle_ns=number)
            await asyncio.sleep(0.001)
        raise ConnectorError("connection lost")

    async def stop(self) -> None:
        self.stops += 1


__all__ = ["FakeConnector", "FakeSink", "RetryableSinkError", "SinkError", "batch", "cycle"]
