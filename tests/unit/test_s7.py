"""S7 addresses, the codec and the coalescing planner, without a PLC."""

from __future__ import annotations

import copy
import struct
from typing import Any

import pytest

from connectors.s7.address import Area, parse_address
from connectors.s7.codec import BlockDecoder, encode_value
from connectors.s7.config import S7Tag
from connectors.s7.planner import Item, make_blocks, pack_requests, payload_limit
from gateway.config import parse_config
from gateway.errors import ConfigError

ADDRESSES = [
    ("DB1.DBX0.3", (Area.DB, 1, 0, 3, "X")),
    ("db12.dbb1", (Area.DB, 12, 1, None, "B")),
    ("%DB1.DBW2", (Area.DB, 1, 2, None, "W")),
    ("DB65535.DBD65535", (Area.DB, 65535, 65535, None, "D")),
    ("MX10.1", (Area.MARKERS, 0, 10, 1, "X")),
    ("M10.1", (Area.MARKERS, 0, 10, 1, "X")),
    ("MB10", (Area.MARKERS, 0, 10, None, "B")),
    ("MW10", (Area.MARKERS, 0, 10, None, "W")),
    ("MD12", (Area.MARKERS, 0, 12, None, "D")),
    ("I0.1", (Area.INPUTS, 0, 0, 1, "X")),
    ("E0.1", (Area.INPUTS, 0, 0, 1, "X")),
    ("IW4", (Area.INPUTS, 0, 4, None, "W")),
    ("EB2", (Area.INPUTS, 0, 2, None, "B")),
    ("Q0.0", (Area.OUTPUTS, 0, 0, 0, "X")),
    ("A0.7", (Area.OUTPUTS, 0, 0, 7, "X")),
    ("QW2", (Area.OUTPUTS, 0, 2, None, "W")),
    ("AD4", (Area.OUTPUTS, 0, 4, None, "D")),
]


@pytest.mark.parametrize(("text", "expected"), ADDRESSES, ids=[a[0] for a in ADDRESSES])
def test_addresses_in_siemens_notation(text: str, expected: tuple[Any, ...]) -> None:
    address = parse_address(text)
    assert (address.area, address.db, address.byte, address.bit, address.size) == expected
    assert parse_address(str(address)) == address  # the canonical form reads back the same


MISTAKES = [
    ("DB1.DBX0.8", "bit 8 does not exist (a byte has bits 0..7)"),
    ("DB1.DBX0", "needs its bit"),
    ("DB1.DBW2.1", "only bit addresses (X) take a bit number"),
    ("DB0.DBW2", "DB number 0 is out of range"),
    ("DB1.DBW70000", "byte offset 70000 is out of range"),
    ("M10", "give a size (X, B, W or D, as in MW10) or a bit (as in M10.0)"),
    ("DB1", "a data block address is DB<n>.DB<X|B|W|D><byte>"),
    ("MQ4", "is not an S7 address"),
    ("", "is not an S7 address"),
]


@pytest.mark.parametrize(("text", "words"), MISTAKES, ids=[m[0] or "empty" for m in MISTAKES])
def test_address_mistakes_say_what_is_wrong(text: str, words: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_address(text)
    assert words in str(caught.value)


BASE: dict[str, Any] = {
    "gateway": {"id": "gw"},
    "sinks": {"plant": {"type": "mqtt"}},
    "devices": [
        {
            "id": "plc",
            "type": "s7",
            "host": "10.0.0.5",
            "groups": [{"tags": [{"name": "t", "address": "DB1.DBW2"}]}],
        }
    ],
}
TAG = "devices[0].groups[0].tags[0]"
CHECKS = [
    ({"address": "DB1.DBX0.8"}, f"{TAG}.address", "bit 8 does not exist"),
    ({"address": "DB1.DBD3", "data_type": "float32"}, None, None),  # an odd offset is allowed
    ({"address": "DB1.DBW2", "data_type": "float32"}, TAG, "a word address: its data_type is"),
    ({"address": "DB1.DBW2", "data_type": "bool"}, TAG, "a bool needs a bit address (X)"),
    ({"address": "DB1.DBB2", "data_type": "string"}, TAG, "'length' (characters) is required"),
    ({"address": "DB1.DBB2", "data_type": "string", "length": 255}, f"{TAG}.length", "254"),
    ({"address": "DB1.DBX0.0", "scale": 2}, TAG, "scale and offset do not apply to bool"),
]


@pytest.mark.parametrize(("tag", "path", "words"), CHECKS, ids=[str(c[0]) for c in CHECKS])
def test_check_config_names_the_tag_and_the_mistake(
    tag: dict[str, Any], path: str | None, words: str | None
) -> None:
    document = copy.deepcopy(BASE)
    document["devices"][0]["groups"][0]["tags"][0].update(tag)
    if path is None:
        parse_config(document)
        return
    with pytest.raises(ConfigError) as caught:
        parse_config(document)
    problems = [(p.path, p.message) for p in caught.value.problems]
    assert words is not None
    assert any(p == path and words in m for p, m in problems), problems


def tag(address: str, data_type: str | None = None, **extra: Any) -> S7Tag:
    return S7Tag.model_validate({"name": "t", "address": address, "data_type": data_type, **extra})


DECODES = [
    (tag("DB1.DBX0.3"), b"\x08", True),
    (tag("DB1.DBX0.2"), b"\x08", False),
    (tag("DB1.DBB0", "int8"), b"\xf4", -12),
    (tag("DB1.DBB0"), b"\xf4", 244),
    (tag("DB1.DBW0", "int16"), b"\xfb\x2e", -1234),
    (tag("DB1.DBW0"), b"\xbe\xef", 0xBEEF),
    (tag("DB1.DBD0", "int32"), struct.pack(">i", -123456789), -123456789),
    (tag("DB1.DBD0"), struct.pack(">I", 4_000_000_000), 4_000_000_000),
    (tag("DB1.DBD0", "float32"), struct.pack(">f", 1.5), 1.5),
    (tag("DB1.DBD0", "float64"), struct.pack(">d", -98765.4321), -98765.4321),
    (tag("DB1.DBW0", "int16", scale=0.1, offset=-20), struct.pack(">h", 425), 22.5),
    (tag("DB1.DBB0", "string", length=6), bytes((6, 3)) + b"abc\0\0\0", "abc"),
    (tag("DB1.DBB0", "string", length=4), bytes((254, 9)) + b"abcd", "abcd"),  # header lies
    (tag("DB1.DBB0", "chars", length=5), b"AB\0\0\0", "AB"),
]


@pytest.mark.parametrize(("s7tag", "data", "value"), DECODES, ids=[str(d[2]) for d in DECODES])
def test_decoding_big_endian_as_s7_stores_it(s7tag: S7Tag, data: bytes, value: object) -> None:
    decoded = BlockDecoder(0, [(s7tag, 0)]).decode(data)[0]
    assert decoded == pytest.approx(value) if isinstance(value, float) else decoded == value
    if s7tag.type.value not in ("bool",) and not isinstance(value, float):
        assert BlockDecoder(0, [(s7tag, 0)]).decode(encode_value(s7tag, value))[0] == value  # type: ignore[arg-type]


def test_one_block_decodes_tags_at_their_offsets_overlapping_ones_too() -> None:
    word = tag("DB1.DBW10", "int16")
    high_byte = tag("DB1.DBB10")
    real = tag("DB1.DBD13", "float32")
    data = bytearray(20)
    struct.pack_into(">h", data, 0, -2)
    struct.pack_into(">f", data, 3, 2.5)
    decoder = BlockDecoder(10, [(word, 10), (high_byte, 10), (real, 13)])
    assert decoder.decode(bytes(data)) == [-2, 0xFF, 2.5]


REFUSALS = [
    (tag("DB1.DBW0", "int16"), 40000, "out of the range of a int16"),
    (tag("DB1.DBW0", "int16", scale=0.1), 1.25, "not a whole int16"),
    (tag("DB1.DBD0", "float32"), 1e39, "beyond the range of a REAL"),
    (tag("DB1.DBD0", "float32"), float("nan"), "not a finite number"),
    (tag("DB1.DBB0", "string", length=3), "four", "do not fit in 3 characters"),
    (tag("DB1.DBB0", "string", length=3, encoding="ascii"), "é", "is not ascii"),
    (tag("DB1.DBW0"), "12", "is not a number"),
]


@pytest.mark.parametrize(("s7tag", "value", "words"), REFUSALS, ids=[r[2] for r in REFUSALS])
def test_values_that_do_not_fit_are_refused(s7tag: S7Tag, value: object, words: str) -> None:
    with pytest.raises(ValueError) as caught:
        encode_value(s7tag, value)  # type: ignore[arg-type]
    assert words in str(caught.value)


def items(*places: tuple[Area, int, int, int]) -> list[Item]:
    return [Item(area, db, start, size, i) for i, (area, db, start, size) in enumerate(places)]


def test_blocks_join_within_the_gap_per_area_and_db() -> None:
    planned = make_blocks(
        items(
            (Area.DB, 1, 0, 2),
            (Area.DB, 1, 10, 4),  # 8 bytes after the first: joined with max_gap 8
            (Area.DB, 1, 30, 2),  # 16 after: a new block
            (Area.DB, 2, 0, 2),  # another DB
            (Area.MARKERS, 0, 0, 1),
        ),
        max_gap=8,
        max_size=200,
    )
    assert [(b.area, b.db, b.start, b.size, len(b.items)) for b in planned] == [
        (Area.MARKERS, 0, 0, 1, 1),
        (Area.DB, 1, 0, 14, 2),
        (Area.DB, 1, 30, 2, 1),
        (Area.DB, 2, 0, 2, 1),
    ]


def test_requests_fit_the_pdu_and_large_blocks_are_read_in_parts() -> None:
    assert payload_limit(240) == 222
    blocks = make_blocks(items((Area.DB, 1, 0, 256), (Area.DB, 2, 0, 4)), 0, payload_limit(240))
    requests = pack_requests(blocks, pdu=240, max_items=20)
    parts = [[(p.block, p.offset, p.length) for p in r.parts] for r in requests]
    # 256 bytes in a 222-byte answer: 222 then 34 (+ header), then DB2's 4 bytes fit with them.
    assert parts == [[(0, 0, 222)], [(0, 222, 34), (1, 0, 4)]]
    many = make_blocks(items(*[(Area.DB, 1, 10 * i, 2) for i in range(45)]), 0, 222)
    assert [len(r.parts) for r in pack_requests(many, pdu=480, max_items=20)] == [20, 20, 5]
    assert [len(r.parts) for r in pack_requests(many, pdu=240, max_items=20)] == [18, 18, 9]
