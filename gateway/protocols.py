"""The plugin contracts: a connector reports cycles, a sink consumes batches.

Optional capabilities are explicit Protocols, checked with ``isinstance``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from gateway.cycle import Cycle
from gateway.reading import Batch, Reading, Value
from gateway.status import DeviceStatus
from gateway.tags import TagBase

__all__ = [
    "CarriesConfig",
    "Command",
    "CommandHandler",
    "ConfigHandler",
    "Connectable",
    "Connector",
    "CountsRejections",
    "DescribesDevices",
    "DeviceDirectory",
    "HandlesConditions",
    "HasBackgroundTasks",
    "Sink",
    "StatusPublisher",
    "TagWrite",
    "TakesCommands",
    "WriteOutcome",
    "Writer",
]


class Connector(Protocol):
    """One device's link to the gateway. Polling and subscriptions look the same from here."""

    async def start(self) -> bool:
        """Connect; raise ConnectorError if the device cannot be reached. True when this
        opened a connection, False when it joined one already open (a link shared by several
        devices)."""

    def cycles(self) -> AsyncIterator[Cycle]:
        """Yield one cycle per poll of a group (or per notification) until stopped.

        Raises ConnectorError when the connection is lost; the supervisor restarts it. The
        connector reports what happened; the runtime decides the device's state.
        """
        ...

    async def stop(self) -> None:
        """Disconnect. Idempotent and bounded in time; nothing is yielded afterwards."""


class Sink(Protocol):
    """A destination for readings. Never buffers or retries: the runtime does that."""

    name: str
    """The user's name for this sink (its key under ``sinks``): keys buffers, metrics and the
    outbox, so two sinks of one type coexist."""
    durable: bool
    """Whether batches reach it through the durable outbox (False: what it shows is about
    now and lives in this process)."""

    async def start(self) -> None: ...

    async def write(self, batches: Sequence[Batch]) -> None:
        """Deliver every batch or raise: RetryableSinkError to get them again later,
        SinkError if retrying cannot help."""

    async def stop(self) -> None: ...


@runtime_checkable
class StatusPublisher(Protocol):
    """Sinks that also carry availability (the MQTT sink's retained status topics)."""

    async def publish_device_statuses(self, statuses: Sequence[DeviceStatus]) -> None:
        """Publish them all and return when all are confirmed (one round trip, not one per
        device)."""

    async def clear_device_status(self, device: str) -> None: ...


@runtime_checkable
class HasBackgroundTasks(Protocol):
    """Sinks with work of their own while they run (the local store flushes its history):
    the runtime runs each as a core task, restarted if it dies, shown in /healthz."""

    def background_tasks(self) -> Mapping[str, Callable[[], Awaitable[None]]]: ...


@runtime_checkable
class Connectable(Protocol):
    """Sinks with a connection of their own; /readyz reports them not ready while it is down."""

    @property
    def connected(self) -> bool: ...


@runtime_checkable
class CountsRejections(Protocol):
    """Sinks that can refuse single points or values (a database's partial writes)."""

    @property
    def rejected_points(self) -> int:
        """Points the server refused in partial writes."""

    @property
    def skipped_values(self) -> int:
        """Values the sink cannot represent (NaN, infinity, arrays)."""


@dataclass(frozen=True, slots=True)
class TagWrite:
    """One value to set, in engineering units, already allowed by the gateway's policy."""

    tag: TagBase
    value: Value


@dataclass(slots=True)
class WriteOutcome:
    """What happened to one ``TagWrite``, for the caller and the audit."""

    tag: str
    written: bool
    """The device confirmed the write."""
    error: str | None = None
    applied: bool | None = False
    """Whether the device may have applied it: False when it answered that it did not (an
    exception, a bad status, a refused encoding), None when unknown (no answer in time)."""
    raw: str | None = None
    """What went on the wire: registers, bits or the OPC UA variant."""
    method: str | None = None
    """How: the Modbus function (FC5, FC16, FC22 mask write, read-modify-write) or OPC UA."""
    before: Value = None
    read_back: Value = None


@runtime_checkable
class Writer(Protocol):
    """Connectors that can set values on their device. Writes go through the device's link
    in turn with its polls; each value is sent once (never retried unless the device said it
    did not happen); a value that does not fit its tag is refused (``applied`` False)."""

    async def write(self, writes: Sequence[TagWrite], verify: bool) -> list[WriteOutcome]:
        """Apply ``writes`` in order, stopping at the first that fails (the rest are not
        attempted and not returned); with ``verify``, read each value back."""
        ...


@runtime_checkable
class HandlesConditions(Protocol):
    """Connectors whose device raises alarms (OPC UA conditions) that can be acknowledged or
    confirmed. The gateway's write policy and audit apply as to writes."""

    async def answer_condition(
        self, condition_id: str, event_id: str, action: str, comment: str
    ) -> WriteOutcome:
        """``action`` "acknowledge" or "confirm" the occurrence ``event_id`` (hex) of the
        condition ``condition_id`` (a node id); the outcome's ``tag`` is the condition id,
        ``written`` whether the device accepted it, ``error`` its status if not."""
        ...


@dataclass(frozen=True, slots=True)
class Command:
    """A request to set values that arrived through a sink (MQTT ``.../{device}/set``)."""

    device: str
    payload: bytes
    origin: str
    """Where it came from, for the audit (``mqtt:<topic>``)."""


CommandHandler = Callable[[Command], Awaitable[bytes]]
"""Carries out a command and answers with the reply's payload."""


@runtime_checkable
class TakesCommands(Protocol):
    """Sinks that can also receive commands (the MQTT sink's set topics). The runtime hands
    them the handler when commands are on (``writes.mqtt``); a sink answers each command with
    the handler's reply."""

    def take_commands(self, handler: CommandHandler) -> None: ...


ConfigHandler = Callable[[bytes], Awaitable[bytes | None]]
"""Takes a desired configuration document; answers the report to publish (None: none)."""


@runtime_checkable
class CarriesConfig(Protocol):
    """Sinks that can bring this gateway a desired configuration and carry its report back
    (the MQTT sink: ``{prefix}/{gateway}/config/desired`` and ``.../reported``, retained)."""

    @property
    def name(self) -> str: ...

    def carry_config(self, handler: ConfigHandler) -> None: ...


class DeviceDirectory(Protocol):
    """What the gateway knows of its running devices now, for sinks that describe them."""

    def running(self) -> Sequence[str]:
        """The running devices' ids, in the order they started."""
        ...

    def tags_of(self, device: str) -> Sequence[TagBase] | None:
        """The device's tags (None: not running). The same object until the device's
        configuration changes, so a sink can tell a changed device by identity."""

    def current(self, device: str) -> Mapping[str, Reading]:
        """The latest reading of each of the device's tags (empty before its first values)."""
        ...


@runtime_checkable
class DescribesDevices(Protocol):
    """Sinks that declare each device, its tags and their current values before its data
    (Sparkplug's births). The gateway hands them its directory before it starts them."""

    def use_directory(self, directory: DeviceDirectory) -> None: ...
