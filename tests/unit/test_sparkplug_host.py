"""The Sparkplug B host of the integration tests: its wire codec, and its rule checks fed with
hand-built messages (no broker)."""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from tests.support.sparkplug_host import (
    BDSEQ,
    QUALITY,
    QUALITY_STALE,
    REBIRTH,
    DataType,
    SparkplugDecodeError,
    SparkplugHost,
    SpbMetric,
    SpbPayload,
    decode_payload,
    encode_payload,
    interpret_value,
)

D = DataType
GROUP, NODE, DEV, DEV2 = "plant", "edge", "dev1", "dev2"
TS = 1_700_000_000_000
AUTO = -1


def topic(kind: str, device: str | None = None) -> str:
    return f"spBv1.0/{GROUP}/{kind}/{NODE}" + (f"/{device}" if device else "")


def birth(name: str | None, alias: int | None, datatype: int | None, value: object = None,
          **kw: Any) -> SpbMetric:  # fmt: skip
    kw.setdefault("timestamp", TS)
    return SpbMetric(name=name, alias=alias, datatype=datatype, value=value, **kw)


def data(alias: int | None, datatype: int, value: object, **kw: Any) -> SpbMetric:
    """A DATA metric; ``datatype`` picks the value field and stays off the wire."""
    kw.setdefault("timestamp", TS)
    return SpbMetric(alias=alias, datatype=datatype, value=value, **kw)


def node_metrics(bdseq: int = 0) -> list[SpbMetric]:
    return [
        birth(BDSEQ, None, D.Int64, bdseq),
        birth(REBIRTH, None, D.Boolean, False),
        birth("temp", 1, D.Int16, -5, properties={QUALITY: 192}, property_types={QUALITY: 3}),
    ]


def device_metrics(base: int = 10) -> list[SpbMetric]:
    return [
        birth("level", base, D.Float, 1.5),
        birth("count", base + 1, D.Int64, -3),
        birth("label", base + 2, D.String, "a"),
        birth("flags", base + 3, D.BooleanArray, [True, False, True]),
    ]


class Edge:
    """Feeds a host an edge node's messages, numbering seq as the spec says unless told."""

    def __init__(self, host: SparkplugHost) -> None:
        self.host = host
        self.seq = 0

    def send(
        self,
        kind: str,
        metrics: Sequence[SpbMetric] = (),
        device: str | None = None,
        *,
        seq: int | None = AUTO,
        qos: int | None = None,
        retain: bool = False,
        timestamp: int | None = TS,
        datatypes: bool | None = None,
    ) -> None:
        if seq == AUTO:
            sequenced = kind in ("NDATA", "DBIRTH", "DDATA", "DDEATH")
            seq = 0 if kind == "NBIRTH" else (self.seq + 1) % 256 if sequenced else None
        if seq is not None:
            self.seq = seq
        payload = SpbPayload(timestamp=timestamp, seq=seq, metrics=list(metrics))
        if datatypes is None:
            datatypes = kind not in ("NDATA", "DDATA")
        wire = encode_payload(payload, datatypes=datatypes)
        qos = (1 if kind == "NDEATH" else 0) if qos is None else qos
        self.host._handle(topic(kind, device), wire, qos, retain)

    def nbirth(self, bdseq: int = 0, **kw: Any) -> None:
        self.send("NBIRTH", node_metrics(bdseq), **kw)

    def dbirth(self, device: str = DEV, metrics: Sequence[SpbMetric] | None = None) -> None:
        self.send("DBIRTH", device_metrics() if metrics is None else metrics, device)

    def ddata(self, *metrics: SpbMetric, device: str = DEV, **kw: Any) -> None:
        self.send("DDATA", metrics, device, **kw)

    def ndeath(self, bdseq: int = 0, **kw: Any) -> None:
        self.send("NDEATH", [birth(BDSEQ, None, D.Int64, bdseq)], **kw)

    def born(self) -> None:
        self.nbirth()
        self.dbirth()


@pytest.fixture
def host() -> SparkplugHost:
    return SparkplugHost("127.0.0.1", 1, GROUP, host_id="test-host")


@pytest.fixture
def edge(host: SparkplugHost) -> Edge:
    return Edge(host)


# --- codec -------------------------------------------------------------------------------------

SCALARS = [
    (D.Int8, -128),
    (D.Int8, 127),
    (D.Int16, -2),
    (D.Int16, -32768),
    (D.Int32, -2_147_483_648),
    (D.Int32, 2_147_483_647),
    (D.Int64, -1),
    (D.Int64, -(2**63)),
    (D.UInt8, 255),
    (D.UInt16, 65535),
    (D.UInt32, 2**32 - 1),
    (D.UInt64, 2**64 - 1),
    (D.Float, -0.25),
    (D.Double, math.pi),
    (D.Boolean, True),
    (D.Boolean, False),
    (D.String, "héllo/wörld"),
    (D.Text, ""),
    (D.DateTime, TS),
    (D.UUID, "2f1d0b3c-1111-4c6e-9b7a-0123456789ab"),
    (D.Bytes, b"\x00\xff\x10"),
    (D.File, b"file"),
    (D.Int8Array, [-128, 0, 127]),
    (D.Int16Array, [-30000, 30000]),
    (D.Int32Array, [-1, 315338746]),
    (D.Int64Array, [-(2**63), 2**63 - 1]),
    (D.UInt8Array, [0, 255]),
    (D.UInt16Array, [30, 52360]),
    (D.UInt32Array, [52, 3293969225]),
    (D.UInt64Array, [52, 2**64 - 1]),
    (D.FloatArray, [1.5, -2.25]),
    (D.DoubleArray, [12.354213, -1022.9123213]),
    (D.BooleanArray, [False, True, True, False, False, True, False, False, True]),
    (D.BooleanArray, []),
    (D.StringArray, ["ABC", "", "hello"]),
    (D.StringArray, []),
    (D.DateTimeArray, [1256102875335, 1656107875000]),
]


@pytest.mark.parametrize(("datatype", "value"), SCALARS, ids=lambda v: str(v)[:20])
def test_a_metric_value_survives_the_round_trip(datatype: DataType, value: object) -> None:
    sent = SpbPayload(TS, 7, [birth("m", 3, datatype, value)])

    (metric,) = decode_payload(encode_payload(sent)).metrics

    assert (metric.name, metric.alias, metric.datatype, metric.timestamp) == ("m", 3, datatype, TS)
    assert metric.value == value
    assert type(metric.value) is type(value)


@pytest.mark.parametrize(
    ("datatype", "value", "field", "wire"),
    [
        # Signed integers in the unsigned carriers as two's complement.
        (D.Int8, -1, "int_value", 0xFFFFFFFF),
        (D.Int16, -2, "int_value", 0xFFFFFFFE),
        (D.Int32, -2, "int_value", 0xFFFFFFFE),
        (D.Int64, -2, "long_value", 2**64 - 2),
        (D.UInt32, 2**32 - 1, "int_value", 2**32 - 1),
        (D.DateTime, TS, "long_value", TS),
        (D.Float, 1.5, "float_value", 1.5),
        (D.Double, -0.1, "double_value", -0.1),
        # The spec's examples of 3.0's array encodings.
        (D.Int16Array, [-30000, 30000], "bytes_value", bytes([0xD0, 0x8A, 0x30, 0x75])),
        (D.Int32Array, [-1, 315338746], "bytes_value", bytes.fromhex("fffffffffaafcb12")),
        (D.UInt16Array, [30, 52360], "bytes_value", bytes([0x1E, 0x00, 0x88, 0xCC])),
        (D.UInt32Array, [52, 3293969225], "bytes_value", bytes.fromhex("3400000049fb55c4")),
        (
            D.UInt64Array,
            [52, 16444743074749521625],
            "bytes_value",
            bytes.fromhex("3400000000000000d99e02d1b27637e4"),
        ),
        (
            D.BooleanArray,
            [False, False, True, True, False, True, False, False, True, True, False, True],
            "bytes_value",
            bytes([0x0C, 0x00, 0x00, 0x00, 0x34, 0xD0]),
        ),
        (D.StringArray, ["ABC", "hello"], "bytes_value", b"ABC\0hello\0"),
    ],
    ids=lambda v: str(v)[:20],
)
def test_values_go_in_the_field_and_encoding_of_their_datatype(
    datatype: DataType, value: object, field: str, wire: object
) -> None:
    encoded = encode_payload(SpbPayload(metrics=[birth("m", None, datatype, value)]))

    (metric,) = decode_payload(encoded, interpret=False).metrics

    assert (metric.value_field, metric.value) == (field, wire)


def test_a_float_is_a_fixed32_and_a_double_a_fixed64_on_the_wire() -> None:
    floats = encode_payload(SpbPayload(metrics=[SpbMetric(datatype=D.Float, value=1.0)]))
    doubles = encode_payload(SpbPayload(metrics=[SpbMetric(datatype=D.Double, value=1.0)]))

    # Payload.metrics (2, LEN), then datatype (4) and the value's key: 12<<3|5, 13<<3|1.
    assert floats == bytes([0x12, 7, 0x20, 9, 0x65]) + struct.pack("<f", 1.0)
    assert doubles == bytes([0x12, 11, 0x20, 10, 0x69]) + struct.pack("<d", 1.0)


@pytest.mark.parametrize(
    ("datatype", "raw", "value"),
    [
        (D.Int8, 0xFF, -1),  # an Int8 in 8 bits, as some encoders send it
        (D.Int8, 0xFFFFFF80, -128),
        (D.Int16, 0x7FFF, 32767),
        (D.Int16, 0xFFFF8000, -32768),
        (D.Int32, 0x80000000, -(2**31)),
        (D.Int64, 2**64 - 1, -1),
        (D.UInt16, 0xFFFF, 65535),
    ],
)
def test_integers_are_interpreted_by_the_declared_width(
    datatype: DataType, raw: int, value: int
) -> None:
    field = "long_value" if datatype == D.Int64 else "int_value"
    assert interpret_value(datatype, field, raw) == value


@pytest.mark.parametrize(
    ("datatype", "field", "raw"),
    [
        (D.Int16, "int_value", 70000),
        (D.Int8, "int_value", 0xFFFF0000),
        (D.UInt8, "int_value", 256),
        (D.Int32Array, "bytes_value", b"\x00\x01\x02"),
        (D.BooleanArray, "bytes_value", b"\x05\x00\x00\x00"),
        (D.StringArray, "bytes_value", b"abc"),
    ],
)
def test_a_value_that_does_not_fit_its_datatype_is_an_error(
    datatype: DataType, field: str, raw: object
) -> None:
    with pytest.raises(SparkplugDecodeError):
        interpret_value(datatype, field, raw)


def test_a_value_in_another_field_than_its_datatype_is_left_as_it_came() -> None:
    assert interpret_value(D.Int16, "long_value", 2**64 - 1) == 2**64 - 1


def test_properties_survive_the_round_trip_with_their_types() -> None:
    properties: dict[str, object] = {
        QUALITY: 192,
        "offset": -7,
        "big": -(2**40),
        "scale": 0.5,
        "precise": 0.1,
        "writable": True,
        "unit": "bar",
        "missing": None,
        "Engineering": {"low": 0.5, "high": 10, "unit": "°C", "on": False},
        "ranges": [{"low": 1.0}, {"low": 2.0, "name": "b"}],
    }
    types = {
        QUALITY: D.Int32,
        "offset": D.Int16,
        "big": D.Int64,
        "scale": D.Float,
        "precise": D.Double,
        "writable": D.Boolean,
        "unit": D.String,
        "missing": D.String,
        "Engineering": D.PropertySet,
        "ranges": D.PropertySetList,
    }
    sent = birth("m", 1, D.Int32, 1, properties=properties, property_types=types)

    (metric,) = decode_payload(encode_payload(SpbPayload(metrics=[sent]))).metrics

    assert metric.properties == properties
    assert metric.property_types == types


def test_the_payload_fields_and_metric_flags_survive_the_round_trip() -> None:
    sent = SpbPayload(
        timestamp=TS,
        seq=255,
        uuid="schema-1",
        body=b"\x01\x02",
        metrics=[
            birth("a", 2**63, D.Int32, 5, is_historical=True, is_transient=True),
            birth("b", 0, D.String, None, is_null=True),
        ],
    )

    got = decode_payload(encode_payload(sent))

    assert [m.value_field for m in got.metrics] == ["int_value", None]
    for metric in got.metrics:
        metric.value_field = None  # the encoder picks it from the datatype
    assert got == sent


def test_data_values_without_a_datatype_stay_as_on_the_wire() -> None:
    wire = encode_payload(SpbPayload(metrics=[data(4, D.Int16, -2)]), datatypes=False)

    (metric,) = decode_payload(wire).metrics

    assert (metric.datatype, metric.value_field, metric.value) == (None, "int_value", 0xFFFFFFFE)


@pytest.mark.parametrize(
    "wire",
    [
        b"\x08",  # a timestamp without its varint
        b"\x12\x05\x0a\x01",  # a metric longer than the payload
        b"\x12\x02\x65\x00",  # float_value cut short
        b"\x12\x02\x60\x01",  # float_value as a varint
        b"\x12\x04\x0a\x02\xff\xfe",  # a name that is not UTF-8
        b"\x0b",  # wire type 3 (groups)
        b"\x12\x04\x4a\x02\x0a\x00",  # a PropertySet with a key and no value
    ],
)
def test_malformed_payloads_are_decode_errors(wire: bytes) -> None:
    with pytest.raises(SparkplugDecodeError):
        decode_payload(wire)


@pytest.mark.parametrize(
    ("datatype", "value"),
    [(D.Int16, 40000), (D.UInt8, -1), (D.Int32, 1.5), (D.Boolean, 1), (D.String, b"x")],
)
def test_encoding_a_value_that_does_not_fit_its_datatype_fails(
    datatype: DataType, value: object
) -> None:
    with pytest.raises((ValueError, TypeError)):
        encode_payload(SpbPayload(metrics=[SpbMetric(datatype=datatype, value=value)]))


# --- rules: legal sequences ----------------------------------------------------------------------


def test_a_well_behaved_edge_node_breaks_no_rule(host: SparkplugHost, edge: Edge) -> None:
    edge.born()
    edge.dbirth(DEV2, device_metrics(base=20))
    edge.ddata(data(10, D.Float, 2.5), data(11, D.Int64, -9), data(13, D.BooleanArray, [False]))
    edge.send("NDATA", [data(1, D.Int16, -300)])
    quality = {"properties": {QUALITY: 0}, "property_types": {QUALITY: 3}}
    edge.ddata(data(12, D.String, None, is_null=True, **quality))
    edge.ddata(data(10, D.Float, 0.5, is_historical=True, timestamp=TS - 1000))
    edge.send("DDEATH", device=DEV)
    edge.dbirth()  # the device comes back with its own aliases
    edge.ddata(data(10, D.Float, 3.5))
    edge.send("DCMD", [SpbMetric(name="level", datatype=D.Float, value=1.0)], DEV)

    assert host.violations == []
    state = host.node_state(NODE)
    assert (state.online, state.bdseq, state.seq) == (True, 0, 9)
    assert state.values == {BDSEQ: 0, REBIRTH: False, "temp": -300}
    assert state.metrics["temp"] == (1, D.Int16)
    dev = state.devices[DEV]
    assert dev.online
    assert dev.values == {"level": 3.5, "count": -3, "label": "a", "flags": [True, False, True]}
    assert dev.history == {"level": [(TS - 1000, 0.5)]}  # kept across the re-birth
    dev2 = state.devices[DEV2]
    assert dev2.metrics["flags"] == (23, D.BooleanArray)
    received = host.received[3].payload
    assert received is not None
    assert [m.value for m in received.metrics] == [2.5, -9, [False]]


def test_history_quality_and_nulls_are_kept_apart_from_current_values(
    host: SparkplugHost, edge: Edge
) -> None:
    edge.born()
    quality = {"properties": {QUALITY: 500}, "property_types": {QUALITY: 3}}
    edge.ddata(data(12, D.String, None, is_null=True, **quality))
    edge.ddata(data(10, D.Float, 0.5, is_historical=True, timestamp=TS - 1000))

    dev = host.node_state(NODE).devices[DEV]
    assert host.violations == []
    assert dev.values["label"] is None
    assert dev.qualities == {"level": 192, "count": 192, "label": 500, "flags": 192}
    assert dev.values["level"] == 1.5
    assert dev.history == {"level": [(TS - 1000, 0.5)]}


def test_death_takes_the_node_and_its_devices_offline_and_stale(
    host: SparkplugHost, edge: Edge
) -> None:
    edge.born()
    edge.ndeath()

    state = host.node_state(NODE)
    assert host.violations == []
    assert (state.online, state.seq, state.devices[DEV].online) == (False, None, False)
    assert set(state.qualities.values()) == {QUALITY_STALE}
    assert set(state.devices[DEV].qualities.values()) == {QUALITY_STALE}
    assert state.devices[DEV].values["count"] == -3  # last known values stay


def test_a_death_with_another_bdseq_is_stale_and_ignored(host: SparkplugHost, edge: Edge) -> None:
    edge.nbirth(bdseq=1)
    edge.ndeath(bdseq=0)  # the will of a connection the node has since replaced

    assert host.violations == []
    assert host.node_state(NODE).online
    assert [r.kind for r in host.stale_deaths] == ["NDEATH"]

    edge.ndeath(bdseq=1)
    assert not host.node_state(NODE).online
    assert len(host.stale_deaths) == 1


def test_a_new_session_without_a_death_in_between_is_legal(host: SparkplugHost, edge: Edge) -> None:
    edge.born()
    edge.nbirth(bdseq=1)  # reconnected: the old will comes later, or never
    edge.dbirth()  # same aliases as before the new NBIRTH
    edge.ndeath(bdseq=0)

    assert host.violations == []
    assert host.node_state(NODE).online
    assert len(host.stale_deaths) == 1


def test_seq_wraps_from_255_to_0(host: SparkplugHost, edge: Edge) -> None:
    edge.nbirth()
    for i in range(300):
        edge.send("NDATA", [data(1, D.Int16, i)])

    assert host.violations == []
    assert host.node_state(NODE).seq == 300 % 256


def test_a_uint32_in_long_value_is_accepted(host: SparkplugHost, edge: Edge) -> None:
    edge.nbirth()
    edge.dbirth(metrics=[birth("u", 10, D.UInt32, 5)])
    edge.ddata(data(10, D.UInt64, 2**32 - 1))  # long_value

    assert host.violations == []
    assert host.node_state(NODE).devices[DEV].values["u"] == 2**32 - 1


# --- rules: one breach each ----------------------------------------------------------------------

BREACHES: list[Any] = []


def breach(rule: str) -> Callable[[Callable[[Edge], None]], Callable[[Edge], None]]:
    def register(steps: Callable[[Edge], None]) -> Callable[[Edge], None]:
        BREACHES.append(pytest.param(rule, steps, id=f"{rule}-{steps.__name__}"))
        return steps

    return register


@breach("namespace")
def device_on_a_node_topic(e: Edge) -> None:
    e.host._handle(f"spBv1.0/{GROUP}/NDATA/{NODE}/{DEV}", b"", 0, False)


@breach("namespace")
def no_device_on_a_device_topic(e: Edge) -> None:
    e.host._handle(f"spBv1.0/{GROUP}/DDATA/{NODE}", b"", 0, False)


@breach("namespace")
def unknown_message_type(e: Edge) -> None:
    e.host._handle(f"spBv1.0/{GROUP}/NSTATUS/{NODE}", b"", 0, False)


@breach("namespace")
def empty_node_id(e: Edge) -> None:
    e.host._handle(f"spBv1.0/{GROUP}/NDATA/", b"", 0, False)


@breach("payload")
def not_protobuf(e: Edge) -> None:
    e.nbirth()
    e.host._handle(topic("NDATA"), b"\xff", 0, False)


@breach("qos")
def nbirth_at_qos_1(e: Edge) -> None:
    e.nbirth(qos=1)


@breach("qos")
def ndeath_at_qos_0(e: Edge) -> None:
    e.born()
    e.ndeath(qos=0)


@breach("retain")
def retained_ddata(e: Edge) -> None:
    e.born()
    e.ddata(data(10, D.Float, 1.0), retain=True)


@breach("timestamp")
def ndata_without_a_timestamp(e: Edge) -> None:
    e.nbirth()
    e.send("NDATA", [data(1, D.Int16, 1)], timestamp=None)


@breach("metric-timestamp")
def ddata_metric_without_a_timestamp(e: Edge) -> None:
    e.born()
    e.ddata(SpbMetric(alias=10, datatype=D.Float, value=1.0))


@breach("metric-timestamp")
def dbirth_metric_without_a_timestamp(e: Edge) -> None:
    e.nbirth()
    e.dbirth(metrics=[SpbMetric(name="x", alias=10, datatype=D.Int32, value=1)])


@breach("seq")
def a_gap_in_seq(e: Edge) -> None:
    e.born()
    e.ddata(data(10, D.Float, 1.0), seq=5)


@breach("seq")
def a_gap_across_the_wrap(e: Edge) -> None:
    e.nbirth()
    e.send("NDATA", [], seq=255)


@breach("seq")
def ddeath_without_seq(e: Edge) -> None:
    e.born()
    e.send("DDEATH", device=DEV, seq=None)


@breach("seq")
def ndeath_with_a_seq(e: Edge) -> None:
    e.born()
    e.ndeath(seq=3)


@breach("nbirth-seq")
def nbirth_not_at_0(e: Edge) -> None:
    e.nbirth(seq=3)


@breach("bdseq")
def nbirth_without_bdseq(e: Edge) -> None:
    e.send("NBIRTH", node_metrics()[1:])


@breach("bdseq")
def bdseq_out_of_range(e: Edge) -> None:
    e.nbirth(bdseq=256)


@breach("bdseq")
def bdseq_as_int32(e: Edge) -> None:
    e.send("NBIRTH", [birth(BDSEQ, None, D.Int32, 0), *node_metrics()[1:]])


@breach("bdseq")
def ndeath_without_bdseq(e: Edge) -> None:
    e.born()
    e.send("NDEATH", [])


@breach("rebirth-metric")
def nbirth_without_rebirth(e: Edge) -> None:
    metrics = node_metrics()
    e.send("NBIRTH", [metrics[0], metrics[2]])


@breach("rebirth-metric")
def rebirth_born_true(e: Edge) -> None:
    metrics = node_metrics()
    metrics[1].value = True
    e.send("NBIRTH", metrics)


@breach("birth-metric")
def birth_metric_without_a_datatype(e: Edge) -> None:
    e.nbirth()
    e.dbirth(metrics=[birth("x", 10, None)])


@breach("birth-metric")
def birth_metric_without_a_name(e: Edge) -> None:
    e.nbirth()
    e.dbirth(metrics=[birth(None, 10, D.Int32, 1)])


@breach("birth-metric")
def birth_metric_of_unknown_datatype(e: Edge) -> None:
    e.nbirth()
    e.dbirth(metrics=[birth("x", 10, D.Unknown)])


@breach("birth-metric")
def birth_metric_twice(e: Edge) -> None:
    e.nbirth()
    e.dbirth(metrics=[birth("x", 10, D.Int32, 1), birth("x", 11, D.Int32, 2)])


@breach("value-field")
def birth_metric_without_a_value(e: Edge) -> None:
    e.nbirth()
    e.dbirth(metrics=[birth("x", 10, D.Int32)])


@breach("alias-unique")
def an_alias_twice_in_nbirth(e: Edge) -> None:
    e.send("NBIRTH", [*node_metrics(), birth("other", 1, D.Int32, 0)])


@breach("alias-unique")
def a_device_reuses_a_node_alias(e: Edge) -> None:
    e.nbirth()
    e.dbirth(metrics=[birth("x", 1, D.Int32, 1)])


@breach("alias-unique")
def two_devices_share_an_alias(e: Edge) -> None:
    e.born()
    e.dbirth(DEV2, [birth("x", 12, D.Int32, 1)])


@breach("order")
def dbirth_before_nbirth(e: Edge) -> None:
    e.dbirth()


@breach("order")
def ddata_before_dbirth(e: Edge) -> None:
    e.nbirth()
    e.ddata(data(10, D.Float, 1.0))


@breach("order")
def ddata_after_ddeath(e: Edge) -> None:
    e.born()
    e.send("DDEATH", device=DEV)
    e.ddata(data(10, D.Float, 1.0))


@breach("order")
def ddata_after_a_rebirth_before_the_dbirth(e: Edge) -> None:
    e.born()
    e.nbirth()
    e.ddata(data(10, D.Float, 1.0))


@breach("order")
def ndata_after_ndeath(e: Edge) -> None:
    e.born()
    e.ndeath()
    e.send("NDATA", [data(1, D.Int16, 1)], seq=1)


@breach("ddeath-unknown")
def ddeath_of_an_unborn_device(e: Edge) -> None:
    e.born()
    e.send("DDEATH", device=DEV2)


@breach("alias")
def data_by_name(e: Edge) -> None:
    e.born()
    e.ddata(SpbMetric(name="level", datatype=D.Float, value=1.0, timestamp=TS))


@breach("data-name")
def data_by_name_and_alias(e: Edge) -> None:
    e.born()
    e.ddata(SpbMetric(name="level", alias=10, datatype=D.Float, value=1.0, timestamp=TS))


@breach("alias-undeclared")
def data_with_an_undeclared_alias(e: Edge) -> None:
    e.born()
    e.ddata(data(99, D.Float, 1.0))


@breach("alias-undeclared")
def ndata_with_a_device_alias(e: Edge) -> None:
    e.born()
    e.send("NDATA", [data(10, D.Float, 1.0)])


@breach("value-field")
def int16_sent_in_long_value(e: Edge) -> None:
    e.nbirth()
    e.send("NDATA", [data(1, D.Int64, -1)])


@breach("value-field")
def float_sent_as_double(e: Edge) -> None:
    e.born()
    e.ddata(data(10, D.Double, 1.0))


@breach("datatype")
def data_with_another_datatype(e: Edge) -> None:
    e.nbirth()
    # Int32 shares int_value with the declared Int16: only the datatype is wrong.
    e.send("NDATA", [data(1, D.Int32, 1)], datatypes=True)
    assert e.host._nodes[NODE].metrics.values["temp"] == 1


@breach("value")
def int16_out_of_range(e: Edge) -> None:
    e.nbirth()
    e.send("NDATA", [data(1, D.UInt32, 70000)])


@breach("value")
def boolean_array_without_its_bits(e: Edge) -> None:
    e.born()
    e.ddata(data(13, D.Bytes, b"\x05\x00\x00\x00"))


@breach("quality")
def quality_as_int64(e: Edge) -> None:
    e.nbirth()
    bad = {"properties": {QUALITY: 192}, "property_types": {QUALITY: D.Int64}}
    e.send("NDATA", [data(1, D.Int16, 1, **bad)])


@breach("quality")
def quality_of_an_unknown_code(e: Edge) -> None:
    e.nbirth()
    e.dbirth(metrics=[birth("x", 10, D.Int32, 1, properties={QUALITY: 7}, property_types={})])


@pytest.mark.parametrize(("rule", "steps"), BREACHES)
def test_each_breach_is_one_violation_naming_its_rule(
    host: SparkplugHost, edge: Edge, rule: str, steps: Callable[[Edge], None]
) -> None:
    steps(edge)

    assert len(host.violations) == 1, host.violations
    assert host.violations[0].startswith(f"{rule}: spBv1.0/{GROUP}/"), host.violations


def test_a_message_outside_the_namespace_is_still_recorded(host: SparkplugHost) -> None:
    host._handle(f"spBv1.0/{GROUP}/NSTATUS/{NODE}", b"", 0, True)

    (received,) = host.received
    assert (received.kind, received.node, received.device, received.retain) == (
        "NSTATUS",
        NODE,
        None,
        True,
    )


# --- commands, STATE and waiting -----------------------------------------------------------------

Sent = list[tuple[str, bytes, int, bool]]


@pytest.fixture
def sent(host: SparkplugHost, monkeypatch: pytest.MonkeyPatch) -> Sent:
    published: Sent = []

    def publish(
        topic: str, payload: SpbPayload | bytes, qos: int, retain: bool, timeout: float
    ) -> None:
        wire = payload if isinstance(payload, bytes) else encode_payload(payload)
        published.append((topic, wire, qos, retain))

    monkeypatch.setattr(host, "_publish", publish)
    return published


def test_rebirth_is_an_ncmd_of_rebirth_true(host: SparkplugHost, sent: Sent) -> None:
    host.send_rebirth(NODE)

    ((where, wire, qos, retain),) = sent
    payload = decode_payload(wire)
    assert (where, qos, retain, payload.seq) == (topic("NCMD"), 0, False, None)
    assert payload.timestamp is not None
    (metric,) = payload.metrics
    assert (metric.name, metric.datatype, metric.value) == (REBIRTH, D.Boolean, True)


@pytest.mark.parametrize("by_alias", [False, True])
def test_dcmd_writes_by_name_or_alias_with_the_birth_datatype(
    host: SparkplugHost, edge: Edge, sent: Sent, by_alias: bool
) -> None:
    edge.nbirth()
    edge.dbirth(metrics=[birth("sp", 10, D.Int16, 0), birth("on", 11, D.Boolean, False)])

    host.send_dcmd(NODE, DEV, {"sp": -2, "on": None}, by_alias=by_alias)

    ((where, wire, qos, retain),) = sent
    assert (where, qos, retain) == (topic("DCMD", DEV), 0, False)
    sp, on = decode_payload(wire, interpret=False).metrics
    if by_alias:
        assert (sp.name, sp.alias, on.name, on.alias) == (None, 10, None, 11)
    else:
        assert (sp.name, sp.alias, on.name, on.alias) == ("sp", None, "on", None)
    assert (sp.datatype, sp.value_field, sp.value) == (D.Int16, "int_value", 0xFFFFFFFE)
    assert (on.datatype, on.is_null, on.value_field) == (D.Boolean, True, None)


def test_dcmd_to_an_unborn_device_or_metric_fails(host: SparkplugHost, edge: Edge) -> None:
    with pytest.raises(KeyError):
        host.send_dcmd(NODE, DEV, {"level": 1.0})
    edge.born()
    with pytest.raises(KeyError):
        host.send_dcmd(NODE, DEV, {"nope": 1})


def test_state_online_carries_the_wills_timestamp_and_offline_a_later_one(
    host: SparkplugHost, sent: Sent
) -> None:
    host._will_ts = 1234  # what start() sets with the will

    host.publish_state(True)
    host.publish_state(False)

    (online_topic, online, qos, retain), (_, offline, *_) = sent
    assert (online_topic, qos, retain) == ("spBv1.0/STATE/test-host", 1, True)
    assert json.loads(online) == {"online": True, "timestamp": 1234}
    assert json.loads(offline)["online"] is False
    assert json.loads(offline)["timestamp"] > 1234


def test_wait_message_returns_the_first_match_after_an_index(
    host: SparkplugHost, edge: Edge
) -> None:
    edge.born()
    mark = len(host.received)
    edge.ddata(data(10, D.Float, 1.0))

    got = host.wait_message("DDATA", NODE, DEV, after=mark, timeout=0.01)

    assert got is host.received[mark]
    assert host.wait_message("NBIRTH", NODE, timeout=0.01) is host.received[0]


def test_a_wait_that_times_out_says_what_arrived(host: SparkplugHost, edge: Edge) -> None:
    edge.born()

    with pytest.raises(AssertionError) as failure:
        host.wait_message("NDEATH", NODE, timeout=0.01)

    report = str(failure.value)
    assert "NDEATH from edge" in report
    assert f"NBIRTH {topic('NBIRTH')} seq=0" in report
    assert f"DBIRTH {topic('DBIRTH', DEV)} seq=1" in report
