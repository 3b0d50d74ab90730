"""MQTT topics and payloads of the gateway: pure functions, compact JSON via orjson.

Topics (stable, documented in the README)::

    {prefix}/{gateway_id}/{device}/telemetry   one message per batch
    {prefix}/{gateway_id}/{device}/status      retained; an empty payload clears it
    {prefix}/{gateway_id}/status               retained; "offline" is also the last will

Timestamps are milliseconds since the Unix epoch. orjson writes non-finite floats (nan, inf,
-inf) as ``null``, so a broken sensor value never produces invalid JSON.
"""

from __future__ import annotations

import orjson

from gateway.events import Event
from gateway.reading import Batch, Quality, Value
from gateway.status import DeviceStatus

__all__ = [
    "CLEARED",
    "command_topic",
    "device_status_topic",
    "encode_device_status",
    "encode_event",
    "encode_gateway_status",
    "encode_telemetry",
    "events_topic",
    "gateway_status_topic",
    "telemetry_topic",
]

CLEARED = b""
"""The payload that removes a retained message from the broker."""

_GOOD = Quality.GOOD
_UNCERTAIN = Quality.UNCERTAIN


def telemetry_topic(prefix: str, gateway_id: str, device: str) -> str:
    return f"{prefix}/{gateway_id}/{device}/telemetry"


def events_topic(prefix: str, gateway_id: str, device: str) -> str:
    """Where a device's events and alarm transitions go, one message each (not retained)."""
    return f"{prefix}/{gateway_id}/{device}/events"


def encode_event(event: Event) -> bytes:
    return orjson.dumps(event.as_dict())


def command_topic(prefix: str, gateway_id: str, device: str) -> str:
    """Where values to set on a device are published (``+`` for every device)."""
    return f"{prefix}/{gateway_id}/{device}/set"


def device_status_topic(prefix: str, gateway_id: str, device: str) -> str:
    return f"{prefix}/{gateway_id}/{device}/status"


def gateway_status_topic(prefix: str, gateway_id: str) -> str:
    return f"{prefix}/{gateway_id}/status"


def desired_config_topic(prefix: str, gateway_id: str) -> str:
    """Where a fleet manager puts this gateway's desired configuration (retained)."""
    return f"{prefix}/{gateway_id}/config/desired"


def reported_config_topic(prefix: str, gateway_id: str) -> str:
    """Where the gateway says how its desired configuration went (retained)."""
    return f"{prefix}/{gateway_id}/config/reported"


def encode_telemetry(batch: Batch) -> bytes:
    """One batch as ``{"ts", "values", "uncertain"?, "bad"?}``.

    ``values`` holds the good and uncertain readings; ``uncertain`` and ``bad`` map a tag to
    its reason (``null`` when the protocol gave none) and appear only when non-empty. Bad
    readings carry no value. If a tag repeats within the batch, its last reading wins.
    Hot path: one pass, no call per reading, one ``orjson.dumps``.
    """
    values: dict[str, Value] = {}
    uncertain: dict[str, str | None] = {}
    bad: dict[str, str | None] = {}
    for reading in batch.readings:
        quality = reading.quality
        if quality is _GOOD:
            values[reading.tag] = reading.value
        elif quality is _UNCERTAIN:
            values[reading.tag] = reading.value
            uncertain[reading.tag] = reading.reason
        else:
            bad[reading.tag] = reading.reason
    body: dict[str, object] = {"ts": batch.cycle_ns // 1_000_000, "values": values}
    if uncertain:
        body["uncertain"] = uncertain
    if bad:
        body["bad"] = bad
    return orjson.dumps(body)


def encode_device_status(status: DeviceStatus, now_ms: int) -> bytes:
    """The retained device status: ``{"ts", **status.public()}``."""
    return orjson.dumps({"ts": now_ms, **status.public()})


def encode_gateway_status(online: bool, now_ms: int) -> bytes:
    """The retained gateway status ``{"state": "online"|"offline", "ts"}``."""
    return orjson.dumps({"state": "online" if online else "offline", "ts": now_ms})
