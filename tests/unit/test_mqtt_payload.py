"""MQTT topics and payloads, byte for byte: these are a public contract."""

from __future__ import annotations

import math
from collections.abc import Callable

import orjson
import pytest

from gateway.reading import Batch, Quality, Reading, Value
from gateway.sinks.mqtt_payload import (
    CLEARED,
    device_status_topic,
    encode_device_status,
    encode_gateway_status,
    encode_telemetry,
    gateway_status_topic,
    telemetry_topic,
)
from gateway.status import DeviceState, DeviceStatus

G, U, B = Quality.GOOD, Quality.UNCERTAIN, Quality.BAD
CYCLE_NS = 1_700_000_000_123_456_789  # -> ts 1700000000123 (truncated, not rounded)


def batch(*readings: tuple[str, Value, Quality, str | None]) -> Batch:
    return Batch(
        device="press-1",
        readings=[
            Reading("press-1", tag, value, q, 1, 2, reason) for tag, value, q, reason in readings
        ],
        cycle_ns=CYCLE_NS,
    )


@pytest.mark.parametrize(
    ("readings", "expected"),
    [
        pytest.param((), b'{"ts":1700000000123,"values":{}}', id="empty"),
        pytest.param(
            (("t", 1.5, G, None), ("n", 7, G, None)),
            b'{"ts":1700000000123,"values":{"t":1.5,"n":7}}',
            id="good-only",
        ),
        pytest.param(
            (("t", 1.5, G, None), ("p", 2.0, U, "sensor cal"), ("x", None, B, "timeout")),
            b'{"ts":1700000000123,"values":{"t":1.5,"p":2.0},'
            b'"uncertain":{"p":"sensor cal"},"bad":{"x":"timeout"}}',
            id="good-uncertain-bad",
        ),
        pytest.param(
            (("p", 3, U, None),),
            b'{"ts":1700000000123,"values":{"p":3},"uncertain":{"p":null}}',
            id="uncertain-without-reason",
        ),
        pytest.param(
            (("x", 99, B, "code 2"), ("y", 1, B, None)),
            b'{"ts":1700000000123,"values":{},"bad":{"x":"code 2","y":null}}',
            id="bad-only-values-dropped",
        ),
        pytest.param(
            (("t", 1, G, None), ("t", 2, G, None)),
            b'{"ts":1700000000123,"values":{"t":2}}',
            id="repeated-tag-last-wins",
        ),
    ],
)
def test_telemetry_quality_mixes(
    readings: tuple[tuple[str, Value, Quality, str | None], ...], expected: bytes
) -> None:
    assert encode_telemetry(batch(*readings)) == expected


@pytest.mark.parametrize(
    ("value", "json"),
    [
        pytest.param(True, b"true", id="bool-true"),
        pytest.param(False, b"false", id="bool-false"),
        pytest.param(0, b"0", id="int-zero"),
        pytest.param(-32768, b"-32768", id="int16-min"),
        pytest.param(2**64 - 1, b"18446744073709551615", id="uint64-max"),
        pytest.param(0.1, b"0.1", id="float-shortest-repr"),
        pytest.param(1e300, b"1e+300", id="float-large"),
        pytest.param(math.nan, b"null", id="nan-is-null"),
        pytest.param(math.inf, b"null", id="inf-is-null"),
        pytest.param(-math.inf, b"null", id="minus-inf-is-null"),
        pytest.param("", b'""', id="str-empty"),
        pytest.param('ä "q"\n', b'"\xc3\xa4 \\"q\\"\\n"', id="str-escaped-utf8"),
        pytest.param([1, 2, 3], b"[1,2,3]", id="list-int"),
        pytest.param([True, False], b"[true,false]", id="list-bool"),
        pytest.param([0.5, math.nan], b"[0.5,null]", id="list-float-nan"),
        pytest.param(["a", "b"], b'["a","b"]', id="list-str"),
        pytest.param([], b"[]", id="list-empty"),
        pytest.param(None, b"null", id="none"),
    ],
)
def test_telemetry_value_types(value: Value, json: bytes) -> None:
    encoded = encode_telemetry(batch(("v", value, G, None)))
    assert encoded == b'{"ts":1700000000123,"values":{"v":' + json + b"}}"
    orjson.loads(encoded)  # always valid JSON, nan and inf included


def test_telemetry_of_a_large_batch_keeps_every_tag_in_order() -> None:
    readings = [(f"hr{i}", i, G, None) for i in range(125)]
    decoded = orjson.loads(encode_telemetry(batch(*readings)))
    assert list(decoded["values"].items()) == [(f"hr{i}", i) for i in range(125)]


@pytest.mark.parametrize(
    ("function", "args", "topic"),
    [
        (telemetry_topic, ("gateway", "gw-1", "press-1"), "gateway/gw-1/press-1/telemetry"),
        (device_status_topic, ("gateway", "gw-1", "press-1"), "gateway/gw-1/press-1/status"),
        (gateway_status_topic, ("gateway", "gw-1"), "gateway/gw-1/status"),
        (telemetry_topic, ("plant/line-4", "gw", "d"), "plant/line-4/gw/d/telemetry"),
        (device_status_topic, ("p", "gw", "status"), "p/gw/status/status"),
    ],
)
def test_topics(function: Callable[..., str], args: tuple[str, ...], topic: str) -> None:
    assert function(*args) == topic


def test_device_status_payload() -> None:
    status = DeviceStatus(
        device="press-1",
        state=DeviceState.DEGRADED,
        last_error="timeout on hr 100",
        last_good_read_ns=1_700_000_000_999_000_000,
        polls=10,
        requests=40,
        request_errors=2,
        values=500,
        last_poll_duration_s=0.0123456,
        connects=1,
    )
    assert encode_device_status(status, now_ms=1_700_000_001_000) == (
        b'{"ts":1700000001000,"state":"degraded","last_error":"timeout on hr 100",'
        b'"last_good_read":1700000000999,"polls":10,"requests":40,"request_errors":2,'
        b'"values":500,"overruns":0,"skipped_cycles":0,"busy_retries":0,"last_poll_duration_ms":12.346,'
        b'"connects":1,"reconnects":0}'
    )


def test_device_status_payload_of_a_new_device() -> None:
    decoded = orjson.loads(encode_device_status(DeviceStatus(device="d"), now_ms=5))
    assert decoded["ts"] == 5
    assert decoded["state"] == "starting"
    assert decoded["last_error"] is None
    assert decoded["last_good_read"] is None


@pytest.mark.parametrize(
    ("online", "expected"),
    [
        (True, b'{"state":"online","ts":1700000000000}'),
        (False, b'{"state":"offline","ts":1700000000000}'),
    ],
)
def test_gateway_status_payload(online: bool, expected: bytes) -> None:
    assert encode_gateway_status(online, now_ms=1_700_000_000_000) == expected


def test_clearing_a_retained_status_is_an_empty_payload() -> None:
    assert CLEARED == b""
