"""``gateway watch``: print what the gateway publishes, for machines without mosquitto_sub."""

from __future__ import annotations

import sys
from typing import Any

from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

__all__ = ["watch"]


def watch(host: str, port: int, topics: list[str], count: int | None = None) -> int:
    """Subscribe and print ``topic payload`` lines until Ctrl-C (or ``count`` messages)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    received = 0

    def on_connect(
        client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any
    ) -> None:
        if reason.is_failure:
            print(f"cannot subscribe: broker refused the connection: {reason}", file=sys.stderr)
            client.disconnect()
            return
        client.subscribe([(topic, 0) for topic in topics])

    def on_message(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        nonlocal received
        flag = " (retained)" if message.retain else ""
        payload = message.payload.decode(errors="replace") or "<cleared>"
        print(f"{message.topic}{flag} {payload}", flush=True)
        received += 1
        if count is not None and received >= count:
            client.disconnect()

    client.on_connect = on_connect
    client.on_message = on_message
    try:
        client.connect(host, port)
    except OSError as exc:
        print(f"cannot connect to MQTT broker {host}:{port}: {exc}", file=sys.stderr)
        return 1
    try:
        client.loop_forever()
    except KeyboardInterrupt:
        client.disconnect()
    return 0
