"""Events of the simulated plant: the high-temperature alarm of Boiler1 (a condition that can be
acknowledged and confirmed) and the batch events of Line1, both on a schedule of the tick.

asyncua's server emits events and answers ConditionRefresh (``bind_condition_methods``) from the
conditions it saw with Retain set, but has no Acknowledge or Confirm: :class:`BoilerAlarm` links
its own handlers to those methods of AcknowledgeableConditionType, which clients call with the
condition's node as ObjectId.

Boiler1 sits in ``Objects/Utilities``, beside Plant rather than in it, so that the line's
variables (what ``VARIABLES`` lists and ``gateway browse`` of Plant finds) stay the same, and
deeper than Plant/Line1, so that a browse of Objects two levels deep still finds no variable.
"""

from __future__ import annotations

import logging

from asyncua import ua
from asyncua.common.node import Node
from asyncua.server.event_generator import EventGenerator
from asyncua.server.server import Server
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes

from simulators.opcua.plant import batch_id

__all__ = [
    "ACTIVE_SEVERITY",
    "BATCH_SEVERITY",
    "HIGH_LIMIT",
    "HOT",
    "NORMAL",
    "NORMAL_SEVERITY",
    "BatchEvents",
    "BoilerAlarm",
    "alarm_active",
]

logger = logging.getLogger(__name__)

HIGH_LIMIT = 90.0
HOT = 92.5
"""Boiler1/Temperature while the alarm is active, °C."""
NORMAL = 75.0
ACTIVE_SEVERITY = 700
NORMAL_SEVERITY = 200
BATCH_SEVERITY = 100


def alarm_active(elapsed: float, alarm_period: float) -> bool:
    """The alarm is active for ``alarm_period`` seconds from the start, then normal as long,
    and so on: a freshly started simulator has an active, unacknowledged alarm."""
    return int(elapsed // alarm_period) % 2 == 0


def _node(identifier: str, namespace: int) -> ua.NodeId:
    return ua.NodeId(ua.String(identifier), ua.Int16(namespace))


def _state(event: object, name: str, value: bool, true: str, false: str) -> None:
    """A two-state variable of a condition event: its text and its ``Id``."""
    setattr(event, name, ua.LocalizedText(true if value else false))
    setattr(event, f"{name}/Id", value)


class BoilerAlarm:
    """``Boiler1/Temperature`` and its ExclusiveLevelAlarmType condition
    ``Boiler1/TemperatureHigh``, emitted with the Server object as notifier."""

    def __init__(self, server: Server, namespace: int, alarm_period: float) -> None:
        self._server = server
        self._namespace = namespace
        self._period = alarm_period
        self.condition_id = _node("Boiler1.TemperatureHigh", namespace)
        self._temperature: Node | None = None
        self._generator: EventGenerator | None = None
        self._active = False
        self._acked = True
        self._confirmed = True
        self._message = ""
        self._event_id = b""
        """The EventId of the condition's latest event: what Acknowledge and Confirm must name."""

    async def build(self, objects: Node) -> None:
        """Add the nodes, link the methods, and emit the state at tick 0."""
        idx, server = self._namespace, self._server
        utilities = await objects.add_folder(
            _node("Utilities", idx), ua.QualifiedName("Utilities", idx)
        )
        boiler = await utilities.add_object(_node("Boiler1", idx), ua.QualifiedName("Boiler1", idx))
        self._temperature = await boiler.add_variable(
            _node("Boiler1.Temperature", idx),
            ua.QualifiedName("Temperature", idx),
            ua.Variant(NORMAL, ua.VariantType.Double),
        )
        await boiler.add_object(
            self.condition_id,
            ua.QualifiedName("TemperatureHigh", idx),
            objecttype=ObjectIds.ExclusiveLevelAlarmType,
        )
        generator = await server.get_event_generator(
            ObjectIds.ExclusiveLevelAlarmType, ObjectIds.Server
        )
        event = generator.event
        event.NodeId = self.condition_id  # ConditionId: what ConditionRefresh keys conditions by
        event.SourceNode = self._temperature.nodeid
        event.SourceName = "Boiler1.Temperature"
        event.ConditionName = "TemperatureHigh"
        event.InputNode = self._temperature.nodeid
        event.HighLimit = HIGH_LIMIT
        _state(event, "EnabledState", True, "Enabled", "Disabled")
        self._generator = generator
        methods = (
            (ObjectIds.AcknowledgeableConditionType_Acknowledge, self._acknowledge),
            (ObjectIds.AcknowledgeableConditionType_Confirm, self._confirm),
        )
        for method, handler in methods:
            server.link_method(server.get_node(ua.NodeId(ua.Int32(method))), handler)
        await self.tick(0.0)

    async def tick(self, elapsed: float) -> None:
        """Go active or back to normal when the schedule says so."""
        active = alarm_active(elapsed, self._period)
        if active == self._active:
            return
        assert self._temperature is not None
        self._active = active
        value = HOT if active else NORMAL
        await self._temperature.write_value(ua.Variant(value, ua.VariantType.Double))
        if active:
            self._acked = self._confirmed = False
            self._message = f"Temperature high: {value:.1f} °C (limit {HIGH_LIMIT:.1f} °C)"
        else:
            self._message = f"Temperature back to normal: {value:.1f} °C"
        await self._emit("")

    async def _emit(self, comment: str) -> None:
        generator = self._generator
        assert generator is not None
        event = generator.event
        event.Severity = ACTIVE_SEVERITY if self._active else NORMAL_SEVERITY
        _state(event, "ActiveState", self._active, "Active", "Inactive")
        _state(event, "AckedState", self._acked, "Acknowledged", "Unacknowledged")
        _state(event, "ConfirmedState", self._confirmed, "Confirmed", "Unconfirmed")
        event.Retain = self._active or not self._acked or not self._confirmed
        event.Comment = ua.LocalizedText(comment)
        await generator.trigger(message=self._message)
        self._event_id = event.EventId.Value
        logger.info("alarm %s: %s (event %s)", event.ConditionName, self._message, self._event_id)

    def _check(self, parent: ua.NodeId, args: tuple[ua.Variant, ...]) -> int:
        """The status to answer before acting, Good (0) if the call names the latest event."""
        if parent != self.condition_id:
            return StatusCodes.BadNodeIdInvalid
        if len(args) < 2:
            return StatusCodes.BadArgumentsMissing
        if len(args) > 2:
            return StatusCodes.BadTooManyArguments
        if args[0].Value != self._event_id:
            return StatusCodes.BadEventIdUnknown
        return StatusCodes.Good

    @staticmethod
    def _comment(arg: ua.Variant) -> str:
        value = arg.Value
        if isinstance(value, ua.LocalizedText):
            return value.Text or ""
        return str(value or "")

    async def _acknowledge(self, parent: ua.NodeId, *args: ua.Variant) -> ua.StatusCode:
        """AcknowledgeableConditionType.Acknowledge(EventId, Comment)."""
        status = self._check(parent, args)
        if status == StatusCodes.Good and self._acked:
            status = StatusCodes.BadConditionBranchAlreadyAcked
        if status == StatusCodes.Good:
            self._acked = True
            await self._emit(self._comment(args[1]))
        return ua.StatusCode(ua.UInt32(status))

    async def _confirm(self, parent: ua.NodeId, *args: ua.Variant) -> ua.StatusCode:
        """AcknowledgeableConditionType.Confirm(EventId, Comment)."""
        status = self._check(parent, args)
        if status == StatusCodes.Good and self._confirmed:
            status = StatusCodes.BadConditionBranchAlreadyConfirmed
        if status == StatusCodes.Good:
            self._confirmed = True
            await self._emit(self._comment(args[1]))
        return ua.StatusCode(ua.UInt32(status))


class BatchEvents:
    """A ``BatchEventType`` event (a BaseEventType with a BatchId) when Line1's batch ends and
    when the next one starts: whenever ``batch_id(tick)`` changes."""

    def __init__(self, server: Server, namespace: int) -> None:
        self._server = server
        self._namespace = namespace
        self._generator: EventGenerator | None = None
        self._batch = ""

    async def build(self) -> None:
        idx = self._namespace
        base = self._server.get_node(ua.NodeId(ua.Int32(ObjectIds.BaseEventType)))
        batch_type = await base.add_object_type(
            _node("BatchEventType", idx), ua.QualifiedName("BatchEventType", idx)
        )
        await batch_type.add_property(
            _node("BatchEventType.BatchId", idx),
            ua.QualifiedName("BatchId", idx),
            ua.Variant("", ua.VariantType.String),
        )
        generator = await self._server.get_event_generator(batch_type, ObjectIds.Server)
        generator.event.SourceNode = _node("Line1", idx)
        generator.event.SourceName = "Line1"
        generator.event.Severity = BATCH_SEVERITY
        self._generator = generator
        self._batch = batch_id(0)

    async def tick(self, tick: int) -> None:
        batch = batch_id(tick)
        if batch == self._batch:
            return
        generator = self._generator
        assert generator is not None
        ended, self._batch = self._batch, batch
        for current, message in (
            (ended, f"Batch {ended} ended"),
            (batch, f"Batch {batch} started"),
        ):
            generator.event.BatchId = current
            await generator.trigger(message=message)
