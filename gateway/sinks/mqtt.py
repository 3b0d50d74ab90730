"""MQTT sink: telemetry batches and retained availability topics through paho-mqtt 2.x.

paho is driven from the event loop with no thread of its own (measured cheaper than
``loop_start()``, see shared/README.md):

- ``publish()`` writes to the non-blocking socket itself; if the socket buffer is full, paho
  keeps the rest and a one-shot ``loop.add_writer`` flushes it;
- ``loop.add_reader(sock)`` runs ``loop_read``, which takes CONNACK, PUBACK/PUBCOMP, PINGRESP;
- the supervisor calls ``loop_misc`` (keepalive) about once a second while connected;
- the blocking ``connect()`` (DNS, TCP, TLS handshake, CONNECT) runs in the default executor
  *before* any callback is installed, so every paho callback runs on the event loop thread.

Every connection gets a fresh paho ``Client``: paho never holds a hidden queue of old messages
to replay; the runtime owns buffering and retries. Acknowledgements are awaited per write, one
future per write, resolved by ``on_publish`` (message ids map to that write).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections.abc import Coroutine, Iterable, Sequence
from typing import Any

import orjson
from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.errors import ConfigError, ConfigProblem, RetryableSinkError, SinkError
from gateway.protocols import Command, CommandHandler
from gateway.reading import Batch
from gateway.sinks.mqtt_config import MqttConfig, MqttTlsConfig
from gateway.sinks.mqtt_payload import (
    CLEARED,
    command_topic,
    device_status_topic,
    encode_device_status,
    encode_gateway_status,
    encode_telemetry,
    gateway_status_topic,
    telemetry_topic,
)
from gateway.status import DeviceStatus

__all__ = ["MqttSink"]

log = logging.getLogger(__name__)

_TICK = 1.0
"""Seconds between ``loop_misc`` calls (keepalive pings and their timeout)."""
_STOP_TIMEOUT = 5.0
"""Longest wait in ``stop()`` for the "offline" status to be acknowledged."""
_FINAL_PUBACK_REASONS = frozenset({0x87, 0x90, 0x99})
"""MQTT 5 PUBACK reasons that retrying cannot fix: not authorized, bad topic, bad payload."""

_UNSPECIFIED_ERROR = 0x80

_Message = tuple[str, bytes, bool]
"""Topic, payload, retain."""


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
        self._where = f"{config.host}:{config.port} (sink {name})"
        self._status_topic = gateway_status_topic(config.topic_prefix, gateway_id)
        self._conn: _Connection | None = None
        self._connected = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._tls: ssl.SSLContext | None = None
        self._commands: CommandHandler | None = None
        self._running: set[asyncio.Task[None]] = set()

    def take_commands(self, handler: CommandHandler) -> None:
        """Subscribe to ``{prefix}/{gateway}/+/set`` from the next connection on; each command
        is answered on ``.../set/result``, or on the MQTT 5 response topic it names (with its
        correlation data). Retained commands are refused: a set point must never be replayed
        to a gateway that (re)connects later."""
        self._commands = handler

    @property
    def connected(self) -> bool:
        conn = self._conn
        return conn is not None and not conn.closed.is_set()

    async def start(self) -> None:
        """Start connecting in the background; raise SinkError only if TLS files are unusable."""
        if self._supervisor is not None:
            return
        if not self.durable:
            log.warning(
                "sink %s: QoS 0 is at-most-once (nothing to confirm): not behind the outbox,"
                " so what is sent during an outage or a crash may be lost; use qos 1 for"
                " at-least-once",
                self.name,
            )
        if self._config.tls is not None:
            self._tls = _tls_context(self._config.tls)
        self._supervisor = asyncio.create_task(
            self._supervise(), name=f"mqtt-supervisor:{self.name}"
        )

    async def wait_connected(self, timeout: float) -> bool:  # noqa: ASYNC109 (returns, never raises)
        """Wait up to ``timeout`` seconds for a connection; return whether there is one."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._connected.wait()
        return self.connected

    async def write(self, batches: Sequence[Batch]) -> None:
        """Publish one telemetry message per batch; with QoS >= 1, return once all are acked."""
        conn = self._live()
        prefix, gateway_id = self._config.topic_prefix, self._gateway_id
        messages: list[_Message] = []
        for batch in batches:
            try:
                payload = encode_telemetry(batch)
            except orjson.JSONEncodeError as exc:
                raise SinkError(f"device {batch.device}: telemetry is not JSON: {exc}") from exc
            messages.append((telemetry_topic(prefix, gateway_id, batch.device), payload, False))
        await conn.deliver(messages, self._config.publish_timeout)

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
        await conn.deliver(messages, self._config.publish_timeout)

    async def clear_device_status(self, device: str) -> None:
        """Remove the device's retained status (for a device that was deleted)."""
        conn = self._live()
        topic = device_status_topic(self._config.topic_prefix, self._gateway_id, device)
        await conn.deliver([(topic, CLEARED, True)], self._config.publish_timeout)

    async def stop(self) -> None:
        """Publish "offline", disconnect cleanly (so the broker drops the will), stop tasks.

        Idempotent; takes at most about ``_STOP_TIMEOUT`` + 1 seconds.
        """
        task, self._supervisor = self._supervisor, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])
        for running in list(self._running):
            running.cancel()
        if self._running:
            await asyncio.wait(self._running)
        conn, self._conn = self._conn, None
        self._connected.clear()
        if conn is None:
            return
        if not conn.closed.is_set():
            offline = encode_gateway_status(False, _now_ms())
            try:
                timeout = min(self._config.publish_timeout, _STOP_TIMEOUT)
                await conn.deliver([(self._status_topic, offline, True)], timeout)
            except SinkError as exc:
                log.debug("MQTT sink: 'offline' status not acknowledged: %s", exc)
            conn.disconnect()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await conn.closed.wait()
        conn.abort()

    def _live(self) -> _Connection:
        conn = self._conn
        if conn is None or conn.closed.is_set():
            raise RetryableSinkError(f"not connected to broker {self._where}")
        return conn

    async def _supervise(self) -> None:
        """Connect, serve, reconnect with backoff. An outage is logged as a warning once (then
        each new reason once, at info) and its end once; attempts themselves only at debug."""
        config = self._config
        attempt = 0
        ever_connected = False
        outage_since: float | None = None
        reasons: set[str] = set()
        while True:
            try:
                conn = await self._connect()
            except Exception as exc:  # the supervisor outlives any failed attempt
                unexpected = not isinstance(exc, _ConnectFailed)
                reason = f"{type(exc).__name__}: {exc}" if unexpected else str(exc)
                if outage_since is None:
                    outage_since = time.monotonic()
                    log.warning(
                        "MQTT broker %s unavailable: %s; retrying in the background",
                        self._where,
                        reason,
                        exc_info=unexpected,
                    )
                elif reason not in reasons:
                    log.info("MQTT broker %s still unavailable: %s", self._where, reason)
                else:
                    log.debug("MQTT broker %s still unavailable: %s", self._where, reason)
                reasons.add(reason)
                ceiling = min(config.reconnect_max, config.reconnect_min * 2.0 ** min(attempt, 30))
                attempt += 1
                await asyncio.sleep(random.uniform(config.reconnect_min, ceiling))
                continue

            if outage_since is not None and ever_connected:
                outage = time.monotonic() - outage_since
                log.info("MQTT broker %s reachable again after %.1f s", self._where, outage)
            else:
                log.info("connected to MQTT broker %s", self._where)
            attempt, ever_connected, outage_since = 0, True, None
            reasons.clear()
            self._conn = conn
            self._connected.set()

            await conn.serve()

            self._connected.clear()
            self._conn = None
            outage_since = time.monotonic()
            log.warning(
                "lost the connection to MQTT broker %s (%s); reconnecting in the background",
                self._where,
                conn.close_reason,
            )

    async def _connect(self) -> _Connection:
        """One connection attempt: connect, await CONNACK, announce "online"."""
        config = self._config
        will = (self._status_topic, encode_gateway_status(False, _now_ms()))
        conn = _Connection(config, self._client_id, will, self._tls)
        connecting = asyncio.get_running_loop().run_in_executor(None, conn.connect)
        try:
            await asyncio.shield(connecting)
        except asyncio.CancelledError:
            # The executor thread cannot be interrupted: drop its socket once it is done.
            connecting.add_done_callback(conn.abort_after_connect)
            raise
        except (OSError, ValueError) as exc:
            raise _ConnectFailed(str(exc) or type(exc).__name__) from exc
        try:
            conn.attach()
            async with asyncio.timeout(config.publish_timeout):
                reason = await conn.connack
        except TimeoutError:
            conn.abort()
            raise _ConnectFailed(f"no CONNACK within {config.publish_timeout} s") from None
        except BaseException:
            conn.abort()
            raise
        if reason is None:
            raise _ConnectFailed(f"connection closed before CONNACK ({conn.close_reason})")
        if reason.is_failure:
            conn.abort()
            raise _ConnectFailed(f"broker refused the connection: {reason}")
        conn.announce(self._status_topic, encode_gateway_status(True, _now_ms()))
        if self._commands is not None:
            topic = command_topic(config.topic_prefix, self._gateway_id, "+")
            conn.client.on_message = self._on_command
            conn.client.subscribe(topic, qos=1)
            conn.flush()
        return conn

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
            self._spawn(self._reply(reply_topic, correlation, refusal))
            return
        command = Command(device, bytes(message.payload), f"mqtt:{message.topic}")
        self._spawn(self._answer(handler, command, reply_topic, correlation))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._running.add(task)
        task.add_done_callback(self._running.discard)

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


class _ConnectFailed(Exception):
    """One connection attempt failed; the supervisor backs off and tries again."""


class _Acks:
    """Completion of one write: resolved when its last message is acknowledged."""

    __slots__ = ("future", "remaining")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.future: asyncio.Future[None] = loop.create_future()
        self.remaining = 0

    def ack(self) -> None:
        self.remaining -= 1
        if self.remaining == 0 and not self.future.done():
            self.future.set_result(None)

    def fail(self, error: SinkError) -> None:
        if not self.future.done():
            self.future.set_exception(error)


class _Connection:
    """One paho client on one socket; never reused, the next connection gets a new client."""

    def __init__(
        self,
        config: MqttConfig,
        client_id: str,
        will: tuple[str, bytes],
        tls: ssl.SSLContext | None,
    ) -> None:
        """``will`` is the topic and payload the broker publishes (retained) if we vanish."""
        self.loop = asyncio.get_running_loop()
        self.closed = asyncio.Event()
        self.connack: asyncio.Future[ReasonCode | None] = self.loop.create_future()
        self.close_reason = ""
        """Why the connection ended, once it has (paho's disconnect reason when it gives one)."""
        self.pending: dict[int, _Acks] = {}
        """Acknowledgements awaited, by message id."""
        self._config = config
        self._where = f"{config.host}:{config.port}"
        self._fd = -1
        self._ssl_sock: ssl.SSLSocket | None = None
        self._writing = False
        v5 = config.protocol == "5"
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
        )
        will_topic, will_payload = will
        self.client.will_set(will_topic, will_payload, qos=config.qos, retain=True)
        if config.username is not None:
            password = config.password.get_secret_value() if config.password else None
            self.client.username_pw_set(config.username, password)
        if tls is not None:
            self.client.tls_set_context(tls)

    def connect(self) -> None:
        """Open the socket and send CONNECT. Blocking: runs in the executor, no callbacks set."""
        rc = self.client.connect(self._config.host, self._config.port, self._config.keepalive)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise ConnectionError(mqtt.error_string(rc))

    def attach(self) -> None:
        """Install the callbacks and watch the socket; from now on only this thread uses paho."""
        client = self.client
        sock = client.socket()
        if sock is None:
            raise _ConnectFailed("connection closed while connecting")
        client.on_connect = self._on_connect
        client.on_publish = self._on_publish
        client.on_disconnect = self._on_disconnect
        client.on_socket_close = self._on_socket_close
        self._fd = sock.fileno()
        self._ssl_sock = sock if isinstance(sock, ssl.SSLSocket) else None
        self.loop.add_reader(self._fd, self._readable)

    def announce(self, topic: str, payload: bytes) -> None:
        """Publish a retained message, not awaited: if lost, the next connection sends it again."""
        self.client.publish(topic, payload, self._config.qos, retain=True)
        self.flush()

    async def deliver(self, messages: Iterable[_Message], ack_timeout: float) -> None:
        """Publish the messages; with QoS >= 1 wait until the broker acknowledged them all."""
        acks = _Acks(self.loop)
        publish, qos, pending = self.client.publish, self._config.qos, self.pending
        try:
            for topic, payload, retain in messages:
                try:
                    info = publish(topic, payload, qos, retain)
                except ValueError as exc:  # a wildcard in the topic, or a payload over 256 MB
                    raise SinkError(f"cannot publish on {topic!r}: {exc}") from exc
                if info.rc > 0:
                    raise RetryableSinkError(
                        f"publish to broker {self._where} failed: "
                        f"{mqtt.error_string(info.rc)} (rc {int(info.rc)})"
                    )
                # QoS 0 messages are done once written, which may happen inside publish(),
                # before its message id is known here: only wait for the ones not done yet.
                if not info.is_published():
                    pending[info.mid] = acks
                    acks.remaining += 1
            self.flush()
            if acks.remaining:
                async with asyncio.timeout(ack_timeout):
                    await acks.future
        except TimeoutError:
            raise RetryableSinkError(
                f"broker {self._where} did not acknowledge {acks.remaining} message(s) "
                f"within {ack_timeout} s"
            ) from None
        finally:
            if not acks.future.done():
                acks.future.cancel()
            elif not acks.future.cancelled():
                acks.future.exception()  # retrieved, so asyncio does not report it
            if acks.remaining:
                for mid in [mid for mid, waiting in pending.items() if waiting is acks]:
                    del pending[mid]

    async def serve(self) -> None:
        """Run paho's housekeeping (keepalive) until the connection closes."""
        while not self.closed.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_TICK):
                    await self.closed.wait()
            if not self.closed.is_set():
                self.client.loop_misc()
                self.flush()

    def flush(self) -> None:
        """Arm a one-shot writer when paho holds bytes the socket did not take yet."""
        if not self._writing and self._fd >= 0 and self.client.want_write():
            self._writing = True
            self.loop.add_writer(self._fd, self._writable)

    def disconnect(self) -> None:
        """Send DISCONNECT: a clean end, so the broker discards the last will."""
        self.client.disconnect()
        self.flush()

    def abort(self) -> None:
        """Close the socket without DISCONNECT (the broker then publishes the last will)."""
        self._closed("connection aborted")
        sock = self.client.socket()
        if sock is not None:
            self.client.on_socket_close = None  # paho reports this close again when collected
            sock.close()

    def abort_after_connect(self, connecting: asyncio.Future[None]) -> None:
        """Done-callback of a connect() whose waiter was cancelled."""
        if not connecting.cancelled():
            connecting.exception()  # retrieved, so asyncio does not report it
        self.abort()

    def _readable(self) -> None:
        client = self.client
        client.loop_read()
        # An SSL socket may hold decrypted bytes the selector cannot see (paho issue #131).
        while self._ssl_sock is not None and self._ssl_sock.pending():
            client.loop_read()
        self.flush()

    def _writable(self) -> None:
        self.client.loop_write()
        if self._writing and not self.client.want_write():
            self._writing = False
            self.loop.remove_writer(self._fd)

    def _closed(self, reason: str) -> None:
        """The socket is closing: stop watching it and fail every write still waiting."""
        if self._fd >= 0:
            self.loop.remove_reader(self._fd)
            self.loop.remove_writer(self._fd)
            self._fd = -1
        self._writing = False
        self._ssl_sock = None
        self.close_reason = self.close_reason or reason
        self.closed.set()
        if not self.connack.done():
            self.connack.set_result(None)
        if self.pending:
            waiting = list(self.pending.values())
            self.pending.clear()
            for acks in waiting:
                acks.fail(RetryableSinkError(f"connection to broker {self._where} lost"))

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if not self.connack.done():
            self.connack.set_result(reason_code)

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties,
    ) -> None:
        acks = self.pending.pop(mid, None)
        if acks is None:  # QoS 0 written inside publish(), or an announce()
            return
        if not reason_code.is_failure:
            acks.ack()
        elif reason_code.value in _FINAL_PUBACK_REASONS:
            acks.fail(SinkError(f"broker {self._where} refused a message: {reason_code}"))
        else:
            acks.fail(RetryableSinkError(f"broker {self._where} refused a message: {reason_code}"))

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        # paho closes the socket first (see _on_socket_close), then reports why.
        if flags.is_disconnect_packet_from_server:
            self.close_reason = f"the broker disconnected: {reason_code}"
        elif reason_code.value == _UNSPECIFIED_ERROR:  # paho's name for a lost connection
            self.close_reason = "connection closed by the broker or the network"
        else:
            self.close_reason = str(reason_code)

    def _on_socket_close(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._closed("connection closed")


def _tls_context(tls: MqttTlsConfig) -> ssl.SSLContext:
    """One SSL context for every connection, built once so bad files fail at start-up."""
    try:
        context = ssl.create_default_context(cafile=tls.ca_file)
        if tls.cert_file is not None and tls.key_file is not None:
            context.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise SinkError(f"cannot load the MQTT TLS files: {exc}") from exc
    if tls.insecure:
        context.check_hostname = False
    return context


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
