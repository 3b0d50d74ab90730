"""A test subscriber: records what a broker delivers, with polls and barriers instead of sleeps.

It is a plain paho client with its own network thread (fine in tests), so a test may block on
it without blocking the event loop of the code under test, or await the async variants.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson
from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from tests.support.processes import async_wait_until, wait_until

__all__ = ["MqttWatch", "Received"]

_ids = itertools.count()


@dataclass(frozen=True, slots=True)
class Received:
    """One message as delivered to the watcher."""

    topic: str
    payload: bytes
    retain: bool
    """True when the broker sent a stored retained message (e.g. on subscribing)."""
    qos: int
    received_at: float
    """``time.time()`` on arrival, to compare with the millisecond ``ts`` in payloads."""
    dup: bool = False
    """The broker's DUP flag: it sent this message to the watcher before (QoS >= 1, its
    acknowledgement not processed, e.g. across a broker restart), so a copy arrived already."""

    def json(self) -> Any:
        """The payload decoded as JSON (an empty payload, i.e. a cleared retain, is None)."""
        return orjson.loads(self.payload) if self.payload else None


class MqttWatch:
    """Subscribes to ``topic_filter`` and records every message, thread-safely.

    Re-subscribes by itself when the broker comes back after a restart (paho's reconnect
    delay: 1-2 s).
    """

    def __init__(
        self,
        host: str,
        port: int,
        topic_filter: str = "#",
        *,
        qos: int = 1,
        username: str | None = None,
        password: str | None = None,
        protocol: str = "3.1.1",
        tls_ca: Path | None = None,
        session: str | None = None,
    ) -> None:
        """``tls_ca`` connects over TLS, trusting that CA file. ``session`` names a persistent
        session (it becomes the client id): the broker queues QoS >= 1 messages for the
        watcher while it is disconnected, e.g. during a broker restart with persistence."""
        self.topic_filter = topic_filter
        self.qos = qos
        self._host, self._port = host, port
        self.client_id = session or f"watch-{next(_ids)}-{uuid.uuid4().hex[:8]}"
        self._session = session is not None
        self._barrier_topic = f"_watch/{self.client_id}/barrier"
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._barriers: set[str] = set()
        self._subscribed = threading.Event()
        self._subscribe_mid: int | None = None
        self._v5 = protocol == "5"
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=MQTTProtocolVersion.MQTTv5 if self._v5 else MQTTProtocolVersion.MQTTv311,
            clean_session=None if self._v5 else not self._session,
        )
        self._client.reconnect_delay_set(1, 2)
        if username is not None:
            self._client.username_pw_set(username, password)
        if tls_ca is not None:
            self._client.tls_set(ca_certs=str(tls_ca))
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    def start(self, timeout: float = 10.0) -> MqttWatch:
        """Connect and return once the subscription is acknowledged."""
        if self._v5 and self._session:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = 3600
            self._client.connect(
                self._host, self._port, keepalive=30, clean_start=False, properties=properties
            )
        else:
            self._client.connect(self._host, self._port, keepalive=30)
        self._client.loop_start()
        self.wait_subscribed(timeout)
        return self

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def wait_subscribed(self, timeout: float = 10.0) -> None:
        """Wait until subscribed (again, after a broker restart)."""
        if not self._subscribed.wait(timeout):
            raise TimeoutError(f"{self.client_id}: no SUBACK for {self.topic_filter!r}")

    def messages(self, topic_filter: str | None = None) -> list[Received]:
        """Messages received so far, oldest first, optionally only those matching a filter."""
        with self._lock:
            received = list(self._received)
        if topic_filter is None:
            return received
        return [m for m in received if mqtt.topic_matches_sub(topic_filter, m.topic)]

    def payloads(self, topic_filter: str | None = None) -> list[Any]:
        """The JSON payloads of ``messages(topic_filter)``."""
        return [m.json() for m in self.messages(topic_filter)]

    def clear(self) -> None:
        with self._lock:
            self._received.clear()

    def publish(self, topic: str, payload: bytes, *, retain: bool = False, qos: int = 1) -> None:
        """Publish as this watcher's client (its login) and wait until it is sent (QoS 0) or
        acknowledged. A 3.1.1 broker acknowledges a publish its ACL refuses, and drops it."""
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(10)
        if not info.is_published():
            raise TimeoutError(f"{self.client_id}: publish to {topic} not acknowledged")

    def wait_for(
        self, predicate: Callable[[Received], bool], timeout: float = 10.0, what: str = "message"
    ) -> Received:
        """The first message (already received or arriving within ``timeout``) that matches."""
        return wait_until(lambda: self._first(predicate), timeout, message=self._missing(what))

    async def wait_for_async(
        self,
        predicate: Callable[[Received], bool],
        timeout: float = 10.0,  # noqa: ASYNC109 (a polling deadline, like wait_for's)
        what: str = "message",
    ) -> Received:
        """``wait_for`` without blocking the event loop."""
        return await async_wait_until(
            lambda: self._first(predicate), timeout, message=self._missing(what)
        )

    def wait_for_count(
        self, topic_filter: str, count: int, timeout: float = 10.0
    ) -> list[Received]:
        """Wait until at least ``count`` messages matched ``topic_filter``; return them all."""

        def enough() -> list[Received] | None:
            found = self.messages(topic_filter)
            return found if len(found) >= count else None

        return wait_until(enough, timeout, message=self._missing(f"{count} on {topic_filter}"))

    def barrier(self, timeout: float = 10.0) -> None:
        """Publish a marker through the broker and wait for it to come back.

        Mosquitto handles one client's packets in order, so once the marker is back, every
        message the broker had sent to this watcher before (such as retained messages on
        subscribing) has been recorded: a check for "nothing else arrived" is then sound.
        """
        marker = uuid.uuid4().hex
        info = self._client.publish(self._barrier_topic, marker, qos=1)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise RuntimeError(f"{self.client_id}: barrier publish failed: rc {info.rc}")

        def came_back() -> bool:
            with self._lock:
                return marker in self._barriers

        wait_until(came_back, timeout, message=f"{self.client_id}: barrier marker came back")

    def _first(self, predicate: Callable[[Received], bool]) -> Received | None:
        return next((m for m in self.messages() if predicate(m)), None)

    def _missing(self, what: str) -> Callable[[], str]:
        def describe() -> str:
            seen = [(m.topic, m.payload[:200], m.retain) for m in self.messages()[-10:]]
            return f"{what} on {self.topic_filter!r}; last messages seen: {seen}"

        return describe

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            return
        _, self._subscribe_mid = client.subscribe(
            [(self.topic_filter, self.qos), (self._barrier_topic, 1)]
        )

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._subscribed.clear()

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        if mid == self._subscribe_mid and not any(rc.is_failure for rc in reason_codes):
            self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        now = time.time()
        with self._lock:
            if message.topic == self._barrier_topic:
                self._barriers.add(message.payload.decode())
                return
            self._received.append(
                Received(
                    message.topic,
                    bytes(message.payload),
                    bool(message.retain),
                    message.qos,
                    now,
                    bool(message.dup),
                )
            )

    def __enter__(self) -> MqttWatch:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
