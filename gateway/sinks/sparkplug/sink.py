"""The Sparkplug B sink: the gateway as one edge node on its own MQTT session.

Session (Sparkplug 3.0):
- every connection carries the next ``bdSeq`` (kept in the data dir across restarts) in its
  will, NDEATH at QoS 1, not retained; NBIRTH carries the same ``bdSeq``;
- NCMD and DCMD are subscribed before NBIRTH; with ``primary_host_id``, NBIRTH waits until the
  host's retained ``spBv1.0/STATE/{id}`` says online, and when it says offline the node
  publishes NDEATH, disconnects and starts over (waiting for the host again);
- until the node is born, writes are refused as retryable: the outbox keeps the data, and it
  arrives after the births as historical;
- everything but the will is QoS 0 and never retained; a write counts as delivered once its
  messages are written to the socket (Sparkplug data has no acknowledgement).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import orjson
from paho.mqtt import client as mqtt

from gateway.errors import RetryableSinkError, SinkError
from gateway.protocols import Command, CommandHandler, DeviceDirectory
from gateway.reading import Batch
from gateway.sinks.mqtt_session import (
    ConnectFailed,
    Connection,
    Message,
    SessionTasks,
    Will,
    keep_connected,
    open_connection,
    tls_context,
    where_of,
)
from gateway.sinks.sparkplug.config import SparkplugConfig
from gateway.sinks.sparkplug.node import NAMESPACE, REBIRTH, EdgeNode, Published
from gateway.status import DeviceState, DeviceStatus

__all__ = ["SparkplugSink"]

log = logging.getLogger(__name__)

_STOP_TIMEOUT = 5.0
_DEAD = frozenset({DeviceState.OFFLINE, DeviceState.DISABLED})


class SparkplugSink:
    durable = True
    """Behind the outbox: what a host missed (broker down, primary host offline) is kept and
    published afterwards, oldest first, as historical."""

    def __init__(self, config: SparkplugConfig, gateway_id: str, name: str, data_dir: Path) -> None:
        self.name = name
        self._config = config
        group_id = config.group_id or gateway_id
        node_id = config.edge_node_id or gateway_id
        self.node = EdgeNode(group_id, node_id, _gateway_version())
        self._client_id = config.client_id or f"{gateway_id}.{name}"
        self._label = f"sink {name}"
        self._where = " or ".join(where_of(address) for address in config.addresses)
        self._bdseq_file = data_dir / f"sparkplug-{name}.bdseq"
        self._bdseq = -1
        """The ``bdSeq`` of the current (or last) connection."""
        self._directory: DeviceDirectory | None = None
        self._commands: CommandHandler | None = None
        self._tls: ssl.SSLContext | None = None
        self._conn: Connection | None = None
        self._online = asyncio.Event()
        """The node is born on the current connection."""
        self._host_online = asyncio.Event()
        self._host_timestamp = -1
        self._tasks = SessionTasks()
        host = config.primary_host_id
        self._state_topic = None if host is None else f"{NAMESPACE}/STATE/{host}"

    def use_directory(self, directory: DeviceDirectory) -> None:
        self._directory = directory

    def take_commands(self, handler: CommandHandler) -> None:
        """DCMD writes go through ``handler`` (the write-back path: policy, audit)."""
        self._commands = handler

    @property
    def connected(self) -> bool:
        """Born on a live connection (waiting for the primary host counts as not connected)."""
        conn = self._conn
        return self._online.is_set() and conn is not None and not conn.closed.is_set()

    @property
    def skipped_values(self) -> int:
        return self.node.skipped_values

    @property
    def rejected_points(self) -> int:
        """Sparkplug has no partial writes: a message is published whole or not at all."""
        return 0

    async def start(self) -> None:
        if self._tasks.supervisor is not None:
            return
        if self._directory is None:
            raise SinkError(f"sink {self.name}: no device directory (the gateway gives one)")
        if self._config.tls is not None:
            self._tls = tls_context(self._config.tls)
        self._bdseq = await asyncio.to_thread(_read_bdseq, self._bdseq_file)
        self._tasks.supervisor = asyncio.create_task(
            keep_connected(self._label, self._config, self._connect, self._serve),
            name=f"sparkplug-supervisor:{self.name}",
        )

    async def wait_online(self, timeout: float) -> bool:  # noqa: ASYNC109 (returns, never raises)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._online.wait()
        return self.connected

    async def write(self, batches: Sequence[Batch]) -> None:
        """DDATA per batch (after a DBIRTH where one is due); returns once written."""
        conn = self._born()
        assert self._directory is not None
        messages: list[Message] = []
        for batch in batches:
            for message in self.node.device_data(batch, self._directory):
                messages.append((message.topic, message.payload, False))
        await conn.deliver(messages, 0, self._config.publish_timeout)

    async def publish_device_statuses(self, statuses: Sequence[DeviceStatus]) -> None:
        """DDEATH for a born device that went offline (or was disabled or removed); DBIRTH for
        one that is back with values; NDATA when the number of devices changed."""
        conn = self._born()
        assert self._directory is not None
        directory = self._directory
        out: list[Published] = []
        count = self.node.device_count_changed(len(directory.running()))
        if count is not None:
            out.append(count)
        for status in statuses:
            device = status.device
            if status.state in _DEAD:
                death = self.node.device_death(device)
                if death is not None:
                    out.append(death)
                if directory.tags_of(device) is None:
                    self.node.forget(device)
            elif status.state is not DeviceState.STARTING and not self.node.born(device):
                tags, current = directory.tags_of(device), directory.current(device)
                if tags is not None and current:
                    out.append(self.node.device_birth(device, tags, current.values()))
        await self._deliver(conn, out)

    async def clear_device_status(self, device: str) -> None:
        """Nothing is retained in Sparkplug: the DDEATH already said it is gone."""

    async def stop(self) -> None:
        """NDEATH (acknowledged, QoS 1), then DISCONNECT. Idempotent; bounded in time."""
        await self._tasks.cancel()
        conn, self._conn = self._conn, None
        self._online.clear()
        if conn is None:
            return
        if not conn.closed.is_set():
            await self._say_goodbye(conn)
        conn.abort()

    def _born(self) -> Connection:
        conn = self._conn
        if conn is None or conn.closed.is_set():
            raise RetryableSinkError(f"not connected to broker {self._where} ({self._label})")
        if not self._online.is_set():
            raise RetryableSinkError(
                f"waiting for primary host {self._config.primary_host_id} to be online"
            )
        return conn

    async def _deliver(self, conn: Connection, messages: Sequence[Published]) -> None:
        if messages:
            batch = [(m.topic, m.payload, False) for m in messages]
            await conn.deliver(batch, 0, self._config.publish_timeout)

    async def _connect(self, address: tuple[str, int]) -> Connection:
        """A new connection with the next bdSeq in its will (kept on disk before CONNECT goes
        out; used up only if it may have reached the broker); subscribe before any birth."""
        bdseq = (self._bdseq + 1) & 0xFF
        await asyncio.to_thread(_write_bdseq, self._bdseq_file, bdseq)
        will = Will(self.node.death_topic, self.node.death(bdseq), 1, False)
        try:
            conn = await open_connection(self._config, address, self._client_id, will, self._tls)
        except ConnectFailed as failed:
            if failed.sent:
                self._bdseq = bdseq
            raise
        self._bdseq = bdseq
        conn.client.on_message = self._on_message
        for topic in self.node.command_topics:
            conn.subscribe(topic, qos=0)
        if self._state_topic is not None:
            conn.subscribe(self._state_topic, qos=1)
        conn.flush()
        return conn

    async def _serve(self, conn: Connection) -> None:
        self._conn = conn
        self._host_online.clear()
        try:
            closed = asyncio.ensure_future(conn.closed.wait())
            serving = asyncio.ensure_future(conn.serve())
            try:
                if self._state_topic is not None:
                    await self._until_host_online(conn, closed)
                if not conn.closed.is_set():
                    await self._birth(conn)
                await serving
            finally:
                closed.cancel()
                serving.cancel()
        finally:
            self._online.clear()
            if self._conn is conn:
                self._conn = None

    async def _until_host_online(self, conn: Connection, closed: asyncio.Future[Any]) -> None:
        host = asyncio.ensure_future(self._host_online.wait())
        try:
            if not self._host_online.is_set():
                log.info(
                    "Sparkplug sink %s: waiting for primary host %s to be online",
                    self.name,
                    self._config.primary_host_id,
                )
            await asyncio.wait([host, closed], return_when=asyncio.FIRST_COMPLETED)
        finally:
            host.cancel()

    async def _birth(self, conn: Connection) -> None:
        """NBIRTH then a DBIRTH for every running device that has values."""
        assert self._directory is not None
        directory = self._directory
        running = directory.running()
        out = [self.node.node_birth(self._bdseq, len(running))]
        for device in running:
            tags, current = directory.tags_of(device), directory.current(device)
            if tags is not None and current:
                out.append(self.node.device_birth(device, tags, current.values()))
        await self._deliver(conn, out)
        self._online.set()
        log.info(
            "Sparkplug edge node %s/%s born (bdSeq %d, %d devices)",
            self.node.group_id,
            self.node.node_id,
            self._bdseq,
            len(out) - 1,
        )

    async def _say_goodbye(self, conn: Connection) -> None:
        """NDEATH by ourselves (a clean DISCONNECT discards the will), then DISCONNECT."""
        try:
            death = (self.node.death_topic, self.node.death(self._bdseq), False)
            await conn.deliver([death], 1, min(self._config.publish_timeout, _STOP_TIMEOUT))
        except SinkError as exc:
            log.debug("Sparkplug sink %s: NDEATH not acknowledged: %s", self.name, exc)
        conn.disconnect()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await conn.closed.wait()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        """A STATE, NCMD or DCMD message (paho calls this on the event loop's thread)."""
        if message.topic == self._state_topic:
            self._host_state(bytes(message.payload))
        else:
            self._tasks.spawn(self._carry_out(message.topic, bytes(message.payload)))

    def _host_state(self, payload: bytes) -> None:
        try:
            state = orjson.loads(payload)
            online, timestamp = state["online"], int(state["timestamp"])
            if not isinstance(online, bool):
                raise TypeError("online is not a boolean")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            log.warning(
                "Sparkplug sink %s: ignored a malformed STATE of host %s: %s",
                self.name,
                self._config.primary_host_id,
                exc,
            )
            return
        if timestamp < self._host_timestamp:
            return  # an older state delivered late: the spec says to ignore it
        self._host_timestamp = timestamp
        if online:
            self._host_online.set()
            return
        self._host_online.clear()
        conn = self._conn
        if self._online.is_set() and conn is not None:
            log.warning(
                "Sparkplug sink %s: primary host %s went offline; disconnecting until it is back",
                self.name,
                self._config.primary_host_id,
            )
            self._online.clear()
            self._tasks.spawn(self._say_goodbye(conn))

    async def _carry_out(self, topic: str, payload: bytes) -> None:
        try:
            await self._command(topic, payload)
        except Exception:  # a command must never kill the sink, and never fail silently
            log.exception("Sparkplug sink %s: the command on %s failed", self.name, topic)

    async def _command(self, topic: str, payload: bytes) -> None:
        try:
            command = self.node.command(topic, payload)
        except ValueError as exc:
            log.warning("Sparkplug sink %s: ignored a command on %s: %s", self.name, topic, exc)
            return
        for problem in command.problems:
            log.warning("Sparkplug sink %s: command on %s: %s", self.name, topic, problem)
        if command.device is None:
            if command.values.get(REBIRTH) is True:
                await self._rebirth()
            return
        if not command.values:
            return
        handler = self._commands
        if handler is None:
            log.warning(
                "Sparkplug sink %s: DCMD for %s refused: writes over MQTT are off"
                " (writes.enabled and writes.mqtt)",
                self.name,
                command.device,
            )
            return
        request = orjson.dumps({"values": command.values})
        reply = orjson.loads(await handler(Command(command.device, request, f"sparkplug:{topic}")))
        written = {
            result["tag"]: command.values[result["tag"]]
            if result.get("read_back") is None
            else result["read_back"]
            for result in reply.get("results", [])
            if result.get("result") == "written" and result["tag"] in command.values
        }
        if not reply.get("ok"):
            log.warning(
                "Sparkplug sink %s: DCMD for %s: %s", self.name, command.device, reply.get("error")
            )
        data = self.node.values_now(command.device, written) if written else None
        conn = self._conn
        if data is not None and conn is not None and self._online.is_set():
            with contextlib.suppress(SinkError):
                await self._deliver(conn, [data])

    async def _rebirth(self) -> None:
        conn = self._conn
        if conn is None or not self._online.is_set():
            return  # not born yet: the birth on its way answers the request
        log.info("Sparkplug sink %s: rebirth requested by NCMD", self.name)
        with contextlib.suppress(SinkError):
            await self._birth(conn)


def _gateway_version() -> str:
    try:
        return version("edge-gateway")
    except PackageNotFoundError:
        return "unknown"


def _read_bdseq(path: Path) -> int:
    """The last connection's bdSeq (-1 if none yet: the first connection gets 0)."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return -1
    try:
        value = int(text)
    except ValueError:
        log.warning("%s is damaged (%r); bdSeq starts over at 0", path, text[:20])
        return -1
    return value & 0xFF


def _write_bdseq(path: Path, bdseq: int) -> None:
    """Durably, before the connection that uses it: a restart must never reuse it."""
    temporary = path.with_suffix(".tmp")
    with temporary.open("w") as file:
        file.write(f"{bdseq}\n")
        file.flush()
        os.fsync(file.fileno())
    temporary.replace(path)
