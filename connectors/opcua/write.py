"""Writing tags: a value of the node's own data type (read once per node and session, then
cached), the status code of the Write reported as it is. A value that does not fit the type
(out of range, not whole, not a number) is refused before anything is sent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.uaerrors import UaError, UaStatusCodeError

from connectors.opcua.values import convert_variant, status_name
from gateway.protocols import TagWrite, WriteOutcome
from gateway.reading import Value

__all__ = ["OpcUaWriter"]

_V = ua.VariantType
_INTEGERS = {
    _V.SByte: (-(2**7), 2**7 - 1),
    _V.Byte: (0, 2**8 - 1),
    _V.Int16: (-(2**15), 2**15 - 1),
    _V.UInt16: (0, 2**16 - 1),
    _V.Int32: (-(2**31), 2**31 - 1),
    _V.UInt32: (0, 2**32 - 1),
    _V.Int64: (-(2**63), 2**63 - 1),
    _V.UInt64: (0, 2**64 - 1),
}
_FLOAT32_MAX = 3.4028234663852886e38


def variant_for(value: Value, variant_type: ua.VariantType) -> ua.Variant:
    """``value`` as a Variant of the node's type; ValueError with the reason if it does not
    fit (never rounded or clipped)."""
    name = variant_type.name
    if variant_type is _V.Boolean:
        if not isinstance(value, bool):
            raise ValueError(f"{value!r} is not true or false (the node is a Boolean)")
        return ua.Variant(value, variant_type)
    if variant_type is _V.String:
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is not a string (the node is a String)")
        return ua.Variant(value, variant_type)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{value!r} is not a number (the node is a {name})")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value} is not a finite number")
    if variant_type in (_V.Float, _V.Double):
        if variant_type is _V.Float and abs(value) > _FLOAT32_MAX:
            raise ValueError(f"{value} is beyond the range of a Float (±3.4e38)")
        return ua.Variant(float(value), variant_type)
    if variant_type in _INTEGERS:
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(
                    f"{value} is not a whole number (the node is a {name}); never rounded"
                )
            value = int(value)
        low, high = _INTEGERS[variant_type]
        if not low <= value <= high:
            raise ValueError(f"{value} is out of the range of a {name}: {low}..{high}")
        return ua.Variant(value, variant_type)
    raise ValueError(f"the node's type {name} cannot be written from the gateway")


class OpcUaWriter:
    def __init__(self) -> None:
        self._types: dict[ua.NodeId, ua.VariantType] = {}

    def forget(self) -> None:
        """A new session: node types are read again (the server may have changed)."""
        self._types.clear()

    async def write(
        self,
        client: Client,
        nodes: Mapping[str, ua.NodeId | str],
        writes: Sequence[TagWrite],
        verify: bool,
    ) -> list[WriteOutcome]:
        """``nodes``: each tag's node on this session, or why it has none."""
        outcomes = []
        for write in writes:
            outcome = await self._write_one(client, nodes.get(write.tag.name), write, verify)
            outcomes.append(outcome)
            if not outcome.written:
                break
        return outcomes

    async def _write_one(
        self, client: Client, node_id: ua.NodeId | str | None, write: TagWrite, verify: bool
    ) -> WriteOutcome:
        outcome = WriteOutcome(write.tag.name, written=False)
        if not isinstance(node_id, ua.NodeId):
            outcome.error = node_id or "the tag's node is not known on this session"
            return outcome
        node = client.get_node(node_id)
        try:
            variant_type = self._types.get(node_id)
            if variant_type is None:
                variant_type = self._types[node_id] = await node.read_data_type_as_variant_type()
            variant = variant_for(write.value, variant_type)
        except ValueError as exc:
            outcome.error = str(exc)
            return outcome
        except UaStatusCodeError as exc:
            outcome.error = f"cannot read the node's data type: {status_name(exc.code)}"
            return outcome
        outcome.method = "opcua Write"
        outcome.raw = f"{variant_type.name} {variant.Value!r}"
        try:
            outcome.before = await _read(node)
            outcome.applied = None
            await node.write_attribute(AttributeIds.Value, ua.DataValue(variant))
        except UaStatusCodeError as exc:
            outcome.applied = False  # the server answered: it did not write
            outcome.error = f"the server refused it: {status_name(exc.code)}"
            return outcome
        except (TimeoutError, OSError, UaError) as exc:
            outcome.error = f"{type(exc).__name__}: {exc}: it may have been applied; not retried"
            return outcome
        outcome.written, outcome.applied = True, True
        if verify:
            try:
                outcome.read_back = await _read(node)
            except (TimeoutError, OSError, UaError) as exc:
                outcome.error = f"written; reading it back failed: {exc}"
        return outcome


async def _read(node: Node) -> Value:
    data = await node.read_data_value(raise_on_bad_status=False)
    if data.Value is None or (data.StatusCode is not None and data.StatusCode.value >> 30):
        return None
    return convert_variant(data.Value)
