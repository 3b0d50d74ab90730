"""MQTT sink: telemetry batches and retained availability topics through paho-mqtt 2.x.

The connection itself (paho driven from the event loop, no thread) is gateway/sinks/mqtt_session.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Sequence
from typing import Any

import orjson
from paho.mqtt import client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.errors import ConfigError, ConfigProblem, RetryableSinkError, SinkError
from gateway.protocols import Command, CommandHandler, ConfigHandler
from gateway.reading import Batch
from gateway.sinks.mqtt_config import MqttConfig
from gateway.sinks.mqtt_payload import (
    CLEARED,
    command_topic,
    desired_config_topic,
    device_status_topic,
    encode_device_status,
    encode_event,
    encode_gateway_status,
    encode_telemetry,
    events_topic,
    gateway_status_topic,
    reported_config_topic,
    telemetry_topic,
)
from gateway.sinks.mqtt_session import (
    Connection,
    Message,
    SessionTasks,
    Will,
    keep_connected,
    open_connection,
    tls_context,
    where_of,
)
from gateway.status import DeviceStatus

__all__ = ["MqttSink"]

log = logging.getLogger(__name__)

_STOP_TIMEOUT = 5.0
"""Longest wait in ``stop()`` for the "offline" status to be acknowledged."""


class MqttSink:
    """Publishes batches as telemetry messages and carries device and gateway availability.

    ``start()`` returns at once; a supervisor task connects and reconnects in the background
    with full-jitter exponential backoff. While disconnected every call raises
    ``RetryableSinkError`` immediately, so the runtime keeps the data.

    The last will is the retained gateway "offline" status; its ``ts`` is the time of
    connecting, because MQTT fixes the will when the connection opens.
    """

    def __init__(self, config: MqttConfig, gateway_id: str, name: str = "mqtt") -> None:
        if not gateway_id or any(c in gateway_id for c in "/+#"):
            raise ConfigError(
                [ConfigProblem("gateway_id", "must be one MQTT topic level: no '/', '+' or '#'")]
            )
        self.name = name
        self.durable = config.qos > 0
        """QoS 0 has no acknowledgement to wait for: a message counts as delivered once it is
        written to the socket, so replaying an outbox for it would promise what it cannot keep.
        At QoS 0 the sink is at-most-once and not behind the outbox."""
        self._client_id = config.client_id or f"{gateway_id}.{name}"
        self._config = config
        self._gateway_id = gateway_id
        self._label = f"sink {name}"
        self._where = " or ".join(where_of(address) for address in config.addresses)
        self._status_topic = gateway_status_topic(config.topic_prefix, gateway_id)
        self._conn: Connection | None = None
        self._connected = asyncio.Event()
        self._tasks = SessionTasks()
        self._tls: ssl.SSLContext | None = None
        self._commands: CommandHandler | None = None
        self._desired: ConfigHandler | None = None
        self._online: bytes | None = None
        """This connection's "online" status (its ts: when it connected)."""

    def take_commands(self, handler: CommandHandler) -> None:
        """Subscribe to ``{prefix}/{gateway}/+/set`` from the next connection on; each command
        is answered on ``.../set/result``, or on the MQTT 5 response topic it names (with its
        correlation data). Retained commands are refused: a set point must never be replayed
        to a gateway that (re)connects later."""
        self._commands = handler

    def carry_config(self, handler: ConfigHandler) -> None:
        """Subscribe to ``{prefix}/{gateway}/config/desired`` from the next connection on and
        publish the handler's report on ``.../config/reported`` (retained, QoS 1)."""
        self._desired = handler

    @property
    def connected(self) -> bool:
        conn = self._conn
        return conn is not None and not conn.closed.is_set()

    async def start(self) -> None:
        """Start connecting in the background; raise SinkError only if TLS files are unusable."""
        if self._tasks.supervisor is not None:
            return
        if not self.durable:
            log.warning(
                "sink %s: QoS 0 is at-most-once (nothing to confirm): not behind the outbox,"
                " so what is sent during an outage or a crash may be lost; use qos 1 for"
                " at-least-once",
                self.name,
            )
        if self._config.tls is not None:
            self._tls = tls_context(self._config.tls)
        self._tasks.supervisor = asyncio.create_task(
            self._supervise(), name=f"mqtt-supervisor:{self.name}"
        )

    async def wait_connected(self, timeout: float) -> bool:  # noqa: ASYNC109 (returns, never raises)
        """Wait up to ``timeout`` seconds for a connection; return whether there is one."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._connected.wait()
        return self.connected

    async def write(self, batches: Sequence[Batch]) -> None:
        """Publish one telemetry message per batch of readings and one message per event;
        with QoS >= 1, return once all are acked."""
        conn = self._live()
        prefix, gateway_id = self._config.topic_prefix, self._gateway_id
        messages: list[Message] = []
        for batch in batches:
            if batch.events:
                topic = events_topic(prefix, gateway_id, batch.device)
                messages += [(topic, encode_event(event), False) for event in batch.events]
            if not batch.readings:
                continue
            try:
                payload = encode_telemetry(batch)
            except orjson.JSONEncodeError as exc:
                raise SinkError(f"device {batch.device}: telemetry is not JSON: {exc}") from exc
            messages.append((telemetry_topic(prefix, gateway_id, batch.device), payload, False))
        await conn.deliver(messages, self._config.qos, self._config.publish_timeout)

    async def publish_device_statuses(self, statuses: Sequence[DeviceStatus]) -> None:
        """Publish the devices' retained statuses; return once all are acknowledged."""
        conn = self._live()
        prefix, gateway_id, now = self._config.topic_prefix, self._gateway_id, _now_ms()
        messages = [
            (
                device_status_topic(prefix, gateway_id, status.device),
                encode_device_status(status, now),
                True,
            )
            for status in statuses
        ]
        if self._online is not None:
            # Ours again: on a broker cluster, the will of a connection lost on one node can
            # be published after this one said "online" (seen with NATS): a stale "offline"
            # lasts until the next refresh, not until the next reconnect.
            messages.append((self._status_topic, self._online, True))
        await conn.deliver(messages, self._config.qos, self._config.publish_timeout)

    async def clear_device_status(self, device: str) -> None:
        """Remove the device's retained status (for a device that was deleted)."""
        conn = self._live()
        topic = device_status_topic(self._config.topic_prefix, self._gateway_id, device)
        await conn.deliver([(topic, CLEARED, True)], self._config.qos, self._config.publish_timeout)

    async def stop(self) -> None:
        """Publish "offline", disconnect cleanly (so the broker drops the will), stop tasks.

        Idempotent; takes at most about ``_STOP_TIMEOUT`` + 1 seconds.
        """
        await self._tasks.cancel()
        conn, self._conn = self._conn, None
        self._connected.clear()
        if conn is None:
            return
        if not conn.closed.is_set():
            offline = encode_gateway_status(False, _now_ms())
            try:
                timeout = min(self._config.publish_timeout, _STOP_TIMEOUT)
                await conn.deliver([(self._status_topic, offline, True)], self._config.qos, timeout)
            except SinkError as exc:
                log.debug("MQTT sink: 'offline' status not acknowledged: %s", exc)
            conn.disconnect()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await conn.closed.wait()
        conn.abort()

    def _live(self) -> Connection:
        conn = self._conn
        if conn is None or conn.closed.is_set():
            raise RetryableSinkError(f"not connected to broker {self._where} ({self._label})")
        return conn

    async def _supervise(self) -> None:
        await keep_connected(self._label, self._config, self._connect, self._serve)

    async def _serve(self, conn: Connection) -> None:
        self._conn = conn
        self._connected.set()
        await conn.serve()
        self._connected.clear()
        self._conn = None

    async def _connect(self, address: tuple[str, int]) -> Connection:
        """One connection attempt: connect, await CONNACK, announce "online"."""
        config = self._config
        will = Will(self._status_topic, encode_gateway_status(False, _now_ms()), config.qos, True)
        conn = await open_connection(config, address, self._client_id, will, self._tls)
        online = self._online = encode_gateway_status(True, _now_ms())
        conn.announce(self._status_topic, online, config.qos, retain=True)
        if self._commands is not None:
            topic = command_topic(config.topic_prefix, self._gateway_id, "+")
            conn.client.on_message = self._on_command
            conn.subscribe(topic, qos=1)
            conn.flush()
        if self._desired is not None:
            topic = desired_config_topic(config.topic_prefix, self._gateway_id)
            conn.client.message_callback_add(topic, self._on_desired)
            conn.subscribe(topic, qos=1)
            conn.flush()
        return conn

    def _on_desired(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        """A desired configuration (paho calls this on the event loop's thread)."""
        if self._desired is not None:
            self._tasks.spawn(self._report_on(self._desired, bytes(message.payload)))

    async def _report_on(self, handler: ConfigHandler, payload: bytes) -> None:
        report = await handler(payload)  # never raises: failures are in the report
        if report is None:
            return
        topic = reported_config_topic(self._config.topic_prefix, self._gateway_id)
        conn = self._conn
        if conn is None or conn.closed.is_set():
            log.warning("configuration report lost: not connected (sent again on reconnect)")
            return
        conn.client.publish(topic, report, qos=1, retain=True)
        conn.flush()

    def _on_command(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        """A message on a set topic (paho calls this on the event loop's thread)."""
        parts = message.topic.split("/")
        device = parts[-2] if len(parts) >= 2 else ""
        properties = getattr(message, "properties", None)
        reply_topic = getattr(properties, "ResponseTopic", None) or f"{message.topic}/result"
        correlation = getattr(properties, "CorrelationData", None)
        handler = self._commands
        if handler is None:
            return
        if message.retain:
            refusal = orjson.dumps(
                {"ok": False, "status": 400, "error": "a retained command is never applied"}
            )
            self._tasks.spawn(self._reply(reply_topic, correlation, refusal))
            return
        command = Command(device, bytes(message.payload), f"mqtt:{message.topic}")
        self._tasks.spawn(self._answer(handler, command, reply_topic, correlation))

    async def _answer(
        self, handler: CommandHandler, command: Command, topic: str, correlation: bytes | None
    ) -> None:
        try:
            reply = await handler(command)
        except Exception as exc:  # a command must always get an answer, and never kill the sink
            log.exception("MQTT command on %s failed", command.origin)
            reply = orjson.dumps({"ok": False, "status": 500, "error": f"{type(exc).__name__}"})
        await self._reply(topic, correlation, reply)

    async def _reply(self, topic: str, correlation: bytes | None, payload: bytes) -> None:
        conn = self._conn
        if conn is None or conn.closed.is_set():
            log.warning("MQTT command reply to %s lost: not connected", topic)
            return
        properties = None
        if self._config.protocol == "5" and correlation is not None:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.CorrelationData = correlation
        conn.client.publish(topic, payload, qos=1, retain=False, properties=properties)
        conn.flush()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
