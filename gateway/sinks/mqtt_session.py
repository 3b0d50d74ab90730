"""One MQTT connection driven from the event loop, and the loop that keeps one open.

paho is driven from the event loop with no thread of its own (measured cheaper than
``loop_start()``, see shared/README.md):

- ``publish()`` writes to the non-blocking socket itself; if the socket buffer is full, paho
  keeps the rest and a one-shot ``loop.add_writer`` flushes it;
- ``loop.add_reader(sock)`` runs ``loop_read``, which takes CONNACK, PUBACK/PUBCOMP, PINGRESP;
- the connection calls ``loop_misc`` (keepalive) about once a second while it is open;
- the blocking ``connect()`` (DNS, TCP, TLS handshake, CONNECT) runs in the default executor
  *before* any callback is installed, so every paho callback runs on the event loop thread.

Every connection gets a fresh paho ``Client``: paho never holds a hidden queue of old messages
to replay; the runtime owns buffering and retries. Acknowledgements are awaited per write, one
future per write, resolved by ``on_publish`` (message ids map to that write).

Used by the MQTT sink and the Sparkplug sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.errors import RetryableSinkError, SinkError
from gateway.sinks.mqtt_config import BrokerConfig, MqttTlsConfig

__all__ = [
    "ConnectFailed",
    "Connection",
    "Message",
    "SessionTasks",
    "Will",
    "keep_connected",
    "open_connection",
    "tls_context",
    "where_of",
]

log = logging.getLogger(__name__)

_TICK = 1.0
"""Seconds between ``loop_misc`` calls (keepalive pings and their timeout)."""
_FINAL_PUBACK_REASONS = frozenset({0x87, 0x90, 0x99})
"""MQTT 5 PUBACK reasons that retrying cannot fix: not authorized, bad topic, bad payload."""
_UNSPECIFIED_ERROR = 0x80
_DEFAULT_INFLIGHT = 20
"""MQTT 3.1.1 has no way to learn what the broker takes: paho's and Mosquitto's default."""
_RECEIVE_MAXIMUM = 65535

Message = tuple[str, bytes, bool]
"""Topic, payload, retain."""


@dataclass(frozen=True, slots=True)
class Will:
    """What the broker publishes for us if the connection dies without a DISCONNECT."""

    topic: str
    payload: bytes
    qos: int
    retain: bool


class SessionTasks:
    """A sink's reconnect loop and the short tasks its paho callbacks start (answers to
    commands): all cancelled, and awaited, when the sink stops."""

    def __init__(self) -> None:
        self.supervisor: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def cancel(self) -> None:
        task, self.supervisor = self.supervisor, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])
        for running in list(self._running):
            running.cancel()
        if self._running:
            await asyncio.wait(self._running)


async def open_connection(
    config: BrokerConfig,
    address: tuple[str, int],
    client_id: str,
    will: Will,
    tls: ssl.SSLContext | None,
) -> Connection:
    """One connection attempt to the broker node at ``address``: connect, await CONNACK.
    Raises ConnectFailed."""
    conn = Connection(config, address, client_id, will, tls)
    connecting = asyncio.get_running_loop().run_in_executor(None, conn.connect)
    try:
        await asyncio.shield(connecting)
    except asyncio.CancelledError:
        # The executor thread cannot be interrupted: drop its socket once it is done.
        connecting.add_done_callback(conn.abort_after_connect)
        raise
    except (OSError, ValueError) as exc:
        raise ConnectFailed(str(exc) or type(exc).__name__, sent=False) from exc
    try:
        conn.attach()
        async with asyncio.timeout(config.publish_timeout):
            reason = await conn.connack
    except TimeoutError:
        conn.abort()
        raise ConnectFailed(f"no CONNACK within {config.publish_timeout} s") from None
    except BaseException:
        conn.abort()
        raise
    if reason is None:
        raise ConnectFailed(f"connection closed before CONNACK ({conn.close_reason})")
    if reason.is_failure:
        conn.abort()
        raise ConnectFailed(f"broker refused the connection: {reason}")
    return conn


def where_of(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def keep_connected(
    label: str,
    config: BrokerConfig,
    connect: Callable[[tuple[str, int]], Awaitable[Connection]],
    serve: Callable[[Connection], Awaitable[None]],
) -> None:
    """Connect, serve, reconnect with full-jitter backoff, forever.

    With several broker nodes (``config.brokers``), a lost connection or a failed attempt goes
    on with the next node: one round over the nodes costs at most ``reconnect_min`` per node,
    and the backoff grows with each round that found none. ``serve`` returns when the
    connection is over (closed, or ended on purpose). An outage is logged as a warning once
    (then each new reason once, at info) and its end once, with how long it lasted; attempts
    themselves only at debug. ``label`` says whose connection it is ("sink mqtt").
    """
    addresses = config.addresses
    node = 0
    failures = 0
    """Failed attempts since the last connection."""
    ever_connected = False
    outage_since: float | None = None
    reasons: set[str] = set()
    while True:
        where = f"{where_of(addresses[node])} ({label})"
        try:
            conn = await connect(addresses[node])
        except Exception as exc:  # the loop outlives any failed attempt
            unexpected = not isinstance(exc, ConnectFailed)
            reason = f"{type(exc).__name__}: {exc}" if unexpected else str(exc)
            if outage_since is None:
                outage_since = time.monotonic()
                log.warning(
                    "MQTT broker %s unavailable: %s; retrying in the background",
                    where,
                    reason,
                    exc_info=unexpected,
                )
            elif reason not in reasons:
                log.info("MQTT broker %s still unavailable: %s", where, reason)
            else:
                log.debug("MQTT broker %s still unavailable: %s", where, reason)
            reasons.add(reason)
            node = (node + 1) % len(addresses)
            failures += 1
            rounds, in_round = divmod(failures, len(addresses))
            if in_round:  # other nodes of this round are still to be tried: soon
                await asyncio.sleep(random.uniform(0, config.reconnect_min))
                continue
            ceiling = min(config.reconnect_max, config.reconnect_min * 2.0 ** min(rounds - 1, 30))
            await asyncio.sleep(random.uniform(config.reconnect_min, ceiling))
            continue

        if outage_since is not None and ever_connected:
            outage = time.monotonic() - outage_since
            log.info("MQTT broker %s reachable again after %.1f s", where, outage)
        else:
            log.info("connected to MQTT broker %s", where)
        failures, ever_connected, outage_since = 0, True, None
        reasons.clear()
        await serve(conn)
        outage_since = time.monotonic()
        node = (node + 1) % len(addresses)  # the node may be gone: the next one first
        log.warning(
            "lost the connection to MQTT broker %s (%s); reconnecting in the background",
            where,
            conn.close_reason,
        )


class ConnectFailed(Exception):
    """One connection attempt failed; the supervisor backs off and tries again."""

    def __init__(self, reason: str, *, sent: bool = True) -> None:
        super().__init__(reason)
        self.sent = sent
        """Whether CONNECT (and so its will) may have reached the broker."""


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


class Connection:
    """One paho client on one socket; never reused, the next connection gets a new client."""

    def __init__(
        self,
        config: BrokerConfig,
        address: tuple[str, int],
        client_id: str,
        will: Will,
        tls: ssl.SSLContext | None,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.closed = asyncio.Event()
        self.connack: asyncio.Future[ReasonCode | None] = self.loop.create_future()
        self.close_reason = ""
        """Why the connection ended, once it has (paho's disconnect reason when it gives one)."""
        self.pending: dict[int, _Acks] = {}
        """Acknowledgements awaited, by message id."""
        self._subscribing: dict[int, str] = {}
        """Subscriptions awaiting their SUBACK, by message id."""
        self._config = config
        self.address = address
        self._where = where_of(address)
        self._fd = -1
        self._ssl_sock: ssl.SSLSocket | None = None
        self._writing = False
        v5 = config.protocol == "5"
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
        )
        self.client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        self._max_inflight = config.max_inflight
        self.client.max_inflight_messages_set(config.max_inflight or _DEFAULT_INFLIGHT)
        if config.username is not None:
            password = config.password.get_secret_value() if config.password else None
            self.client.username_pw_set(config.username, password)
        if tls is not None:
            self.client.tls_set_context(tls)

    def connect(self) -> None:
        """Open the socket and send CONNECT. Blocking: runs in the executor, no callbacks set."""
        host, port = self.address
        rc = self.client.connect(host, port, self._config.keepalive)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise ConnectionError(mqtt.error_string(rc))

    def attach(self) -> None:
        """Install the callbacks and watch the socket; from now on only this thread uses paho."""
        client = self.client
        sock = client.socket()
        if sock is None:
            raise ConnectFailed("connection closed while connecting")
        client.on_connect = self._on_connect
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_socket_close = self._on_socket_close
        self._fd = sock.fileno()
        self._ssl_sock = sock if isinstance(sock, ssl.SSLSocket) else None
        self.loop.add_reader(self._fd, self._readable)

    def subscribe(self, topic: str, qos: int) -> None:
        """Subscribe; a broker that refuses it (SUBACK failure: seen on a NATS node whose
        JetStream is still electing a leader) ends the connection, so that the next one, on
        the next node, subscribes again instead of missing that topic for good."""
        _, mid = self.client.subscribe(topic, qos=qos)
        if mid is not None:  # None: not connected any more, and the next connection subscribes
            self._subscribing[mid] = topic

    def announce(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        """Publish a message, not awaited (if lost, the next connection sends it again)."""
        self.client.publish(topic, payload, qos, retain=retain)
        self.flush()

    async def deliver(self, messages: Iterable[Message], qos: int, ack_timeout: float) -> None:
        """Publish the messages; with QoS >= 1 wait until the broker acknowledged them all,
        with QoS 0 until they are written to the socket."""
        acks = _Acks(self.loop)
        publish, pending = self.client.publish, self.pending
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

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        topic = self._subscribing.pop(mid, None)
        refused = [reason for reason in reasons if reason.is_failure]
        if topic is not None and refused:
            log.warning(
                "MQTT broker %s refused the subscription to %s (%s); reconnecting",
                self._where,
                topic,
                refused[0],
            )
            self.close_reason = f"subscription to {topic} refused ({refused[0]})"
            self.loop.call_soon(self.abort)  # not from within paho's own read

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
        if self._config.protocol == "5" and not reason_code.is_failure:
            # MQTT 5: the CONNACK's Receive Maximum (65535 when absent). paho does not apply it
            # itself, and its setter refuses a change once connected; nothing is in flight
            # before CONNACK, so this is safe.
            receive_maximum = getattr(properties, "ReceiveMaximum", _RECEIVE_MAXIMUM)
            wanted = self._max_inflight or receive_maximum
            client._max_inflight_messages = min(wanted, receive_maximum)
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


def tls_context(tls: MqttTlsConfig) -> ssl.SSLContext:
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
