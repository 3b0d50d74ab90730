"""The two plugin contracts: a connector produces batches, a sink consumes them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol, runtime_checkable

from gateway.reading import Batch
from gateway.status import DeviceStatus

__all__ = ["Connector", "Sink", "StatusPublisher"]


class Connector(Protocol):
    """One device's link to the gateway. Polling and subscriptions look the same from here."""

    async def start(self) -> None:
        """Connect; raise ConnectorError if the device cannot be reached."""

    def batches(self) -> AsyncIterator[Batch]:
        """Yield one batch per poll cycle (or notification) until stopped.

        Raises ConnectorError when the connection is lost; the supervisor restarts it.
        """
        ...

    async def stop(self) -> None:
        """Disconnect. Idempotent and bounded in time; nothing is yielded afterwards."""


class Sink(Protocol):
    """A destination for readings. Never buffers or retries: the runtime does that."""

    name: str

    async def start(self) -> None: ...

    async def write(self, batches: Sequence[Batch]) -> None:
        """Deliver every batch or raise: RetryableSinkError to get them again later,
        SinkError if retrying cannot help."""

    async def stop(self) -> None: ...


@runtime_checkable
class StatusPublisher(Protocol):
    """Sinks that can also carry availability (the MQTT sink's retained status topics)."""

    async def publish_device_status(self, status: DeviceStatus) -> None: ...

    async def clear_device_status(self, device: str) -> None: ...
