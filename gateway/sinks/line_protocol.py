r"""InfluxDB line protocol for batches of readings, built directly as strings.

One point per device and timestamp, one field per tag (the layout Grafana users expect)::

    telemetry,device=press-1,gateway=gw1,line=line\ 1 temp=61.7,ok=true,speed=1450i 1732600000123

- measurement: the batch's (device's or profile's), else the sink's default;
- tags: ``gateway``, ``device`` and the device's labels, sorted by key; empty values dropped;
  a label named ``gateway`` or ``device`` is ignored (logged once);
- fields: good and uncertain readings; bad ones carry no value and are left out. float →
  ``61.7`` / ``1e+300`` (always a decimal point or an exponent), int → ``1450i``, bool →
  ``true``/``false``, str → ``"text"``; non-finite floats, ``None`` and arrays are skipped and
  counted. An int beyond the int64 range is written unsigned (``18000000000000000001u``) when
  the server has that type (``unsigned=True``: InfluxDB 2.x/3.x), else as a float;
- timestamp: the reading's source time, truncated to the precision.

Events (OPC UA alarms...) are one point each in their own measurement (``events``): the same
tags plus ``type``, ``source`` and, for conditions, ``condition``; fields ``message``,
``severity``, ``event_id`` and the condition's ``active``, ``acked``, ``confirmed``, ``retain``;
the event's time.

Escaping, per the line protocol reference: the measurement escapes commas and spaces; tag keys,
tag values and field keys escape commas, equals signs and spaces; string field values escape
backslashes and double quotes. Newline, carriage return and tab become ``\n``, ``\r``, ``\t``
(two characters) so a value never splits a line: VictoriaMetrics splits lines even inside
quoted strings. A backslash in a key is doubled only where it would otherwise escape what
follows, and trailing backslashes are dropped (logged once): InfluxDB 1.x cannot parse them.

Why not influxdb-client's ``Point``: ~2 µs per value here (bench/influx.py). This is the hot
path: one pass over the readings sorting values by type, the tag set escaped once per device
(cached), field keys escaped once per tag name (cached), numbers formatted by one
``orjson.dumps`` per point and kind (float ``repr`` alone costs more than everything else), one
``encode`` per write.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any, NamedTuple

import orjson

from gateway.events import Event
from gateway.reading import Batch, Quality

__all__ = [
    "Encoded",
    "LineEncoder",
    "escape_key",
    "escape_measurement",
    "escape_string",
    "precision_divisor",
]

log = logging.getLogger(__name__)

_BAD = Quality.BAD
_INF = float("inf")
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_UINT64_MAX = (1 << 64) - 1
_DIVISORS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
_RESERVED_TAGS = ("gateway", "device")
_MAX_CACHED = 100_000
"""Cache entries (tag sets, field keys) kept before starting over: bounds memory if names churn."""

_CONTROL = {"\n": r"\n", "\r": r"\r", "\t": r"\t"}
_KEY = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", **_CONTROL})
_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ ", **_CONTROL})
_STRING = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": r"\n", "\r": r"\r"})
_KEY_BACKSLASH = re.compile(r"\\(?=[\\,= \n\r\t])")
_MEASUREMENT_BACKSLASH = re.compile(r"\\(?=[\\, \n\r\t])")


def escape_key(text: str) -> str:
    """A tag key, tag value or field key; empty if nothing representable is left."""
    text = text.rstrip("\\")
    if "\\" in text:
        text = _KEY_BACKSLASH.sub(r"\\\\", text)
    return text.translate(_KEY)


def escape_measurement(text: str) -> str:
    """A measurement name (commas and spaces; an equals sign needs no escape there)."""
    text = text.rstrip("\\")
    if "\\" in text:
        text = _MEASUREMENT_BACKSLASH.sub(r"\\\\", text)
    return text.translate(_MEASUREMENT)


def escape_string(text: str) -> str:
    """A string field value, without its surrounding double quotes."""
    return text.translate(_STRING)


def precision_divisor(precision: str) -> int:
    """Nanoseconds per unit of ``precision`` (``s``, ``ms``, ``us``, ``ns``)."""
    return _DIVISORS[precision]


def _interleave(keys: list[str], values: list[str]) -> str:
    """``keys[0] + values[0] + keys[1] + values[1] + ...`` in C loops."""
    merged = keys + values
    merged[::2] = keys
    merged[1::2] = values
    return "".join(merged)


_Fields = tuple[list[str], list[float | bool], list[str], list[int], list[str]]
"""One point's fields being collected: float and bool keys and values, int keys and values,
and the other fields already formatted."""


class Encoded(NamedTuple):
    body: bytes
    """Lines separated by newlines, UTF-8."""
    points: int
    """Lines in ``body``."""


class LineEncoder:
    """Turns batches into line protocol, caching what repeats from one batch to the next."""

    def __init__(
        self,
        gateway_id: str,
        measurement: str,
        precision: str,
        *,
        unsigned: bool,
        events_measurement: str = "events",
    ) -> None:
        """``measurement`` is the default; ``unsigned`` says whether the server has uint64."""
        self._gateway = gateway_id
        self._events_measurement = events_measurement
        self._measurement = measurement
        self._divisor = precision_divisor(precision)
        self._unsigned = unsigned
        self._series: dict[tuple[str, str], tuple[dict[str, str], str]] = {}
        """(device, measurement) → (labels, escaped "measurement,tag=value,...")."""
        self._keys: dict[str, str] = {}
        """Tag name → "," + escaped field key + "=" (names that cannot be written are absent)."""
        self.skipped_values = 0
        """Values not written: non-finite floats, None, arrays, unrepresentable field names."""

    def encode(self, batches: Iterable[Batch]) -> Encoded:
        """One line per device and timestamp; bad readings and unwritable values left out."""
        lines: list[str] = []
        keys = self._keys
        divisor = self._divisor
        skipped = 0
        # Dispatch is on type() itself (cheaper than isinstance chains), so the loop variable
        # is typed Any rather than narrowed.
        value: Any
        for batch in batches:
            if batch.events:
                lines += self._event_lines(batch)
            if not batch.readings:
                continue
            series = self._series_of(batch)
            groups: dict[int, _Fields] = {}
            last_ns: int | None = None
            for _device, tag, value, quality, source_ns, _received, _reason in batch.readings:
                if quality is _BAD:
                    continue
                try:
                    key = keys[tag]
                except KeyError:
                    key = self._field_key(tag)
                    if not key:
                        skipped += 1
                        continue
                if source_ns != last_ns:
                    last_ns = source_ns
                    timestamp = source_ns // divisor
                    group = groups.get(timestamp)
                    if group is None:
                        group = groups[timestamp] = ([], [], [], [], [])
                    plain_keys, plain, int_keys, ints, texts = group
                kind = type(value)
                if kind is float or kind is bool:
                    plain_keys.append(key)
                    plain.append(value)
                elif kind is int:
                    int_keys.append(key)
                    ints.append(value)
                elif kind is str:
                    texts.append(f'{key}"{value.translate(_STRING)}"')
                else:
                    other = self._other(value)
                    if other is None:
                        skipped += 1
                        continue
                    texts.append(key + other)
            for timestamp, group in groups.items():
                fields = self._fields(*group)
                if fields:
                    lines.append(f"{series} {fields} {timestamp}")
        self.skipped_values += skipped
        return Encoded("\n".join(lines).encode(), len(lines))

    def _fields(
        self,
        plain_keys: list[str],
        plain: list[float | bool],
        int_keys: list[str],
        ints: list[int],
        texts: list[str],
    ) -> str:
        """The field set of one point: floats and bools, then ints, then the others.

        Numbers are formatted by one ``orjson.dumps`` per kind: shortest round-trip like
        ``repr``, several times cheaper (float ``repr`` would be most of a value's cost), a
        float always with a decimal point or an exponent, bools as ``true``/``false``. Keys and
        numbers are then interleaved by slice assignment and joined once: no call per value.
        """
        sections = []
        if plain:
            dumped = orjson.dumps(plain)
            if b"null" in dumped:  # orjson's nan and inf: not writable
                pairs = zip(plain_keys, plain, strict=True)
                finite = [(k, v) for k, v in pairs if -_INF < v < _INF]
                self.skipped_values += len(plain) - len(finite)
                plain_keys = [k for k, _ in finite]
                dumped = orjson.dumps([v for _, v in finite])
            if plain_keys:
                sections.append(_interleave(plain_keys, dumped[1:-1].decode().split(",")))
        if ints:
            if max(ints) > _INT64_MAX or min(ints) < _INT64_MIN:
                int_keys, ints = self._split_wide(int_keys, ints, texts)
            if ints:
                numbers = orjson.dumps(ints)[1:-1].decode() + "i"
                sections.append(_interleave(int_keys, numbers.replace(",", "i,").split(",")))
        sections += texts
        return "".join(sections)[1:]  # every field starts with its comma

    def _split_wide(
        self, int_keys: list[str], ints: list[int], texts: list[str]
    ) -> tuple[list[str], list[int]]:
        """Move the ints beyond int64 into ``texts`` (see ``_wide_int``); keep the others."""
        kept_keys, kept = [], []
        for key, value in zip(int_keys, ints, strict=True):
            if _INT64_MIN <= value <= _INT64_MAX:
                kept_keys.append(key)
                kept.append(value)
                continue
            wide = self._wide_int(value)
            if wide is None:
                self.skipped_values += 1
            else:
                texts.append(key + wide)
        return kept_keys, kept

    def _event_lines(self, batch: Batch) -> list[str]:
        series = self._series_of(batch, self._events_measurement)
        divisor = self._divisor
        return [
            f"{series}{_event_tags(e)} {_event_fields(e)} {_event_ns(e) // divisor}"
            for e in batch.events
        ]

    def _series_of(self, batch: Batch, measurement: str | None = None) -> str:
        """The escaped measurement and tag set of the batch's device, built once per device
        and measurement (the batch's, unless given)."""
        measurement = measurement or batch.measurement or self._measurement
        key = (batch.device, measurement)
        labels = batch.labels
        cached = self._series.get(key)
        if cached is not None and cached[0] == labels:
            return cached[1]
        tags = {"gateway": self._gateway, "device": batch.device}
        for name, value in labels.items():
            if name in _RESERVED_TAGS:
                log.warning(
                    "device %s: label %r is ignored by the InfluxDB sink (the %r tag is the %s id)",
                    batch.device,
                    name,
                    name,
                    name,
                )
                continue
            tags[name] = value
        for text in (measurement, *tags, *tags.values()):
            self._warn_trailing_backslash(text, f"device {batch.device}")
        pairs = sorted((escape_key(name), escape_key(value)) for name, value in tags.items())
        series = ",".join(
            [escape_measurement(measurement), *(f"{k}={v}" for k, v in pairs if k and v)]
        )
        if len(self._series) >= _MAX_CACHED:
            self._series.clear()
        self._series[key] = (dict(labels), series)
        return series

    def _field_key(self, tag: str) -> str:
        """The cached field key of a tag name; "" (not cached) if it cannot be written."""
        self._warn_trailing_backslash(tag, "tag")
        escaped = escape_key(tag)
        if not escaped:
            return ""
        if len(self._keys) >= _MAX_CACHED:
            self._keys.clear()
        key = self._keys[tag] = f",{escaped}="
        return key

    def _wide_int(self, value: int) -> str | None:
        """An int beyond int64: unsigned if the server has uint64 and it fits, else a float."""
        if self._unsigned and 0 <= value <= _UINT64_MAX:
            return f"{value}u"
        try:
            return repr(float(value))
        except OverflowError:
            return None

    def _other(self, value: object) -> str | None:
        """Subclasses of the basic types (e.g. an IntEnum); None for what has no field type."""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int):
            return f"{int(value)}i" if _INT64_MIN <= value <= _INT64_MAX else self._wide_int(value)
        if isinstance(value, float):
            number = float(value)
            return repr(number) if -_INF < number < _INF else None
        if isinstance(value, str):
            return f'"{escape_string(str(value))}"'
        return None

    @staticmethod
    def _warn_trailing_backslash(text: str, where: str) -> None:
        if text.endswith("\\"):
            log.warning(
                "%s %r: trailing backslashes are dropped in InfluxDB (line protocol cannot "
                "carry them)",
                where,
                text,
            )


def _event_tags(event: Event) -> str:
    tags = [("source", event.source), ("type", event.event_type)]
    if event.condition is not None:
        tags.append(("condition", event.condition))
    pairs = ((escape_key(name), escape_key(value)) for name, value in tags)
    return "".join(f",{key}={value}" for key, value in pairs if value)


def _event_fields(event: Event) -> str:
    fields = [
        f'message="{escape_string(event.message)}"',
        f"severity={event.severity}i",
        f'event_id="{event.event_id}"',
    ]
    if event.condition_id is not None:
        fields.append(f'condition_id="{escape_string(event.condition_id)}"')
        for name in ("active", "acked", "confirmed", "retain"):
            value = getattr(event, name)
            if value is not None:
                fields.append(f"{name}={'true' if value else 'false'}")
    if event.refresh:
        fields.append("refresh=true")
    return ",".join(fields)


def _event_ns(event: Event) -> int:
    """The server's time of the event, or when it arrived if the server gave none."""
    return event.time_ns or event.received_ns
