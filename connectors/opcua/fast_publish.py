"""PublishResponse bodies → data-change columns, straight from the bytes: the subscription hot path.

asyncua decodes every publish response with its generic ``struct_from_binary``, building
dataclasses for each DataValue, Variant and datetime: most of our CPU per subscribed value.
:func:`decode_publish` reads the common case (data changes of scalar numbers, booleans, strings
and dates) with precompiled ``struct`` formats, and answers None for anything else so that the
caller decodes the same bytes with asyncua. The results are exactly asyncua's followed by
:func:`connectors.opcua.values.readings_from`, quirks included; the tests compare both ways.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Any

from asyncua import ua
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.ua_binary import get_string_encoding
from asyncua.ua.uatypes import EPOCH_AS_FILETIME, MAX_OPC_FILETIME

from connectors.opcua.values import quality_of
from gateway.reading import Quality, Reading, Value

__all__ = ["DataChanges", "FastPublish", "decode_publish", "readings_from_changes"]


@dataclass(slots=True)
class DataChanges:
    """One DataChangeNotification as parallel columns, one entry per MonitoredItemNotification."""

    handles: list[int] = field(default_factory=list)
    values: list[Value] = field(default_factory=list)
    """Already converted as ``readings_from`` converts them (DateTime → ISO text)."""
    codes: list[int] = field(default_factory=list)
    """StatusCode values, 0 when absent."""
    source_ns: list[int | None] = field(default_factory=list)
    """Nanoseconds since the Unix epoch as the gateway computes them from asyncua's datetimes
    (microsecond precision, clamped to 1601..9999 like asyncua); None when absent."""
    server_ns: list[int | None] = field(default_factory=list)


@dataclass(slots=True)
class FastPublish:
    """What the gateway uses of a PublishResponse that holds only data changes (or nothing)."""

    subscription_id: int
    sequence_number: int
    notifications: int
    """How many NotificationData the message holds: 0 is a keep-alive."""
    changes: list[DataChanges]


class _Unsupported(ValueError):
    """Something the fast path leaves to asyncua."""


_Row = tuple[int, Value, int, int | None, int | None]


_Tail = tuple[Callable[[bytes, int], tuple[Any, ...]], int, Callable[[tuple[Any, ...]], Any]]
_Plan = tuple[
    Callable[[bytes, int], tuple[Any, ...]],  # the item struct's unpack_from
    Callable[[bytes], Iterator[tuple[Any, ...]]],  # its iter_unpack
    int,  # its size
    Callable[[tuple[Any, ...]], _Row],  # (handle, value, code, source, server) of fields + _TAIL
    int,  # index of the value field, 0 when absent; of the code, source and server timestamps
    int,
    int,
    int,
]


_PUBLISH_RESPONSE = ObjectIds.PublishResponse_Encoding_DefaultBinary
_DATA_CHANGE = ObjectIds.DataChangeNotification_Encoding_DefaultBinary
_UTF8 = ("utf-8", "utf8", "UTF-8", "UTF8")

# asyncua's DateTime: 100 ns ticks since 1601 → datetime(1601) + ticks // 10 µs, negative ticks
# → 1601-01-01, ticks >= MAX_OPC_FILETIME → 9999-12-31 23:59:59. Both clamps fit in a datetime,
# so integer arithmetic on the clamped ticks is exact for every Int64.
_MAX_TICKS = MAX_OPC_FILETIME
_EPOCH_NS = EPOCH_AS_FILETIME // 10 * 1000
_NAIVE_1601 = datetime(1601, 1, 1)
_MAX_ISO = (_NAIVE_1601 + timedelta(microseconds=_MAX_TICKS // 10)).isoformat(
    timespec="milliseconds"
) + "Z"

_I32 = struct.Struct("<i").unpack_from
_U32 = struct.Struct("<I").unpack_from
_I64 = struct.Struct("<q").unpack_from
_FOUR_BYTE_ID = struct.Struct("<BH").unpack_from
_NUMERIC_ID = struct.Struct("<HI").unpack_from
_HEADER = struct.Struct("<qIIB").unpack_from  # Timestamp, RequestHandle, ServiceResult, diag mask
_SUBSCRIPTION = struct.Struct("<Ii").unpack_from  # SubscriptionId, AvailableSequenceNumbers count
_MESSAGE = struct.Struct("<xIqi").unpack_from  # MoreNotifications, Seq, PublishTime, count
_EXTENSION = struct.Struct("<Bi").unpack_from  # encoding byte, body length
_STRING_HEAD = struct.Struct("<Ixxi").unpack_from  # ClientHandle, (mask, type), length
_DATETIME_HEAD = struct.Struct("<Ixxq").unpack_from  # ClientHandle, (mask, type), ticks

_SCALARS: dict[int, str] = {
    ua.VariantType.Null: "",
    ua.VariantType.Boolean: "?",
    ua.VariantType.SByte: "b",
    ua.VariantType.Byte: "B",
    ua.VariantType.Int16: "h",
    ua.VariantType.UInt16: "H",
    ua.VariantType.Int32: "i",
    ua.VariantType.UInt32: "I",
    ua.VariantType.Int64: "q",
    ua.VariantType.UInt64: "Q",
    ua.VariantType.Float: "f",
    ua.VariantType.Double: "d",
}
"""Fixed-size scalars: the same struct formats asyncua unpacks them with."""
_STRING, _DATETIME = int(ua.VariantType.String), int(ua.VariantType.DateTime)

# DataValue encoding mask. asyncua reads the fields in its dataclass order, Value, StatusCode,
# SourceTimestamp, ServerTimestamp, SourcePicoseconds, ServerPicoseconds, while OPC UA Part 6
# puts SourcePicoseconds before ServerTimestamp: with both present the two disagree, so those
# values are left to asyncua (what it makes of them is what the gateway gets either way).
_VALUE, _STATUS, _SOURCE, _SERVER, _SOURCE_PS, _SERVER_PS = 1, 2, 4, 8, 16, 32
_MIN_RUN = 6
"""Shorter runs are read item by item (iter_unpack and its columns cost more to set up)."""
_TAIL = (None, 0)
"""Appended to a plan's unpacked fields: the absent value/timestamps pick None, the code 0."""


def _make_plans() -> dict[int, _Plan]:
    """A plan per key (mask byte << 8 | variant type byte) of the fixed-size scalars, for the
    masks with a value but without the picoseconds ambiguity (see ``_SOURCE_PS``)."""
    plans: dict[int, _Plan] = {}
    for mask in range(256):
        if not mask & _VALUE or mask & (_SOURCE_PS | _SERVER) == _SOURCE_PS | _SERVER:
            continue
        for vt, fmt in _SCALARS.items():
            formats = ["<I", "xx", fmt]  # handle, mask, variant type, value
            where = {_VALUE: 1} if fmt else {}
            for bit, code in ((_STATUS, "I"), (_SOURCE, "q"), (_SERVER, "q")):
                if mask & bit:
                    formats.append(code)
                    where[bit] = len(where) + 1
            formats += ["2x"] * bool(mask & _SOURCE_PS) + ["2x"] * bool(mask & _SERVER_PS)
            none, zero = len(where) + 1, len(where) + 2  # where _TAIL puts None and 0
            pick = itemgetter(
                0,
                where.get(_VALUE, none),
                where.get(_STATUS, zero),
                where.get(_SOURCE, none),
                where.get(_SERVER, none),
            )
            compiled = struct.Struct("".join(formats))
            value_at, code_at, source_at, server_at = (
                where.get(bit, 0) for bit in (_VALUE, _STATUS, _SOURCE, _SERVER)
            )
            plans[mask << 8 | vt] = (
                compiled.unpack_from,
                compiled.iter_unpack,
                compiled.size,
                pick,
                value_at,
                code_at,
                source_at,
                server_at,
            )
    return plans


_PLANS = _make_plans()


def _make_tails() -> dict[int, _Tail]:
    """What follows the value, per mask (value bit cleared): unpack_from, size, and a pick of
    (code, source, server) from the fields + ``_TAIL``."""
    tails: dict[int, _Tail] = {}
    for mask in range(0, 64, 2):
        if mask & (_SOURCE_PS | _SERVER) == _SOURCE_PS | _SERVER:
            continue
        formats, where = ["<"], dict[int, int]()
        for bit, code in ((_STATUS, "I"), (_SOURCE, "q"), (_SERVER, "q")):
            if mask & bit:
                formats.append(code)
                where[bit] = len(where)
        formats += ["2x"] * bool(mask & _SOURCE_PS) + ["2x"] * bool(mask & _SERVER_PS)
        none, zero = len(where), len(where) + 1
        pick = itemgetter(
            where.get(_STATUS, zero), where.get(_SOURCE, none), where.get(_SERVER, none)
        )
        compiled = struct.Struct("".join(formats))
        tails[mask] = (compiled.unpack_from, compiled.size, pick)
    return tails


_TAILS = _make_tails()


def decode_publish(data: bytes | memoryview) -> FastPublish | None:
    """The PublishResponse in ``data``, or None when it holds anything this path does not decode.

    ``data`` is what asyncua's ``UaSession.publish`` gives ``struct_from_binary(ua.PublishResponse,
    data)``: the message body from its start, the PublishResponse type id NodeId included (asyncua
    reads it as the response's ``TypeId`` field). On None, decode the same bytes with asyncua:
    None also covers malformed or truncated input, on which asyncua raises its own error.
    """
    try:
        return _decode(data if isinstance(data, bytes) else bytes(data))
    except (struct.error, IndexError, UnicodeDecodeError, ValueError):
        return None


def _decode(buf: bytes) -> FastPublish | None:
    encoding = get_string_encoding()
    if encoding not in _UTF8:
        return None
    pos = _expect_id(buf, 0, _PUBLISH_RESPONSE)
    _, _, service_result, diagnostics = _HEADER(buf, pos)
    if service_result or diagnostics:
        return None
    pos = _skip_strings(buf, pos + 17)  # StringTable
    if buf[pos : pos + 3] != b"\x00\x00\x00":
        return None  # AdditionalHeader: only the null ExtensionObject
    subscription_id, count = _SUBSCRIPTION(buf, pos + 3)
    pos = _skip_array(count, 4, pos + 11)  # AvailableSequenceNumbers
    sequence_number, _, count = _MESSAGE(buf, pos)
    pos += 17
    if count < -1:
        return None
    changes: list[DataChanges] = []
    for _ in range(count):
        pos = _expect_id(buf, pos, _DATA_CHANGE)
        kind, length = _EXTENSION(buf, pos)
        pos += 5
        end = pos + length
        if kind != 1 or length < 1 or end > len(buf):
            return None  # asyncua reads the body as exactly `length` bytes
        change, pos = _data_changes(buf, pos, encoding)
        if pos > end:
            return None
        pos = end
        changes.append(change)
    count = _I32(buf, pos)[0]
    pos = _skip_array(count, 4, pos + 4)  # Results (StatusCode)
    if _I32(buf, pos)[0] not in (0, -1):
        return None  # DiagnosticInfos
    return FastPublish(subscription_id, sequence_number, len(changes), changes)


def _expect_id(buf: bytes, pos: int, identifier: int) -> int:
    """Past a numeric ns=0 NodeId equal to ``identifier`` (four-byte or numeric encoding)."""
    kind = buf[pos]
    if kind == 1:
        namespace, found = _FOUR_BYTE_ID(buf, pos + 1)
        pos += 4
    elif kind == 2:
        namespace, found = _NUMERIC_ID(buf, pos + 1)
        pos += 7
    else:
        raise _Unsupported
    if namespace or found != identifier:
        raise _Unsupported
    return pos


def _skip_array(count: int, size: int, pos: int) -> int:
    if count < -1:
        raise _Unsupported
    return pos + max(count, 0) * size


def _skip_strings(buf: bytes, pos: int) -> int:
    count = _I32(buf, pos)[0]
    pos += 4
    if count < -1:
        raise _Unsupported
    for _ in range(count):
        length = _I32(buf, pos)[0]
        if length < -1:
            raise _Unsupported
        pos += 4 + max(length, 0)
    return pos


def _data_changes(buf: bytes, pos: int, encoding: str) -> tuple[DataChanges, int]:
    """A DataChangeNotification body: MonitoredItems, then (empty) DiagnosticInfos.

    Items tend to come in runs of one mask and type (a subscription's doubles, say): a run of
    fixed-size items is found with strided slices and read by one ``iter_unpack``, in C. Other
    items are read one by one into rows, moved into the columns before a run and at the end.
    """
    left = _I32(buf, pos)[0]
    pos += 4
    if left < -1:
        raise _Unsupported
    plans = _PLANS
    handles: list[int] = []
    values: list[Value] = []
    codes: list[int] = []
    sources: list[int | None] = []
    servers: list[int | None] = []
    columns: list[list[Any]] = [handles, values, codes, sources, servers]
    rows: list[_Row] = []
    last = before = -1  # the keys of the two previous items: a third alike may start a run
    while left > 0:
        key = buf[pos + 4] << 8 | buf[pos + 5]
        plan = plans.get(key)
        if plan is None:
            row, pos = _item(buf, pos, key, encoding)
            rows.append(row)
            left -= 1
        elif not key == last == before:
            rows.append(plan[3](plan[0](buf, pos) + _TAIL))
            pos += plan[2]
            left -= 1
        else:
            unpack, iter_unpack, size, pick, value_at, code_at, source_at, server_at = plan
            run = _run(buf, pos, size, left)
            end = pos + run * size
            left -= run
            if run < _MIN_RUN:
                rows += [pick(unpack(buf, at) + _TAIL) for at in range(pos, end, size)]
            else:
                _move(rows, columns)
                fields = list(zip(*iter_unpack(buf[pos:end]), strict=True))
                handles += fields[0]
                values += fields[value_at] if value_at else [None] * run
                codes += fields[code_at] if code_at else [0] * run
                sources += fields[source_at] if source_at else [None] * run
                servers += fields[server_at] if server_at else [None] * run
            pos = end
        last, before = key, last
    _move(rows, columns)
    if _I32(buf, pos)[0] not in (0, -1):
        raise _Unsupported  # DiagnosticInfos
    return DataChanges(handles, values, codes, _ns(sources), _ns(servers)), pos + 4


def _move(rows: list[_Row], columns: list[list[Any]]) -> None:
    for column, fields in zip(columns, zip(*rows, strict=True), strict=False):
        column += fields
    rows.clear()


def _run(buf: bytes, pos: int, size: int, left: int) -> int:
    """How many of the ``left`` items from ``pos`` on have the first one's mask and variant type
    bytes, hence its size: checked in growing windows, so a short run costs a short check."""
    window = 8
    while True:
        window = min(window, left)
        end = pos + window * size
        masks, types = buf[pos + 4 : end : size], buf[pos + 5 : end : size]
        run = min(
            len(masks) - len(masks.lstrip(masks[:1])), len(types) - len(types.lstrip(types[:1]))
        )
        if run < window or window == left:
            return run
        window *= 8


def _item(buf: bytes, pos: int, key: int, encoding: str) -> tuple[_Row, int]:
    """A MonitoredItemNotification no plan covers (its key: mask and variant type bytes): a
    string, a date or no value, else one for asyncua."""
    mask, vt = key >> 8, key & 0xFF
    value: Value
    if not mask & _VALUE:
        handle, value = _U32(buf, pos)[0], None
        pos += 5
    elif vt == _STRING:
        handle, length = _STRING_HEAD(buf, pos)
        pos += 10
        if length == -1:
            value = None
        else:
            end = pos + length
            if length < 0 or end > len(buf):
                raise _Unsupported
            value = str(buf[pos:end], encoding, "surrogateescape")  # as asyncua decodes
            pos = end
    elif vt == _DATETIME:
        handle, ticks = _DATETIME_HEAD(buf, pos)
        value = _iso(ticks)
        pos += 14
    else:
        raise _Unsupported  # another type, or a fixed-size one that _PLANS leaves to asyncua
    tail = _TAILS.get(mask & 0x3E)
    if tail is None:
        raise _Unsupported  # source picoseconds and server timestamp: see _SOURCE_PS
    unpack, size, pick = tail
    code, source, server = pick(unpack(buf, pos) + _TAIL)
    return (handle, value, code, source, server), pos + size


def _iso(ticks: int) -> str | None:
    """A DateTime value as ``values._datetime`` renders asyncua's datetime of it."""
    if ticks < 10:
        return None  # 1601-01-01 (or earlier, clamped): the OPC UA null date
    if ticks >= _MAX_TICKS:
        return _MAX_ISO
    return (_NAIVE_1601 + timedelta(microseconds=ticks // 10)).isoformat(
        timespec="milliseconds"
    ) + "Z"


def _ns(ticks: list[int | None]) -> list[int | None]:
    """Ticks → nanoseconds since 1970 at microsecond precision, clamped as asyncua clamps."""
    return [
        None
        if t is None
        else t // 10 * 1000 - _EPOCH_NS
        if 0 <= t < _MAX_TICKS
        else (0 if t < 0 else _MAX_TICKS) // 10 * 1000 - _EPOCH_NS
        for t in ticks
    ]


_new_tuple = tuple.__new__
_GOOD, _BAD = Quality.GOOD, Quality.BAD


def readings_from_changes(
    device: str,
    names: Sequence[str],
    changes: DataChanges,
    use_server_timestamp: bool,
    received_ns: int,
) -> tuple[list[Reading], int]:
    """What ``readings_from(device, [names[h] for h in changes.handles], <asyncua's DataValues>,
    use_server_timestamp, received_ns)`` returns: the readings and how many are good."""
    firsts, seconds = (
        (changes.server_ns, changes.source_ns)
        if use_server_timestamp
        else (changes.source_ns, changes.server_ns)
    )
    codes = changes.codes
    if None not in firsts and (not codes or max(codes) >> 30 == 0):  # all good, all stamped
        readings = [
            _new_tuple(Reading, (device, names[handle], value, _GOOD, stamp, received_ns, None))
            for handle, value, stamp in zip(changes.handles, changes.values, firsts, strict=True)
        ]
        return readings, len(readings)
    readings = []
    append = readings.append
    good = 0
    for handle, value, code, first, second in zip(
        changes.handles, changes.values, codes, firsts, seconds, strict=True
    ):
        # `first or second` on datetimes: only None is absent (0 ns is the Unix epoch).
        stamp = first if first is not None else second if second is not None else received_ns
        if code >> 30:
            quality, reason = quality_of(code)
            append(
                _new_tuple(
                    Reading,
                    (
                        device,
                        names[handle],
                        None if quality is _BAD else value,
                        quality,
                        stamp,
                        received_ns,
                        reason,
                    ),
                )
            )
        else:
            append(
                _new_tuple(Reading, (device, names[handle], value, _GOOD, stamp, received_ns, None))
            )
            good += 1
    return readings, good
