"""Line protocol of batches: field types, escaping, skipped values, tag sets, timestamps."""

from __future__ import annotations

import enum
import logging
import math
import random
import struct

import pytest

from gateway.reading import Batch, Quality, Reading, Value
from gateway.sinks.line_protocol import (
    LineEncoder,
    escape_key,
    escape_measurement,
    escape_string,
)

T0 = 1_732_600_000_123_456_789
INT64_MAX = 2**63 - 1


class Mode(enum.IntEnum):
    RUN = 3


def reading(tag: str, value: Value, quality: Quality = Quality.GOOD, ns: int = T0) -> Reading:
    return Reading("press-1", tag, value, quality, ns, ns + 1000)


def encode(
    readings: list[Reading],
    *,
    unsigned: bool = True,
    precision: str = "ns",
    labels: dict[str, str] | None = None,
    measurement: str | None = None,
) -> list[str]:
    encoder = LineEncoder("gw1", "telemetry", precision, unsigned=unsigned)
    batch = Batch("press-1", readings, T0, labels or {}, measurement)
    encoded = encoder.encode([batch])
    lines = encoded.body.decode().split("\n") if encoded.body else []
    assert encoded.points == len(lines)
    return lines


def fields_of(value: Value, *, unsigned: bool = True) -> str | None:
    """The field text of one value, or None if nothing was written."""
    lines = encode([reading("x", value)], unsigned=unsigned)
    if not lines:
        return None
    [line] = lines
    series, rest = line.split(" ", 1)
    fields, timestamp = rest.rsplit(" ", 1)
    assert series == "telemetry,device=press-1,gateway=gw1"
    assert timestamp == str(T0)
    return fields


# (value, field written to a server with uint64 (api v2), to one without (api v1))
TYPES: list[tuple[Value, str | None, str | None]] = [
    (61.7, "x=61.7", "x=61.7"),
    (1.0, "x=1.0", "x=1.0"),
    (-0.0, "x=-0.0", "x=-0.0"),
    (1e300, "x=1e+300", "x=1e+300"),
    (1.5e-07, "x=1.5e-7", "x=1.5e-7"),
    (1e16, "x=1e+16", "x=1e+16"),
    (0, "x=0i", "x=0i"),
    (1450, "x=1450i", "x=1450i"),
    (-1234567890123, "x=-1234567890123i", "x=-1234567890123i"),
    (INT64_MAX, f"x={INT64_MAX}i", f"x={INT64_MAX}i"),
    (-(2**63), f"x={-(2**63)}i", f"x={-(2**63)}i"),
    (2**63, "x=9223372036854775808u", "x=9.223372036854776e+18"),
    (18000000000000000001, "x=18000000000000000001u", "x=1.8e+19"),
    (2**64 - 1, "x=18446744073709551615u", "x=1.8446744073709552e+19"),
    (2**64, "x=1.8446744073709552e+19", "x=1.8446744073709552e+19"),
    (-(2**63) - 1, "x=-9.223372036854776e+18", "x=-9.223372036854776e+18"),
    (10**400, None, None),
    (True, "x=true", "x=true"),
    (False, "x=false", "x=false"),
    (Mode.RUN, "x=3i", "x=3i"),
    ("SIM-PLC-1", 'x="SIM-PLC-1"', 'x="SIM-PLC-1"'),
    ("", 'x=""', 'x=""'),
    ('say "hi"', r'x="say \"hi\""', r'x="say \"hi\""'),
    ("C:\\temp\\", r'x="C:\\temp\\"', r'x="C:\\temp\\"'),
    ("two\nlines\r", r'x="two\nlines\r"', r'x="two\nlines\r"'),
    ("Zürich 東京", 'x="Zürich 東京"', 'x="Zürich 東京"'),
    (float("nan"), None, None),
    (float("inf"), None, None),
    (float("-inf"), None, None),
    (None, None, None),
    ([1, 2, 3], None, None),
]


@pytest.mark.parametrize(("value", "v2", "v1"), TYPES, ids=[repr(t[0])[:30] for t in TYPES])
def test_each_type_is_written_with_its_line_protocol_type(
    value: Value, v2: str | None, v1: str | None
) -> None:
    assert fields_of(value, unsigned=True) == v2
    assert fields_of(value, unsigned=False) == v1


def test_floats_always_carry_a_decimal_point_or_an_exponent() -> None:
    for value in (0.0, 3.0, 1e15, 1e16, 1e22, 2.0**70, -5.0, 1e-5):
        written = fields_of(value)
        assert written is not None
        number = written.removeprefix("x=")
        assert "." in number or "e" in number, number
        assert float(number) == value


def test_every_float_reads_back_exactly() -> None:
    rng = random.Random(7)
    values = [rng.uniform(-1e6, 1e6) for _ in range(500)]
    values += [struct.unpack(">f", rng.randbytes(4))[0] for _ in range(500)]  # float32 values
    values += [rng.random() * 10.0 ** rng.randint(-300, 300) for _ in range(500)]
    values = [v for v in values if math.isfinite(v)]
    readings = [reading(f"f{i}", v) for i, v in enumerate(values)]
    [line] = encode(readings)
    fields = line.split(" ")[1].split(",")
    assert [float(f.split("=")[1]) for f in fields] == values


def test_unwritable_values_leave_the_others_of_their_point() -> None:
    readings = [
        reading("a", 1.5),
        reading("nan", float("nan")),
        reading("flag", True),
        reading("n", 7),
        reading("wide", 2**64 + 1),
        reading("huge", 10**400),
        reading("m", -8),
    ]
    lines = encode(readings)
    assert [line.split(" ")[1] for line in lines] == [
        "a=1.5,flag=true,n=7i,m=-8i,wide=1.8446744073709552e+19"
    ]


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("plain", "plain"),
        ("with space", r"with\ space"),
        ("a,b", r"a\,b"),
        ("k=v", r"k\=v"),
        ('quote"d', 'quote"d'),
        ("Zürich/東京", "Zürich/東京"),
        ("new\nline\ttab\rcr", r"new\nline\ttab\rcr"),
        (r"a\b", r"a\b"),  # a backslash escaping nothing stays as it is
        (r"a\,b", r"a\\\,b"),  # one that would escape the comma is doubled
        ("a\\\\b", r"a\\\b"),
        ("trailing\\", "trailing"),  # InfluxDB 1.x cannot parse a trailing backslash
        ("\\\\", ""),
    ],
)
def test_keys_and_tag_values_escape_commas_equals_and_spaces(text: str, escaped: str) -> None:
    assert escape_key(text) == escaped


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("telemetry", "telemetry"),
        ("machine data", r"machine\ data"),
        ("a,b", r"a\,b"),
        ("k=v", "k=v"),  # an equals sign needs no escape in a measurement
        ("x\ny", r"x\ny"),
    ],
)
def test_measurements_escape_commas_and_spaces(text: str, escaped: str) -> None:
    assert escape_measurement(text) == escaped


def test_string_values_escape_backslashes_and_quotes() -> None:
    assert escape_string('a\\b"c') == 'a\\\\b\\"c'


def test_one_point_per_device_and_timestamp_with_sorted_tags() -> None:
    labels = {"site": "plant 1", "line": "L,1", "cell": "a=b", "empty": ""}
    lines = encode(
        [
            reading("speed", 1450),
            reading("temp", 61.7),
            reading("model", "SIM"),
            reading("speed", 1460, ns=T0 + 5_000_000),
        ],
        labels=labels,
        measurement="machine data",
        precision="ms",
    )
    series = r"machine\ data,cell=a\=b,device=press-1,gateway=gw1,line=L\,1,site=plant\ 1"
    ms = T0 // 1_000_000
    assert lines == [
        f'{series} temp=61.7,speed=1450i,model="SIM" {ms}',
        f"{series} speed=1460i {ms + 5}",
    ]


def test_readings_in_the_same_unit_of_precision_share_a_point() -> None:
    lines = encode(
        [reading("a", 1), reading("b", 2, ns=T0 + 1), reading("c", 3, ns=T0 - 10**9)],
        precision="s",
    )
    assert [line.split(" ", 1)[1] for line in lines] == [
        f"a=1i,b=2i {T0 // 10**9}",
        f"c=3i {T0 // 10**9 - 1}",
    ]


@pytest.mark.parametrize(
    ("precision", "timestamp"),
    [("ns", T0), ("us", T0 // 1000), ("ms", T0 // 1_000_000), ("s", T0 // 10**9)],
)
def test_timestamps_are_the_source_time_in_the_precision(precision: str, timestamp: int) -> None:
    [line] = encode([reading("a", 1.5)], precision=precision)
    assert line.endswith(f" a=1.5 {timestamp}")


def test_bad_readings_are_not_written_uncertain_ones_are() -> None:
    lines = encode(
        [
            reading("ok", 1),
            reading("broken", None, Quality.BAD),
            reading("stale", 2.5, Quality.UNCERTAIN),
            reading("bad_with_value", 7, Quality.BAD),
        ]
    )
    assert [line.split(" ")[1] for line in lines] == ["stale=2.5,ok=1i"]


def test_a_batch_with_nothing_to_write_gives_no_point() -> None:
    encoder = LineEncoder("gw1", "telemetry", "ms", unsigned=True)
    batch = Batch("d", [reading("a", None, Quality.BAD), reading("b", float("nan"))], T0, {}, None)
    encoded = encoder.encode([batch, Batch("e", [], T0)])
    assert encoded == (b"", 0)
    assert encoder.skipped_values == 1


def test_skipped_values_are_counted() -> None:
    encoder = LineEncoder("gw1", "telemetry", "ms", unsigned=True)
    batch = Batch(
        "d",
        [reading("a", float("inf")), reading("b", None), reading("c", [1.0]), reading("d", 1)],
        T0,
    )
    assert encoder.encode([batch]).points == 1
    assert encoder.skipped_values == 3


def test_tag_names_that_need_escaping_become_escaped_field_keys() -> None:
    [line] = encode([reading("motor speed", 1), reading("a,b=c", 2), reading("温度", 3.5)])
    assert line.split(" ", 1)[1] == rf"温度=3.5,motor\ speed=1i,a\,b\=c=2i {T0}"


def test_a_tag_name_of_only_backslashes_is_skipped_and_counted() -> None:
    encoder = LineEncoder("gw1", "telemetry", "ns", unsigned=True)
    batch = Batch("d", [reading("\\", 1), reading("ok", 2)], T0)
    assert encoder.encode([batch]).body.decode().endswith(f" ok=2i {T0}")
    assert encoder.encode([batch]).points == 1
    assert encoder.skipped_values == 2


def test_labels_named_like_the_reserved_tags_are_ignored_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    encoder = LineEncoder("gw1", "telemetry", "ns", unsigned=True)
    batch = Batch("press-1", [reading("a", 1)], T0, {"device": "other", "gateway": "x", "z": "1"})
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            body = encoder.encode([batch]).body.decode()
    assert body.startswith("telemetry,device=press-1,gateway=gw1,z=1 ")
    ignored = [r for r in caplog.records if "is ignored" in r.getMessage()]
    assert len(ignored) == 2  # one per label, not one per write


def test_the_tag_set_follows_changed_labels_and_measurements() -> None:
    encoder = LineEncoder("gw1", "telemetry", "ns", unsigned=True)
    labels = {"line": "a"}
    first = encoder.encode([Batch("d", [reading("x", 1)], T0, labels)]).body
    labels["line"] = "b"  # the same mapping, changed in place
    second = encoder.encode([Batch("d", [reading("x", 1)], T0, labels)]).body
    third = encoder.encode([Batch("d", [reading("x", 1)], T0, labels, "other")]).body
    assert first.startswith(b"telemetry,device=d,gateway=gw1,line=a ")
    assert second.startswith(b"telemetry,device=d,gateway=gw1,line=b ")
    assert third.startswith(b"other,device=d,gateway=gw1,line=b ")


def test_several_batches_make_one_body_of_lines() -> None:
    encoder = LineEncoder("gw1", "telemetry", "ms", unsigned=True)
    batches = [
        Batch(f"d{i}", [Reading(f"d{i}", "v", i, Quality.GOOD, T0 + i * 10**6, T0)], T0)
        for i in range(3)
    ]
    encoded = encoder.encode(batches)
    ms = T0 // 1_000_000
    assert encoded.points == 3
    assert encoded.body.decode().split("\n") == [
        f"telemetry,device=d{i},gateway=gw1 v={i}i {ms + i}" for i in range(3)
    ]
