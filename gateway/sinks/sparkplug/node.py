"""The edge node's Sparkplug state, without MQTT: aliases, ``seq``, which devices are born,
and the payload of every message. The sink publishes what this returns, in that order.

- Aliases are numbered per node in the order metrics are first declared (node metrics, then
  each device's tags in start order), so they are the same after a rebirth and, while the
  configuration is unchanged, after a restart. DATA messages carry aliases only.
- ``seq`` is 0 in NBIRTH and counts every later node and device message modulo 256.
- A device is born (DBIRTH: every metric with its current value) before its first DDATA, again
  when it comes back after its DDEATH, and again when its tags changed or one of them shows a
  value of another type than its birth declared.
- A batch older than the device's birth (the outbox catching up after an outage) is published
  with ``is_historical``: the birth already carried the current values.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from gateway.protocols import DeviceDirectory
from gateway.reading import Batch, Quality, Reading, Value
from gateway.sinks.sparkplug import sparkplug_b_pb2 as pb
from gateway.sinks.sparkplug.metrics import (
    QUALITY_CODES,
    QUALITY_PROPERTIES,
    MetricDef,
    datatype_of,
    metric_def,
    value_from_wire,
)
from gateway.tags import TagBase

__all__ = ["NAMESPACE", "REBIRTH", "Command", "EdgeNode", "Published"]

NAMESPACE = "spBv1.0"
REBIRTH = "Node Control/Rebirth"
BDSEQ = "bdSeq"
_VERSION = "Properties/Gateway version"
_DEVICES = "Properties/Devices"
_NODE = ""
"""The alias table's key for the node's own metrics (device ids are never empty)."""
_GOOD = Quality.GOOD
_GOOD_CODE = QUALITY_CODES[_GOOD]


@dataclass(frozen=True, slots=True)
class Published:
    """One message to publish: QoS 0, never retained (the will is the only other kind)."""

    topic: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Command:
    """What an NCMD or DCMD asked for, in the gateway's words."""

    device: str | None
    """None for the node (NCMD)."""
    values: dict[str, Value]
    """Metric (tag) name → value; for the node only ``Node Control/Rebirth`` is known."""
    problems: list[str]
    """Metrics that were left out, and why."""


@dataclass(slots=True)
class _Device:
    tags: Sequence[TagBase]
    """The tags the birth declared (identity tells a changed configuration)."""
    metrics: dict[str, MetricDef]
    born_ns: int
    """Gateway time of the newest value in the birth: older batches are history."""
    born: bool = True
    not_good: set[str] = field(default_factory=set)
    """Metrics whose last published quality was not good (the next good one says so)."""


class _Redefine(Exception):
    """A batch needs the device born again first (a metric it did not declare, or a value of
    another type)."""


def ms(ns: int) -> int:
    return ns // 1_000_000


class EdgeNode:
    def __init__(self, group_id: str, node_id: str, version: str) -> None:
        self.group_id = group_id
        self.node_id = node_id
        self._version = version
        base = f"{NAMESPACE}/{group_id}"
        self.death_topic = f"{base}/NDEATH/{node_id}"
        self._nbirth = f"{base}/NBIRTH/{node_id}"
        self._ndata = f"{base}/NDATA/{node_id}"
        self._dbirth = f"{base}/DBIRTH/{node_id}/"
        self._ddata = f"{base}/DDATA/{node_id}/"
        self._ddeath = f"{base}/DDEATH/{node_id}/"
        self.command_topics = (f"{base}/NCMD/{node_id}", f"{base}/DCMD/{node_id}/+")
        self._aliases: dict[tuple[str, str], int] = {}
        node_metrics = ((REBIRTH, pb.Boolean), (_VERSION, pb.String), (_DEVICES, pb.UInt32))
        self._node_metrics = {
            name: metric_def(name, self._alias(_NODE, name), datatype)
            for name, datatype in node_metrics
        }
        self._devices: dict[str, _Device] = {}
        self._seq = 0
        self._device_count = -1
        self.skipped_values = 0
        """Values left out: devices no longer running, values no Sparkplug type holds."""

    def _alias(self, owner: str, name: str) -> int:
        alias = self._aliases.get((owner, name))
        if alias is None:
            alias = self._aliases[owner, name] = len(self._aliases) + 1
        return alias

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq = (seq + 1) & 0xFF
        return seq

    def death(self, bdseq: int) -> bytes:
        """The NDEATH payload (the will of the connection that carries ``bdseq``)."""
        payload = pb.Payload(timestamp=ms(time.time_ns()))
        payload.metrics.add(name=BDSEQ, datatype=pb.Int64, long_value=bdseq)
        return payload.SerializeToString()  # type: ignore[no-any-return]

    def node_birth(self, bdseq: int, device_count: int) -> Published:
        """NBIRTH (``seq`` 0): every device must be born again after it."""
        for device in self._devices.values():
            device.born = False
        now = ms(time.time_ns())
        self._seq = 0
        self._device_count = device_count
        payload = pb.Payload(timestamp=now, seq=self._next_seq())
        add = payload.metrics.add
        add(name=BDSEQ, timestamp=now, datatype=pb.Int64, long_value=bdseq)
        values: dict[str, Value] = {REBIRTH: False, _VERSION: self._version, _DEVICES: device_count}
        for name, value in values.items():
            metric = self._node_metrics[name]
            added = add(name=name, alias=metric.alias, timestamp=now, datatype=metric.datatype)
            setattr(added, metric.field, value)
        return Published(self._nbirth, payload.SerializeToString())

    def device_count_changed(self, device_count: int) -> Published | None:
        """NDATA of ``Properties/Devices`` when the number of running devices changed."""
        if device_count == self._device_count:
            return None
        self._device_count = device_count
        now = ms(time.time_ns())
        payload = pb.Payload(timestamp=now)
        metric = self._node_metrics[_DEVICES]
        payload.metrics.add(alias=metric.alias, timestamp=now, int_value=device_count)
        payload.seq = self._next_seq()
        return Published(self._ndata, payload.SerializeToString())

    def born(self, device: str) -> bool:
        state = self._devices.get(device)
        return state is not None and state.born

    def device_birth(
        self, device: str, tags: Sequence[TagBase], current: Iterable[Reading]
    ) -> Published:
        """DBIRTH: every tag with a known type, with its current value and quality."""
        latest = {reading.tag: reading for reading in current}
        now = ms(time.time_ns())
        payload = pb.Payload(timestamp=now)
        add = payload.metrics.add
        metrics: dict[str, MetricDef] = {}
        born_ns = 0
        for tag in tags:
            reading = latest.get(tag.name)
            value = None if reading is None else reading.value
            datatype = datatype_of(tag.value_type, value)
            if datatype is None:
                continue  # no type known before a first value: declared in a later birth
            alias = self._alias(device, tag.name)
            metric = metrics[tag.name] = metric_def(tag.name, alias, datatype)
            added = add(name=tag.name, alias=metric.alias, datatype=datatype)
            if reading is None:
                added.timestamp = now
                added.is_null = True
                continue
            born_ns = max(born_ns, reading.received_ns)
            added.timestamp = ms(reading.source_ns)
            added.properties.CopyFrom(QUALITY_PROPERTIES[QUALITY_CODES[reading.quality]])
            if value is None:
                added.is_null = True
            else:
                try:
                    setattr(added, metric.field, _wire(metric, value))
                except (TypeError, ValueError, OverflowError, struct.error):
                    added.ClearField(metric.field)
                    added.is_null = True
        payload.seq = self._next_seq()
        state = _Device(tags, metrics, born_ns)
        state.not_good = {
            name for name, r in latest.items() if name in metrics and r.quality is not _GOOD
        }
        self._devices[device] = state
        return Published(self._dbirth + device, payload.SerializeToString())

    def device_death(self, device: str) -> Published | None:
        """DDEATH, if the device is born (None otherwise: nothing to retract)."""
        state = self._devices.get(device)
        if state is None or not state.born:
            return None
        state.born = False
        payload = pb.Payload(timestamp=ms(time.time_ns()), seq=self._next_seq())
        return Published(self._ddeath + device, payload.SerializeToString())

    def forget(self, device: str) -> None:
        """A device that no longer runs; its aliases stay reserved (it may come back)."""
        self._devices.pop(device, None)

    def device_data(self, batch: Batch, directory: DeviceDirectory) -> list[Published]:
        """DDATA of one batch, preceded by a DBIRTH when the device needs one; nothing for a
        batch of events alone (Sparkplug B has no events: they go to the other sinks)."""
        if not batch.readings:
            return []
        device = batch.device
        tags = directory.tags_of(device)
        if tags is None:
            self.skipped_values += len(batch.readings)
            return []
        out: list[Published] = []
        state = self._devices.get(device)
        if state is None or not state.born or state.tags is not tags:
            out.append(self.device_birth(device, tags, _merged(directory.current(device), batch)))
        try:
            out.append(self._data(batch, self._devices[device]))
        except _Redefine:
            out.append(self.device_birth(device, tags, _merged(directory.current(device), batch)))
            out.append(self._data(batch, self._devices[device], strict=False))
        return out

    def values_now(self, device: str, values: Mapping[str, Value]) -> Published | None:
        """DDATA of values just written to a born device (a DCMD's outcome)."""
        state = self._devices.get(device)
        if state is None or not state.born:
            return None
        now = time.time_ns()
        readings = [
            Reading(device, name, value, _GOOD, now, now)
            for name, value in values.items()
            if name in state.metrics
        ]
        if not readings:
            return None
        return self._data(Batch(device, readings, now), state, strict=False)

    def _data(self, batch: Batch, state: _Device, strict: bool = True) -> Published:
        """The DDATA payload. Strict: a metric not declared or a value of another type raises
        _Redefine; otherwise such values are left out and counted."""
        payload = pb.Payload(timestamp=ms(batch.cycle_ns))
        add = payload.metrics.add
        metrics = state.metrics
        not_good = state.not_good
        historical = bool(batch.readings) and batch.readings[0].received_ns < state.born_ns
        last_ns, stamp = -1, 0
        for reading in batch.readings:
            metric = metrics.get(reading.tag)
            if metric is None:
                if strict:
                    raise _Redefine
                self.skipped_values += 1
                continue
            if reading.source_ns != last_ns:
                last_ns = reading.source_ns
                stamp = last_ns // 1_000_000
            value = reading.value
            added = add(alias=metric.alias, timestamp=stamp)
            try:
                if value is None:
                    added.is_null = True
                elif metric.to_wire is None:
                    setattr(added, metric.field, value)
                else:
                    setattr(added, metric.field, metric.to_wire(value))
            except (TypeError, ValueError, OverflowError, AttributeError, struct.error):
                if strict:
                    raise _Redefine from None
                del payload.metrics[-1]
                self.skipped_values += 1
                continue
            if historical:
                added.is_historical = True
                if reading.quality is not _GOOD:
                    added.properties.CopyFrom(QUALITY_PROPERTIES[QUALITY_CODES[reading.quality]])
            elif reading.quality is not _GOOD:
                added.properties.CopyFrom(QUALITY_PROPERTIES[QUALITY_CODES[reading.quality]])
                not_good.add(reading.tag)
            elif not_good and reading.tag in not_good:
                added.properties.CopyFrom(QUALITY_PROPERTIES[_GOOD_CODE])
                not_good.discard(reading.tag)
        payload.seq = self._next_seq()
        return Published(self._ddata + batch.device, payload.SerializeToString())

    def command(self, topic: str, data: bytes) -> Command:
        """Decode an NCMD or DCMD. ValueError if it is not one of ours or not a payload."""
        parts = topic.split("/")
        if len(parts) not in (4, 5) or parts[2] not in ("NCMD", "DCMD"):
            raise ValueError(f"not a command topic: {topic}")
        device = parts[4] if len(parts) == 5 else None
        try:
            payload = pb.Payload.FromString(data)
        except Exception as exc:  # protobuf's DecodeError is not exported under one name
            raise ValueError(f"not a Sparkplug B payload: {exc}") from exc
        if device is None:
            known = self._node_metrics
        else:
            state = self._devices.get(device)
            known = {} if state is None else state.metrics
        by_alias = {metric.alias: metric for metric in known.values()}
        values: dict[str, Value] = {}
        problems: list[str] = []
        for metric in payload.metrics:
            target = known.get(metric.name) if metric.name else by_alias.get(metric.alias)
            label = metric.name or f"alias {metric.alias}"
            if target is None:
                problems.append(f"{label}: not a metric of {device or 'the node'}")
                continue
            try:
                values[target.name] = value_from_wire(metric, target.datatype)
            except ValueError as exc:
                problems.append(f"{label}: {exc}")
        return Command(device, values, problems)


def _wire(metric: MetricDef, value: Value) -> object:
    return value if metric.to_wire is None else metric.to_wire(value)


def _merged(current: Mapping[str, Reading], batch: Batch) -> list[Reading]:
    """The device's latest readings, with the batch's where they are newer (the local store
    may not have taken the batch yet)."""
    latest = dict(current)
    for reading in batch.readings:
        known = latest.get(reading.tag)
        if known is None or reading.received_ns >= known.received_ns:
            latest[reading.tag] = reading
    return list(latest.values())
