"""The edge node's Sparkplug state without MQTT: births, aliases, seq, history, commands."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from connectors.modbus.config import ModbusTag
from gateway.events import Event
from gateway.reading import Batch, Quality, Reading, Value
from gateway.sinks.sparkplug import sparkplug_b_pb2 as pb
from gateway.sinks.sparkplug.node import REBIRTH, EdgeNode, Published
from gateway.tags import TagBase


class Directory:
    """A fake of the gateway's device directory."""

    def __init__(self) -> None:
        self.tags: dict[str, tuple[TagBase, ...]] = {}
        self.latest: dict[str, dict[str, Reading]] = {}

    def running(self) -> Sequence[str]:
        return list(self.tags)

    def tags_of(self, device: str) -> Sequence[TagBase] | None:
        return self.tags.get(device)

    def current(self, device: str) -> Mapping[str, Reading]:
        return self.latest.get(device, {})


def tag(name: str, data_type: str = "int16", scale: float = 1.0) -> ModbusTag:
    return ModbusTag(name=name, address=0, data_type=data_type, scale=scale)  # type: ignore[arg-type]


class OpcTag(TagBase):
    """A tag whose type is learned from its values (as OPC UA's)."""


def batch(device: str, values: dict[str, Value], at: int, quality: Quality = Quality.GOOD) -> Batch:
    readings = [Reading(device, k, v, quality, at, at) for k, v in values.items()]
    return Batch(device, readings, at)


def decode(message: Published) -> pb.Payload:
    payload: pb.Payload = pb.Payload.FromString(message.payload)
    return payload


def kind(message: Published) -> str:
    return message.topic.split("/")[2]


@pytest.fixture
def setup() -> tuple[EdgeNode, Directory]:
    directory = Directory()
    directory.tags["press"] = (tag("temp"), tag("speed", "float32"), tag("level", scale=0.1))
    return EdgeNode("plant", "gw1", "1.2.3"), directory


def test_nbirth_carries_bdseq_rebirth_and_node_properties(
    setup: tuple[EdgeNode, Directory],
) -> None:
    node, _ = setup
    birth = decode(node.node_birth(7, 3))
    assert birth.seq == 0
    metrics = {m.name: m for m in birth.metrics}
    assert metrics["bdSeq"].long_value == 7 and metrics["bdSeq"].datatype == pb.Int64
    assert metrics[REBIRTH].datatype == pb.Boolean and metrics[REBIRTH].boolean_value is False
    assert metrics["Properties/Gateway version"].string_value == "1.2.3"
    assert metrics["Properties/Devices"].int_value == 3
    death = pb.Payload.FromString(node.death(7))
    assert [(m.name, m.long_value) for m in death.metrics] == [("bdSeq", 7)]
    assert not death.HasField("seq")


def test_first_data_is_preceded_by_a_full_birth_with_aliases_only_in_data(
    setup: tuple[EdgeNode, Directory],
) -> None:
    node, directory = setup
    node.node_birth(0, 1)
    out = node.device_data(
        batch("press", {"temp": -5, "speed": 1.5, "level": 12.5}, 10**9), directory
    )
    assert [kind(m) for m in out] == ["DBIRTH", "DDATA"]
    birth, data = decode(out[0]), decode(out[1])
    assert (birth.seq, data.seq) == (1, 2)
    declared = {m.alias: m for m in birth.metrics}
    assert {m.name: m.datatype for m in birth.metrics} == {
        "temp": pb.Int16,
        "speed": pb.Float,
        "level": pb.Double,
    }
    assert len(declared) == 3 and all(m.properties.keys == ["Quality"] for m in birth.metrics)
    assert all(not m.name and m.alias in declared for m in data.metrics)
    temp = next(m for m in data.metrics if declared[m.alias].name == "temp")
    assert temp.int_value == 2**32 - 5  # Int16 -5 as its two's complement in a uint32
    assert not any(m.is_historical for m in data.metrics)
    # Born now: the next batch is DDATA alone.
    again = node.device_data(batch("press", {"temp": 6}, 2 * 10**9), directory)
    assert [kind(m) for m in again] == ["DDATA"] and decode(again[0]).seq == 3


def test_aliases_are_stable_across_rebirth_and_unique_per_node(
    setup: tuple[EdgeNode, Directory],
) -> None:
    node, directory = setup
    directory.tags["oven"] = (tag("temp"), tag("door", "uint32"))
    node.node_birth(0, 2)
    first = [
        decode(node.device_data(batch(d, {"temp": 1}, 1), directory)[0]) for d in ("press", "oven")
    ]
    node.node_birth(1, 2)
    second = [
        decode(node.device_data(batch(d, {"temp": 1}, 2), directory)[0]) for d in ("press", "oven")
    ]
    aliases = [[(m.name, m.alias) for m in p.metrics] for p in first]
    assert aliases == [[(m.name, m.alias) for m in p.metrics] for p in second]
    everything = [alias for device in aliases for _, alias in device]
    node_aliases = [m.alias for m in decode(node.node_birth(2, 2)).metrics if m.name != "bdSeq"]
    assert len(set(everything + node_aliases)) == len(everything + node_aliases)


def test_seq_wraps_after_255(setup: tuple[EdgeNode, Directory]) -> None:
    node, directory = setup
    node.node_birth(0, 1)
    seqs = [
        decode(m).seq
        for i in range(300)
        for m in node.device_data(batch("press", {"temp": i % 100}, i + 1), directory)
    ]
    assert seqs[:3] == [1, 2, 3] and seqs[254:258] == [255, 0, 1, 2]


def test_older_batches_than_the_birth_are_historical(setup: tuple[EdgeNode, Directory]) -> None:
    node, directory = setup
    directory.latest["press"] = {"temp": Reading("press", "temp", 9, Quality.GOOD, 50, 50)}
    node.node_birth(0, 1)
    out = node.device_data(batch("press", {"temp": 3}, 10), directory)  # replayed from the outbox
    assert [kind(m) for m in out] == ["DBIRTH", "DDATA"]
    birth = {m.name: m for m in decode(out[0]).metrics}
    assert birth["temp"].int_value == 9  # the birth holds the current value, not the old one
    assert all(m.is_historical for m in decode(out[1]).metrics)
    live = decode(node.device_data(batch("press", {"temp": 4}, 60), directory)[0])
    assert not any(m.is_historical for m in live.metrics)


def test_quality_is_said_when_it_changes(setup: tuple[EdgeNode, Directory]) -> None:
    node, directory = setup
    node.node_birth(0, 1)
    node.device_data(batch("press", {"temp": 1}, 1), directory)
    bad = decode(node.device_data(batch("press", {"temp": None}, 2, Quality.BAD), directory)[0])
    assert bad.metrics[0].is_null and bad.metrics[0].properties.values[0].int_value == 0
    good = decode(node.device_data(batch("press", {"temp": 2}, 3), directory)[0])
    assert good.metrics[0].properties.values[0].int_value == 192
    plain = decode(node.device_data(batch("press", {"temp": 3}, 4), directory)[0])
    assert not plain.metrics[0].HasField("properties")


def test_a_metric_first_seen_or_of_another_type_brings_a_new_birth() -> None:
    directory = Directory()
    directory.tags["ua"] = (OpcTag(name="a"), OpcTag(name="b"))
    node = EdgeNode("g", "n", "v")
    node.node_birth(0, 1)
    first = node.device_data(batch("ua", {"a": 1}, 1), directory)
    assert [m.name for m in decode(first[0]).metrics] == ["a"]  # b's type is not known yet
    second = node.device_data(batch("ua", {"a": 2, "b": "text"}, 2), directory)
    assert [kind(m) for m in second] == ["DBIRTH", "DDATA"]
    assert {m.name: m.datatype for m in decode(second[0]).metrics} == {
        "a": pb.Int64,
        "b": pb.String,
    }
    third = node.device_data(batch("ua", {"a": 2.5}, 3), directory)
    assert [kind(m) for m in third] == ["DBIRTH", "DDATA"]
    assert {m.name: m.datatype for m in decode(third[0]).metrics}["a"] == pb.Double


def test_a_changed_device_is_born_again_and_a_death_retracts_it(
    setup: tuple[EdgeNode, Directory],
) -> None:
    node, directory = setup
    node.node_birth(0, 1)
    node.device_data(batch("press", {"temp": 1}, 1), directory)
    death = node.device_death("press")
    assert death is not None and kind(death) == "DDEATH"
    assert node.device_death("press") is None  # already dead
    assert kind(node.device_data(batch("press", {"temp": 1}, 2), directory)[0]) == "DBIRTH"
    directory.tags["press"] = (tag("temp"),)  # its configuration changed
    assert kind(node.device_data(batch("press", {"temp": 1}, 3), directory)[0]) == "DBIRTH"


def test_arrays_travel_as_bytes() -> None:
    directory = Directory()
    directory.tags["ua"] = (OpcTag(name="bits"), OpcTag(name="names"), OpcTag(name="xs"))
    node = EdgeNode("g", "n", "v")
    node.node_birth(0, 1)
    values: dict[str, Value] = {
        "bits": [False, False, True, True, False, True, False, False, True, True, False, True],
        "names": ["a", "bc"],
        "xs": [1, -2],
    }
    birth = {
        m.name: m for m in decode(node.device_data(batch("ua", values, 1), directory)[0]).metrics
    }
    assert birth["bits"].datatype == pb.BooleanArray
    assert birth["bits"].bytes_value == bytes([12, 0, 0, 0, 0x34, 0xD0])  # the spec's example
    assert birth["names"].bytes_value == b"a\x00bc\x00"
    assert birth["xs"].bytes_value == (1).to_bytes(8, "little") + (-2).to_bytes(
        8, "little", signed=True
    )


def test_commands_by_name_or_alias_read_as_the_declared_type(
    setup: tuple[EdgeNode, Directory],
) -> None:
    node, directory = setup
    node.node_birth(0, 1)
    birth = decode(node.device_data(batch("press", {"temp": 1}, 1), directory)[0])
    alias = {m.name: m.alias for m in birth.metrics}
    request = pb.Payload(timestamp=1)
    request.metrics.add(alias=alias["temp"], int_value=2**32 - 7)  # -7, no datatype
    request.metrics.add(name="speed", datatype=pb.Float, float_value=2.5)
    request.metrics.add(name="nope", int_value=1)
    command = node.command("spBv1.0/plant/DCMD/gw1/press", request.SerializeToString())
    assert command.device == "press"
    assert command.values == {"temp": -7, "speed": 2.5}
    assert command.problems == ["nope: not a metric of press"]

    rebirth = pb.Payload(timestamp=1)
    rebirth.metrics.add(name=REBIRTH, datatype=pb.Boolean, boolean_value=True)
    ncmd = node.command("spBv1.0/plant/NCMD/gw1", rebirth.SerializeToString())
    assert ncmd.device is None and ncmd.values == {REBIRTH: True}
    with pytest.raises(ValueError, match="not a Sparkplug B payload"):
        node.command("spBv1.0/plant/NCMD/gw1", b"\xff\xff\xff")


def test_written_values_are_published_at_once(setup: tuple[EdgeNode, Directory]) -> None:
    node, directory = setup
    node.node_birth(0, 1)
    node.device_data(batch("press", {"temp": 1}, 1), directory)
    data = node.values_now("press", {"temp": 42})
    assert data is not None and kind(data) == "DDATA"
    assert decode(data).metrics[0].int_value == 42
    assert node.values_now("nobody", {"temp": 1}) is None


def test_data_of_a_device_no_longer_running_is_counted_not_published(
    setup: tuple[EdgeNode, Directory],
) -> None:
    node, directory = setup
    node.node_birth(0, 1)
    assert node.device_data(batch("gone", {"temp": 1, "x": 2}, 1), directory) == []
    assert node.skipped_values == 2


def test_a_batch_of_events_alone_is_no_ddata(setup: tuple[EdgeNode, Directory]) -> None:
    node, directory = setup
    node.node_birth(0, 1)
    alarm = Event("press", "0a", "AlarmConditionType", "press.temp", "hot", 700, 1, 2)
    assert node.device_data(Batch("press", [], 10**9, events=[alarm]), directory) == []
    # No sequence number was spent: the first data is still DBIRTH 1, DDATA 2.
    out = node.device_data(batch("press", {"temp": 1}, 2 * 10**9), directory)
    assert [decode(m).seq for m in out] == [1, 2]
