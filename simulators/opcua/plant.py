"""The simulated line's address space and its values: pure functions of a tick, so tests can
compute exactly what the simulator serves (``expected_value(path, tick)``).

Every variable lives under ``Objects/Plant`` in the namespace ``NAMESPACE``; its string node id
is its path below Plant joined with dots (``ns=<idx>;s=Line1.Filler.Speed``) and each browse
name is qualified with the same namespace.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from asyncua import ua

__all__ = [
    "BATCH_TICKS",
    "BULK_FOLDER",
    "DATETIME_EPOCH",
    "NAMESPACE",
    "STATES",
    "VARIABLES",
    "Variable",
    "batch_id",
    "bulk_value",
    "expected_value",
    "variable",
]

NAMESPACE = "urn:edge-gateway:opcua-sim"
DATETIME_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
STATES = ("idle", "running", "fault", "maintenance")
BATCH_TICKS = 100
"""Line1's batch changes every this many ticks (``Line1/Filler/BatchId``, the batch events)."""
BULK_FOLDER = "Bulk"
"""``--nodes N`` adds ``Plant/Bulk/V00000`` .. ``V{N-1}``: Double, ``bulk_value(i, tick)``."""

VT = ua.VariantType


@dataclass(frozen=True, slots=True)
class Variable:
    """One variable of the line: where it is, its type, and its value at a tick."""

    path: tuple[str, ...]
    """Below ``Plant``, e.g. ``("Line1", "Filler", "Speed")``."""
    variant_type: ua.VariantType
    value: Callable[[int], Any]
    dynamic: bool = True
    """False: written once at start (and then only by clients, if writable)."""
    writable: bool = False
    status: str = "Good"
    """The StatusCode name served with the value (a Bad status serves no value)."""
    array: bool = False

    @property
    def node_id(self) -> str:
        """The identifier of its string node id."""
        return ".".join(self.path)


def _state(tick: int) -> int:
    return (tick // 50) % 4


def batch_id(tick: int) -> str:
    """The batch Line1 fills at ``tick``: ``B000000``, then ``B000001`` from tick 100..."""
    return f"B{tick // BATCH_TICKS:06d}"


def _const(value: Any) -> Callable[[int], Any]:
    return lambda _tick: value


VARIABLES: tuple[Variable, ...] = (
    # The filler: every built-in scalar type the gateway maps, and an array.
    Variable(("Line1", "Filler", "State"), VT.Int32, _state),
    Variable(("Line1", "Filler", "Running"), VT.Boolean, lambda t: t % 2 == 0),
    Variable(("Line1", "Filler", "Counter"), VT.UInt32, lambda t: t),
    Variable(("Line1", "Filler", "TotalCount"), VT.UInt64, lambda t: 10**15 + t),
    Variable(("Line1", "Filler", "Offset"), VT.Int64, lambda t: -(10**12) - t),
    Variable(("Line1", "Filler", "Speed"), VT.Double, lambda t: 100.0 + 10.0 * math.sin(t / 10)),
    Variable(("Line1", "Filler", "Temperature"), VT.Float, lambda t: 60.0 + 5.0 * math.sin(t / 20)),
    Variable(
        ("Line1", "Filler", "Setpoint"), VT.Double, _const(42.5), dynamic=False, writable=True
    ),
    Variable(("Line1", "Filler", "BatchId"), VT.String, batch_id),
    Variable(
        ("Line1", "Filler", "LastChange"),
        VT.DateTime,
        lambda t: DATETIME_EPOCH + timedelta(seconds=t),
    ),
    Variable(("Line1", "Filler", "Recipe"), VT.ByteString, lambda t: bytes([t % 256, 0xCA, 0xFE])),
    Variable(
        ("Line1", "Filler", "Label"),
        VT.LocalizedText,
        lambda t: ua.LocalizedText(STATES[_state(t)], "en"),
    ),
    Variable(
        ("Line1", "Filler", "Levels"),
        VT.Double,
        lambda t: [float(t % 10 + i) for i in range(4)],
        array=True,
    ),
    # The capper: the small integer types, a boolean array, and an uncertain sensor.
    Variable(("Line1", "Capper", "Torque"), VT.Float, lambda t: 2.5 + (t % 5) * 0.125),
    Variable(("Line1", "Capper", "Caps"), VT.UInt16, lambda t: t % 65536),
    Variable(("Line1", "Capper", "Heads"), VT.Byte, lambda t: t % 256),
    Variable(("Line1", "Capper", "Trim"), VT.SByte, lambda t: t % 256 - 128),
    Variable(("Line1", "Capper", "Ratio"), VT.Int16, lambda t: -(t % 30000)),
    Variable(
        ("Line1", "Capper", "Flags"),
        VT.Boolean,
        lambda t: [t % 2 == 0, t % 3 == 0, t % 5 == 0],
        array=True,
    ),
    Variable(
        ("Line1", "Capper", "Names"),
        VT.String,
        _const(["cap-a", "cap-b"]),
        dynamic=False,
        array=True,
    ),
    Variable(
        ("Line1", "Capper", "TorqueSensor"),
        VT.Double,
        _const(1.25),
        dynamic=False,
        status="UncertainSensorNotAccurate",
    ),
    # The conveyor: a writable setpoint and a broken encoder.
    Variable(
        ("Line1", "Conveyor", "SpeedSetpoint"), VT.Float, _const(1.5), dynamic=False, writable=True
    ),
    Variable(("Line1", "Conveyor", "Position"), VT.Int32, lambda t: t * 7 - 1000),
    Variable(("Line1", "Conveyor", "Running"), VT.Boolean, _const(True), dynamic=False),
    Variable(
        ("Line1", "Conveyor", "Encoder"),
        VT.Double,
        _const(0.0),
        dynamic=False,
        status="BadSensorFailure",
    ),
    # Changed by the method Line1/Reset().
    Variable(("Line1", "ResetCount"), VT.UInt32, _const(0), dynamic=False),
)

_BY_NODE_ID = {v.node_id: v for v in VARIABLES}


def variable(node_id: str) -> Variable:
    """The variable whose string node id is ``node_id`` (e.g. ``Line1.Filler.Speed``)."""
    return _BY_NODE_ID[node_id]


def expected_value(node_id: str, tick: int) -> Any:
    """What the simulator serves for ``node_id`` at ``tick``, before any client write.

    Floats are as Python computes them; a Float (32-bit) variable arrives rounded to float32.
    """
    return _BY_NODE_ID[node_id].value(tick)


def bulk_value(index: int, tick: int) -> float:
    """The value of bulk variable ``index`` at ``tick``."""
    return float(tick + index)
