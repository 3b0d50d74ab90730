"""The fast PublishResponse decoder against asyncua followed by ``readings_from``, both ways on
the same bytes: generated, hand-made (raw ticks, odd encodings), fuzzed and recorded from a real
asyncua server. Where the fast path declines (None), asyncua decodes instead."""

from __future__ import annotations

import contextvars
import itertools
import math
import random
import struct
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, overload

import pytest
from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.utils import Buffer
from asyncua.server.server import Server
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.ua_binary import set_string_encoding, struct_from_binary, struct_to_binary
from asyncua.ua.uatypes import EPOCH_AS_FILETIME, MAX_OPC_FILETIME

from connectors.opcua.fast_publish import (
    DataChanges,
    FastPublish,
    decode_publish,
    readings_from_changes,
)
from connectors.opcua.values import convert_variant, datetime_ns, readings_from
from gateway.reading import Reading
from tests.support.processes import async_wait_until, free_port

VT = ua.VariantType
DEVICE = "plc"
RECEIVED = 1_700_000_000_123_456_789
NOW = ua.DateTime(2026, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
EPOCH = ua.DateTime(1970, 1, 1, tzinfo=UTC)
NULL_DATE = ua.DateTime(1601, 1, 1, tzinfo=UTC)
BEFORE_1601 = ua.DateTime(1500, 6, 1, tzinfo=UTC)  # asyncua encodes it as 0 ticks
LAST_DATE = ua.DateTime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)  # encoded as Int64 max

SCALARS: list[tuple[ua.VariantType, Any]] = [
    (VT.Null, None),
    (VT.Boolean, True),
    (VT.Boolean, False),
    (VT.SByte, -128),
    (VT.SByte, 127),
    (VT.Byte, 0),
    (VT.Byte, 255),
    (VT.Int16, -32768),
    (VT.Int16, 32767),
    (VT.UInt16, 65535),
    (VT.Int32, -(2**31)),
    (VT.Int32, 2**31 - 1),
    (VT.UInt32, 2**32 - 1),
    (VT.Int64, -(2**63)),
    (VT.Int64, 2**63 - 1),
    (VT.UInt64, 0),
    (VT.UInt64, 2**64 - 1),
    (VT.Float, 0.1),  # not exact in 32 bits: the float asyncua makes of it
    (VT.Float, -0.0),
    (VT.Float, math.nan),
    (VT.Float, math.inf),
    (VT.Float, -math.inf),
    (VT.Float, 3.4028234663852886e38),
    (VT.Double, -2.25e300),
    (VT.Double, 5e-324),
    (VT.Double, math.nan),
    (VT.Double, -math.inf),
    (VT.String, ""),
    (VT.String, "Ünïcode ✓ 测试 🚀"),
    (VT.String, None),
    (VT.String, "x" * 300),
    (VT.DateTime, NULL_DATE),
    (VT.DateTime, BEFORE_1601),
    (VT.DateTime, EPOCH),
    (VT.DateTime, NOW),
    (VT.DateTime, LAST_DATE),
]
STATUSES: list[int | None] = [
    None,
    0,
    StatusCodes.UncertainLastUsableValue | 0x0400,  # info bits set
    StatusCodes.BadNodeIdUnknown,
    0xC0010000,  # severity 3: bad too
]
STAMPS = [NOW, EPOCH, NULL_DATE, BEFORE_1601, LAST_DATE]


class AnyNames(Sequence[str]):
    """Tag names for every client handle, even fuzzed ones."""

    def __len__(self) -> int:
        return 2**32

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...

    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        if isinstance(index, slice):
            raise TypeError("no slices")
        return f"t{index}"


NAMES = AnyNames()


def comparable(value: Any) -> Any:
    """Equal when equal as values and as types, NaN equal to NaN, -0.0 not equal to 0.0."""
    if isinstance(value, Reading):
        return value._replace(value=comparable(value.value))
    if isinstance(value, list | tuple):
        return [comparable(item) for item in value]
    return (type(value).__name__, repr(value))


def data_value(
    vt: ua.VariantType,
    value: Any,
    status: int | None = 0,
    source: ua.DateTime | None = None,
    server: ua.DateTime | None = None,
    source_ps: int | None = None,
    server_ps: int | None = None,
) -> ua.DataValue:
    return ua.DataValue(
        ua.Variant(value, vt),
        None if status is None else ua.StatusCode(ua.UInt32(status)),
        SourceTimestamp=source,
        ServerTimestamp=server,
        SourcePicoseconds=None if source_ps is None else ua.UInt16(source_ps),
        ServerPicoseconds=None if server_ps is None else ua.UInt16(server_ps),
    )


def data_change(values: Sequence[ua.DataValue], first_handle: int = 0) -> ua.DataChangeNotification:
    return ua.DataChangeNotification(
        MonitoredItems=[
            ua.MonitoredItemNotification(first_handle + i, dv) for i, dv in enumerate(values)
        ]
    )


def publish_bytes(
    notifications: Sequence[Any],
    results: Sequence[int] = (0, StatusCodes.BadSequenceNumberUnknown),
    **header: Any,
) -> bytes:
    response = ua.PublishResponse()
    response.ResponseHeader.RequestHandle = 17
    for name, value in header.items():
        setattr(response.ResponseHeader, name, value)
    params = response.Parameters
    params.SubscriptionId = 42
    params.AvailableSequenceNumbers = [6, 7]
    params.MoreNotifications = False
    params.NotificationMessage.SequenceNumber = 7
    params.NotificationMessage.NotificationData = list(notifications)
    params.Results = [ua.StatusCode(ua.UInt32(code)) for code in results]
    return struct_to_binary(response)


def asyncua_way(
    data: bytes, use_server: bool
) -> tuple[ua.PublishResponse, list[list[ua.MonitoredItemNotification]], list[Any]]:
    """What the gateway gets today: asyncua's response, then readings_from per data change."""
    response = struct_from_binary(ua.PublishResponse, Buffer(data))
    changes: list[list[ua.MonitoredItemNotification]] = []
    results: list[tuple[list[Reading], int]] = []
    for notification in response.Parameters.NotificationMessage.NotificationData or []:
        assert isinstance(notification, ua.DataChangeNotification)
        items = notification.MonitoredItems
        changes.append(items)
        names = [NAMES[item.ClientHandle] for item in items]
        values = [item.Value for item in items]
        results.append(readings_from(DEVICE, names, values, use_server, RECEIVED))
    return response, changes, results


def assert_same(data: bytes) -> FastPublish:
    """The fast decoding of ``data`` is exactly asyncua's, both timestamp choices."""
    fast = decode_publish(data)
    assert fast is not None
    assert comparable(decode_publish(memoryview(data))) == comparable(fast)
    for use_server in (False, True):
        response, changes, results = asyncua_way(data, use_server)
        params = response.Parameters
        message = params.NotificationMessage
        assert (fast.subscription_id, fast.sequence_number, fast.notifications) == (
            params.SubscriptionId,
            message.SequenceNumber,
            len(message.NotificationData or []),
        )
        assert len(fast.changes) == len(changes)
        for columns, items in zip(fast.changes, changes, strict=True):
            dvs = [item.Value for item in items]
            assert columns.handles == [item.ClientHandle for item in items]
            assert columns.codes == [dv.StatusCode.value for dv in dvs]
            assert columns.source_ns == [stamp_ns(dv.SourceTimestamp) for dv in dvs]
            assert columns.server_ns == [stamp_ns(dv.ServerTimestamp) for dv in dvs]
            assert comparable(columns.values) == comparable(
                [convert_variant(dv.Value) for dv in dvs]
            )
        fast_results = [
            readings_from_changes(DEVICE, NAMES, columns, use_server, RECEIVED)
            for columns in fast.changes
        ]
        assert comparable(fast_results) == comparable(results)
    return fast


def stamp_ns(stamp: datetime | None) -> int | None:
    return None if stamp is None else datetime_ns(stamp)


def every_combination() -> Iterator[ua.DataValue]:
    """Every scalar × status × which timestamps × picoseconds, timestamps cycling the edges."""
    stamps = itertools.cycle(STAMPS)
    picos = itertools.cycle([(None, None), (None, 9999), (1, None), (2, 3)])
    for (vt, value), status in itertools.product(SCALARS, STATUSES):
        for has_source, has_server in itertools.product((False, True), repeat=2):
            source_ps, server_ps = next(picos)
            if has_server:
                source_ps = None  # see test_source_picoseconds_with_a_server_timestamp
            yield data_value(
                vt,
                value,
                status,
                next(stamps) if has_source else None,
                next(stamps) if has_server else None,
                source_ps,
                server_ps,
            )


def test_every_supported_type_status_and_timestamp_mask() -> None:
    values = list(every_combination())
    fast = assert_same(publish_bytes([data_change(values)]))
    readings, good = readings_from_changes(DEVICE, NAMES, fast.changes[0], False, RECEIVED)
    assert len(readings) == len(SCALARS) * len(STATUSES) * 4
    assert 0 < good < len(readings)


def test_several_data_changes_in_one_response() -> None:
    values = list(every_combination())
    thirds = [values[:50], values[50:51], values[51:]]
    fast = assert_same(
        publish_bytes([data_change(part, 1000 * i) for i, part in enumerate(thirds)])
    )
    assert (fast.notifications, [len(c.handles) for c in fast.changes]) == (
        3,
        [50, 1, len(values) - 51],
    )


def test_a_keep_alive_and_an_empty_data_change() -> None:
    keep_alive = assert_same(publish_bytes([]))
    assert (keep_alive.notifications, keep_alive.changes) == (0, [])
    empty = assert_same(publish_bytes([ua.DataChangeNotification()]))
    assert (empty.notifications, empty.changes) == (1, [DataChanges()])


def test_string_table_is_skipped() -> None:
    data = publish_bytes([data_change([data_value(VT.Int32, 5)])], StringTable=["a", "", "ü"])
    assert assert_same(data).changes[0].values == [5]


def test_values_and_readings_as_expected() -> None:
    """The comparison with asyncua is the spec; this pins a few of its answers in plain sight."""
    uncertain = StatusCodes.UncertainLastUsableValue
    data = publish_bytes(
        [
            data_change(
                [
                    data_value(VT.Double, 1.5, None, NOW, EPOCH),
                    data_value(VT.DateTime, NOW, 0, None, EPOCH),
                    data_value(VT.String, "ok", uncertain, NULL_DATE),
                    data_value(VT.Int32, 7, StatusCodes.BadNodeIdUnknown),
                    data_value(VT.DateTime, LAST_DATE, 0, LAST_DATE),
                ]
            )
        ]
    )
    changes = assert_same(data).changes[0]
    null_ns = -EPOCH_AS_FILETIME * 100
    last_ns = (MAX_OPC_FILETIME - EPOCH_AS_FILETIME) * 100
    assert changes.values == [1.5, "2026-05-06T07:08:09.123Z", "ok", 7, "9999-12-31T23:59:59.000Z"]
    assert changes.source_ns == [datetime_ns(NOW), None, null_ns, None, last_ns]
    assert changes.server_ns == [0, 0, None, None, None]
    readings, good = readings_from_changes(DEVICE, ["a", "b", "c", "d", "e"], changes, True, 5)
    assert [(r.tag, r.value, r.quality, r.source_ns, r.reason) for r in readings] == [
        ("a", 1.5, "good", 0, None),  # the Unix epoch is a timestamp, not an absent one
        ("b", "2026-05-06T07:08:09.123Z", "good", 0, None),
        ("c", "ok", "uncertain", null_ns, "UncertainLastUsableValue"),
        ("d", None, "bad", 5, "BadNodeIdUnknown"),
        ("e", "9999-12-31T23:59:59.000Z", "good", last_ns, None),
    ]
    assert good == 3


# --- hand-made bytes: raw ticks and encodings asyncua's encoder never produces -------------


def item(handle: int, mask: int, *fields: bytes) -> bytes:
    return struct.pack("<IB", handle, mask) + b"".join(fields)


def ticks(value: int) -> bytes:
    return struct.pack("<q", value)


def raw_publish(
    *items: bytes,
    diagnostics: int = 0,
    numeric_id: bool = True,
    namespace: int = 0,
    padding: bytes = b"",
    short: int = 0,
) -> bytes:
    """A response whose one data change is ``items``, as an ExtensionObject body: followed by
    ``padding`` inside the body, or with a body length ``short`` bytes less than its content."""
    body = struct.pack("<i", len(items)) + b"".join(items) + struct.pack("<i", diagnostics)
    body += padding
    kind = ua.NodeIdType.Numeric if numeric_id else ua.NodeIdType.FourByte
    identifier = ua.Int32(ObjectIds.DataChangeNotification_Encoding_DefaultBinary)
    type_id = ua.NodeId(identifier, ua.Int16(namespace), kind)
    extension = ua.ExtensionObject(TypeId=type_id, Body=ua.ByteString(body))
    data = publish_bytes([extension], results=())
    length = struct.pack("<i", len(body))
    assert data.count(length + body) == 1
    return data.replace(length + body, struct.pack("<i", len(body) - short) + body)


RAW_TICKS = [
    -(2**63),
    -1,
    0,
    1,
    9,
    10,
    15,
    EPOCH_AS_FILETIME - 1,
    EPOCH_AS_FILETIME,
    EPOCH_AS_FILETIME + 19,
    134_000_000_000_000_007,
    MAX_OPC_FILETIME - 1,
    MAX_OPC_FILETIME,
    MAX_OPC_FILETIME + 1,
    2**63 - 1,
]


@pytest.mark.parametrize("numeric_id", [True, False])
def test_raw_ticks_as_timestamps_and_as_values(numeric_id: bool) -> None:
    items = [
        item(i, 0x0D, bytes([VT.DateTime]), ticks(tick), ticks(tick), ticks(RAW_TICKS[-i]))
        for i, tick in enumerate(RAW_TICKS)
    ]
    fast = assert_same(raw_publish(*items, numeric_id=numeric_id))
    assert fast.changes[0].values[:3] == [None, None, None]  # up to 1601-01-01: null


def test_odd_but_valid_encodings() -> None:
    items = [
        item(0, 0xC1, bytes([VT.Int16]), struct.pack("<h", -5)),  # mask bits asyncua ignores
        item(1, 0x01, bytes([VT.Boolean]), b"\x02"),  # any non-zero byte is True
        item(2, 0x01, bytes([VT.String]), struct.pack("<i", 3), b"a\xffb"),  # not UTF-8
        item(3, 0x01, bytes([VT.Float]), b"\x01\x00\xc0\x7f"),  # a NaN with a payload
        item(4, 0x00),  # no value at all
        item(5, 0x02, struct.pack("<I", StatusCodes.BadNoCommunication)),
        item(6, 0x31, bytes([VT.Null]), b"\x01\x00", b"\x02\x00"),  # picoseconds alone
    ]
    fast = assert_same(raw_publish(*items, diagnostics=-1, padding=b"\xff" * 3))
    assert fast.changes[0].values[:3] == [-5, True, "a\udcffb"]


def test_a_body_shorter_than_its_content_is_left_to_asyncua() -> None:
    """asyncua reads an ExtensionObject's body within its length: here the DataChangeNotification's
    DiagnosticInfos count lies past it, and asyncua fails where reading on would succeed."""
    data = raw_publish(item(1, 0x01, bytes([VT.Int32]), struct.pack("<i", 5)), short=4)
    assert decode_publish(data) is None
    with pytest.raises(Exception):  # noqa: B017 (whatever asyncua raises)
        struct_from_binary(ua.PublishResponse, Buffer(data))
    assert decode_publish(raw_publish(item(1, 0x01, bytes([VT.Int32]), struct.pack("<i", 5))))


# --- what the fast path leaves to asyncua ----------------------------------------------------


def fallbacks() -> Iterator[tuple[str, bytes]]:
    one = data_change([data_value(VT.Int32, 1)])
    yield (
        "status change",
        publish_bytes([ua.StatusChangeNotification(Status=ua.StatusCode(ua.UInt32(0)))]),
    )
    yield "status change after a data change", publish_bytes([one, ua.StatusChangeNotification()])
    events = ua.EventNotificationList(
        Events=[ua.EventFieldList(ClientHandle=1, EventFields=[ua.Variant(1.5)])]
    )
    yield "events", publish_bytes([events])
    for name, variant in [
        ("array", ua.Variant([1, 2], VT.Int32)),
        ("empty array", ua.Variant([], VT.Double)),
        ("matrix", ua.Variant([[1, 2], [3, 4]], VT.Int32)),
        ("localized text", ua.Variant(ua.LocalizedText("x", "en"), VT.LocalizedText)),
        ("byte string", ua.Variant(b"\x01", VT.ByteString)),
        ("node id", ua.Variant(ua.NodeId(ua.Int32(5), ua.Int16(2)), VT.NodeId)),
        ("guid", ua.Variant(uuid.UUID(int=1), VT.Guid)),
        ("status code", ua.Variant(ua.StatusCode(ua.UInt32(0)), VT.StatusCode)),
        ("xml", ua.Variant(ua.XmlElement(ua.String("<a/>")), VT.XmlElement)),
    ]:
        yield name, publish_bytes([data_change([data_value(VT.Int32, 1), ua.DataValue(variant)])])
    bad = ua.StatusCode(ua.UInt32(StatusCodes.BadTooManyPublishRequests))
    yield "bad service result", publish_bytes([one], ServiceResult=bad)
    yield (
        "diagnostics",
        publish_bytes([one], ServiceDiagnostics=ua.DiagnosticInfo(SymbolicId=ua.Int32(1))),
    )
    header = ua.ExtensionObject(
        TypeId=ua.NodeId(ua.Int32(5), ua.Int16(1)), Body=ua.ByteString(b"x")
    )
    yield "additional header", publish_bytes([one], AdditionalHeader=header)
    with_diagnostics = data_change([data_value(VT.Int32, 1)])
    with_diagnostics.DiagnosticInfos = [ua.DiagnosticInfo()]
    yield "data change diagnostics", publish_bytes([with_diagnostics])
    yield "another response", struct_to_binary(ua.ReadResponse())
    int32 = item(1, 0x01, bytes([VT.Int32]), struct.pack("<i", 5))
    yield "i=811 in namespace 1", raw_publish(int32, namespace=1)
    yield "i=811 in namespace 1, four-byte id", raw_publish(int32, namespace=1, numeric_id=False)
    negative = item(1, 0x01, bytes([VT.String]), struct.pack("<i", -2), b"abcd")
    yield "string of length -2", raw_publish(negative)
    yield (
        "source picoseconds and server timestamp",
        publish_bytes([data_change([data_value(VT.Int32, 1, 0, NOW, NOW, source_ps=1)])]),
    )
    body_encoded = publish_bytes([one])
    assert body_encoded.count(b"\x01\x00\x2b\x03\x01") == 1  # i=811, then "binary body"
    yield "XML body", body_encoded.replace(b"\x01\x00\x2b\x03\x01", b"\x01\x00\x2b\x03\x02")


@pytest.mark.parametrize(("name", "data"), list(fallbacks()))
def test_what_is_left_to_asyncua(name: str, data: bytes) -> None:
    assert decode_publish(data) is None, name


def test_source_picoseconds_with_a_server_timestamp() -> None:
    """asyncua reads a DataValue's fields in its dataclass order (server timestamp before source
    picoseconds) where OPC UA Part 6 puts the source picoseconds first: the fast path declines
    rather than pick a side. Here the bytes in the standard's order, as asyncua reads them."""
    standard = item(
        1, 0x1D, bytes([VT.Int32]), struct.pack("<i", 1), ticks(EPOCH_AS_FILETIME), b"\x05\x00"
    ) + ticks(EPOCH_AS_FILETIME + 10)
    data = raw_publish(standard)
    assert decode_publish(data) is None
    _, changes, _ = asyncua_way(data, False)
    assert changes[0][0].Value.SourcePicoseconds != 5  # asyncua's reading of the standard's bytes


def test_other_string_encodings_are_left_to_asyncua() -> None:
    data = publish_bytes([data_change([data_value(VT.String, "é")])])

    def latin1() -> FastPublish | None:
        set_string_encoding("latin-1")
        return decode_publish(data)

    assert contextvars.copy_context().run(latin1) is None
    assert decode_publish(data) is not None


def test_truncated_responses_are_left_to_asyncua() -> None:
    data = publish_bytes([data_change([data_value(VT.String, "abc", 0, NOW, NOW)])])
    for size in range(len(data)):
        assert decode_publish(data[:size]) is None, size
        with pytest.raises(Exception):  # noqa: B017 (whatever asyncua raises)
            struct_from_binary(ua.PublishResponse, Buffer(data[:size]))
    assert decode_publish(data) is not None


def mixed_items() -> list[ua.DataValue]:
    return [
        data_value(vt, v, s, NOW, EPOCH) for (vt, v), s in zip(SCALARS, itertools.cycle(STATUSES))
    ]


def runs_of_items(rng: random.Random, sizes: Sequence[int]) -> list[ua.DataValue]:
    """Blocks of items alike (same type, same DataValue mask), which the decoder reads as runs."""
    kinds: list[tuple[ua.VariantType, int | None, bool, bool]] = [
        (vt, status, source, server)
        for vt in (VT.Double, VT.Int32, VT.Null, VT.Boolean, VT.Float, VT.String, VT.UInt64)
        for status in (None, 0, StatusCodes.UncertainLastUsableValue, StatusCodes.BadTimeout)
        for source, server in itertools.product((False, True), repeat=2)
    ]
    values = []
    for size in sizes:
        vt, status, source, server = rng.choice(kinds)
        for _ in range(size):
            value = random_value(rng, vt)
            first, second = (random_stamp(rng) if rng.random() < 0.9 else EPOCH for _ in "ab")
            values.append(
                data_value(vt, value, status, first if source else None, second if server else None)
            )
    return values


def test_runs_of_items_alike() -> None:
    rng = random.Random(77)
    sizes = [1, 2, 3, 7, 1, 600, 5, 6, 9, 64, 65, 1, 8, 2, 513, 3]
    values = runs_of_items(rng, sizes)
    parts = [values[:300], values[300:301], values[301:]]
    fast = assert_same(publish_bytes([data_change(part, 5000 * i) for i, part in enumerate(parts)]))
    assert sum(len(c.handles) for c in fast.changes) == sum(sizes)


@pytest.mark.parametrize("items", ["mixed", "runs"])
def test_fuzzed_bytes_never_raise_and_any_answer_is_asyncuas(items: str) -> None:
    rng = random.Random(20260506)
    values = mixed_items() if items == "mixed" else runs_of_items(rng, [3, 12, 2, 9, 1])
    original = publish_bytes([data_change(values[:12]), data_change(values[12:])])
    decoded = 0
    for _ in range(300):
        data = bytearray(original)
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if decode_publish(bytes(data)) is not None:
            assert_same(bytes(data))
            decoded += 1
    assert decoded > 150  # most mutations hit values and timestamps, which both decode


# --- randomized round trip -------------------------------------------------------------------


SUPPORTED = [
    *(VT.Null, VT.Boolean, VT.SByte, VT.Byte, VT.Int16, VT.UInt16, VT.Int32, VT.UInt32),
    *(VT.Int64, VT.UInt64, VT.Float, VT.Double, VT.String, VT.DateTime),
]


def random_stamp(rng: random.Random) -> ua.DateTime:
    return ua.DateTime.fromtimestamp(rng.uniform(-1.2e10, 2.5e11), UTC)  # years 1589 to 9892


def random_value(rng: random.Random, vt: ua.VariantType) -> Any:
    bits = {VT.SByte: 8, VT.Int16: 16, VT.Int32: 32, VT.Int64: 64}
    unsigned = {VT.Byte: 8, VT.UInt16: 16, VT.UInt32: 32, VT.UInt64: 64}
    if vt in bits:
        return rng.randrange(-(2 ** (bits[vt] - 1)), 2 ** (bits[vt] - 1))
    if vt in unsigned:
        return rng.randrange(2 ** unsigned[vt])
    if vt in (VT.Float, VT.Double):  # any bit pattern: NaNs with payloads, infinities, subnormals
        fmt = "<f" if vt == VT.Float else "<d"
        return struct.unpack(fmt, rng.randbytes(struct.calcsize(fmt)))[0]
    if vt == VT.String:
        points = [
            rng.choice([rng.randrange(32, 127), rng.randrange(160, 0xD7FF)]) for _ in range(20)
        ]
        return "".join(map(chr, points[: rng.randrange(20)]))
    if vt == VT.DateTime:
        return random_stamp(rng)
    if vt == VT.Boolean:
        return rng.random() < 0.5
    return None


def test_random_round_trip() -> None:
    rng = random.Random(1234)
    values = []
    for _ in range(400):
        vt = rng.choice(SUPPORTED)
        value = random_value(rng, vt)
        stamps = [random_stamp(rng) for _ in range(2)]
        source, server = (stamp if rng.random() < 0.7 else None for stamp in stamps)
        values.append(
            data_value(
                vt,
                value,
                rng.choice([*STATUSES, rng.randrange(2**32)]),
                source,
                server,
                rng.randrange(10000) if server is None and rng.random() < 0.2 else None,
                rng.randrange(10000) if rng.random() < 0.2 else None,
            )
        )
    sizes = [0, 1, 150, 249]
    parts = [data_change(values[a:b], a) for a, b in itertools.pairwise([*sizes, len(values)])]
    assert assert_same(publish_bytes(parts)).notifications == 4


# --- recorded from a real asyncua server -----------------------------------------------------


class IgnoreChanges:
    def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
        pass


def changed(vt: ua.VariantType, value: Any, round_: int) -> Any:
    if vt == VT.Boolean:
        return round_ % 2 == 1
    if vt == VT.String:
        return f"state {round_}"
    if vt == VT.DateTime:
        return ua.DateTime(2027, round_, 1, tzinfo=UTC)
    return value + round_


async def test_responses_recorded_from_a_real_server() -> None:
    port = free_port()
    url = f"opc.tcp://127.0.0.1:{port}/fast/"
    server = Server()
    await server.init()
    server.set_endpoint(url)
    index = await server.register_namespace("urn:fast-publish-test")
    plant = await server.nodes.objects.add_object(index, "Plant")
    initial: list[tuple[ua.VariantType, Any]] = [
        (VT.Double, 1.5),
        (VT.Float, 2.5),
        (VT.Int32, -3),
        (VT.UInt16, 4),
        (VT.Int64, 2**40),
        (VT.Boolean, False),
        (VT.String, "idle"),
        (VT.DateTime, NOW),
        (VT.SByte, -1),
        (VT.Byte, 200),
        *((VT.Double, float(i)) for i in range(8)),  # a run of items alike
    ]
    nodes = [
        await plant.add_variable(index, f"v{i}", ua.Variant(value, vt))
        for i, (vt, value) in enumerate(initial)
    ]
    client = Client(url, timeout=5)
    bodies: list[bytes] = []
    await server.start()
    try:
        await client.connect()
        session = client.uaclient.session
        send = session._send_request

        async def recording(request: Any, *args: Any, **kwargs: Any) -> Buffer:
            data = await send(request, *args, **kwargs)
            if isinstance(request, ua.PublishRequest):
                bodies.append(bytes(data))  # what asyncua then decodes, type id first
            return data

        session._send_request = recording  # type: ignore[method-assign]
        subscription = await client.create_subscription(10, IgnoreChanges())
        await subscription.subscribe_data_change(nodes)

        def changed_items() -> int:
            decoded = [decode_publish(body) for body in bodies]
            return sum(len(c.handles) for d in decoded if d for c in d.changes)

        async def until(count: int, what: str) -> None:
            await async_wait_until(lambda: changed_items() >= count, 3, what)

        await until(len(nodes), "the initial values")
        for round_ in range(1, 4):
            for node, (vt, value) in zip(nodes, initial, strict=True):
                await node.write_value(ua.Variant(changed(vt, value, round_), vt))
            await until(len(nodes) * (round_ + 1), f"the changes of round {round_}")
        await subscription.delete()
    finally:
        await client.disconnect()
        await server.stop()
    assert bodies
    for body in bodies:
        assert_same(body)
