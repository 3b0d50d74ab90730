"""asyncua server wiring: the line's address space, a tick loop that writes the moving values,
an optional Basic256Sha256 endpoint with username login, a method, and events: Boiler1's
high-temperature alarm and Line1's batch events (simulators/opcua/alarms.py).

Values are written once per tick with ``write_attribute_value`` (what fires the subscriptions'
notifications); the static ones once at start. The source timestamp of every value is the
time it was written.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.common.node import Node
from asyncua.crypto import cert_gen
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.internal_server import InternalServer
from asyncua.server.server import Server
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes
from cryptography.x509.oid import ExtendedKeyUsageOID

from simulators.opcua.alarms import BatchEvents, BoilerAlarm
from simulators.opcua.plant import BULK_FOLDER, NAMESPACE, VARIABLES, Variable, bulk_value

__all__ = ["APPLICATION_URI", "MAX_CHANGES_PER_SECOND", "PlantServer", "SimulatorConfig"]

logger = logging.getLogger(__name__)

APPLICATION_URI = "urn:edge-gateway:opcua-sim:server"
MAX_CHANGES_PER_SECOND = 5000
"""Above about this many value changes per second the asyncua server itself is the bottleneck."""
_DYNAMIC = sum(1 for v in VARIABLES if v.dynamic)


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """What the simulator serves and how (see ``python -m simulators.opcua --help``)."""

    host: str = "127.0.0.1"
    port: int = 4840
    nodes: int = 0
    """Bulk Double variables for benchmarks (``Plant/Bulk/V00000``...)."""
    period: float = 0.5
    """Seconds per tick: every moving value changes once per tick."""
    secure: bool = False
    """Serve only Basic256Sha256 (Sign, SignAndEncrypt) endpoints, no unsecured one."""
    username: str | None = None
    password: str | None = None
    pki_dir: Path | None = None
    """Where the server's certificate and key live (made on first start): needed by --secure."""
    extra_namespaces: int = 0
    """Namespaces registered before the line's, so its index moves (tests of ``nsu=``)."""
    max_nodes_per_read: int = 10000
    """The MaxNodesPerRead operation limit the server advertises."""
    alarm_period: float = 15.0
    """Seconds the Boiler1 alarm stays active, then normal, and so on (active from the start)."""

    @property
    def changes_per_second(self) -> float:
        return (self.nodes + _DYNAMIC) / self.period


def _node(identifier: str, namespace: int) -> ua.NodeId:
    """A string node id (wrapped in the asyncua types its signature asks for)."""
    return ua.NodeId(ua.String(identifier), ua.Int16(namespace))


class _UserManager:
    """Accepts exactly one username and password; anonymous clients are refused."""

    def __init__(self, username: str, password: str) -> None:
        self._username = username
        self._password = password

    def get_user(
        self,
        iserver: InternalServer,
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,
    ) -> User | None:
        if username == self._username and password == self._password:
            return User(role=UserRole.User, name=username)
        return None


class PlantServer:
    """The line as an OPC UA server; ``start()``, then ``run(stop)`` until stop is set."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        user_manager = (
            _UserManager(config.username, config.password or "")
            if config.username is not None
            else None
        )
        self.server = Server(user_manager=user_manager)  # type: ignore[arg-type]
        # asyncua's ConditionRefresh (and its RefreshStart/End events), set up by init().
        self.server.iserver.bind_condition_methods = True
        self.namespace_index = 0
        self._dynamic: list[tuple[ua.NodeId, Variable]] = []
        self._bulk: list[ua.NodeId] = []
        self._reset_count: Node | None = None
        self._started = time.monotonic()
        self._alarm: BoilerAlarm | None = None
        self._batches: BatchEvents | None = None

    @property
    def port(self) -> int:
        bserver = self.server.bserver
        if bserver is None:
            raise RuntimeError("the server is not started")
        return int(bserver.port)

    async def start(self) -> int:
        """Build the address space, listen, write the first values; return the port."""
        config = self.config
        server = self.server
        await server.init()
        server.set_endpoint(f"opc.tcp://{config.host}:{config.port}/edge-gateway/sim")
        server.set_server_name("edge-gateway OPC UA PLC simulator")
        await server.set_application_uri(APPLICATION_URI)
        if config.secure:
            await self._load_certificate()
            server.set_security_policy(
                [
                    ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
                    ua.SecurityPolicyType.Basic256Sha256_Sign,
                ]
            )
        else:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        server.set_identity_tokens(
            [ua.UserNameIdentityToken if config.username is not None else ua.AnonymousIdentityToken]
        )
        for extra in range(config.extra_namespaces):
            await server.register_namespace(f"urn:edge-gateway:opcua-sim:padding:{extra}")
        self.namespace_index = await server.register_namespace(NAMESPACE)
        await self._set_operation_limits()
        await self._build_address_space()
        self._started = time.monotonic()
        await self._write_all(0, initial=True)
        await server.start()
        return self.port

    async def stop(self) -> None:
        await self.server.stop()

    async def run(self, stop: asyncio.Event) -> None:
        """Write the moving values at every tick until ``stop`` is set."""
        period = self.config.period
        tick = 0
        while not stop.is_set():
            tick += 1
            wait = self._started + tick * period - time.monotonic()
            if wait > 0:
                try:
                    async with asyncio.timeout(wait):
                        await stop.wait()
                    return
                except TimeoutError:
                    pass
            else:
                # Behind schedule (a loaded machine): jump to the current tick, never queue.
                tick = int((time.monotonic() - self._started) / period)
            await self._write_all(tick, initial=False)
            await self._raise_events(tick)

    async def _load_certificate(self) -> None:
        pki = self.config.pki_dir
        if pki is None:
            raise RuntimeError("--secure needs --pki-dir (where the server certificate lives)")
        pki.mkdir(parents=True, exist_ok=True)
        cert, key = pki / "server-cert.der", pki / "server-key.pem"
        await cert_gen.setup_self_signed_certificate(
            key,
            cert,
            APPLICATION_URI,
            socket.gethostname(),
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
            {"commonName": "edge-gateway OPC UA PLC simulator"},
        )
        await self.server.load_certificate(cert)
        await self.server.load_private_key(key)

    async def _set_operation_limits(self) -> None:
        node = self.server.get_node(
            ua.NodeId(ua.Int32(ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead))
        )
        await node.write_value(ua.Variant(self.config.max_nodes_per_read, ua.VariantType.UInt32))

    async def _build_address_space(self) -> None:
        idx = self.namespace_index
        objects = self.server.nodes.objects
        plant = await objects.add_folder(_node("Plant", idx), ua.QualifiedName("Plant", idx))
        folders: dict[tuple[str, ...], Node] = {(): plant}

        async def folder(path: tuple[str, ...]) -> Node:
            if path not in folders:
                parent = await folder(path[:-1])
                folders[path] = await parent.add_object(
                    _node(".".join(path), idx), ua.QualifiedName(path[-1], idx)
                )
            return folders[path]

        for var in VARIABLES:
            parent = await folder(var.path[:-1])
            node = await parent.add_variable(
                _node(var.node_id, idx),
                ua.QualifiedName(var.path[-1], idx),
                ua.Variant(var.value(0), var.variant_type),
                varianttype=var.variant_type,
            )
            if var.writable:
                await node.set_writable()
            if var.dynamic:
                self._dynamic.append((node.nodeid, var))
            if var.node_id == "Line1.ResetCount":
                self._reset_count = node
        line = await folder(("Line1",))
        await line.add_method(
            _node("Line1.Reset", idx),
            ua.QualifiedName("Reset", idx),
            self._reset,
            [],
            [ua.VariantType.UInt32],
        )
        self._alarm = BoilerAlarm(self.server, idx, self.config.alarm_period)
        await self._alarm.build(objects)
        self._batches = BatchEvents(self.server, idx)
        await self._batches.build()
        if self.config.nodes:
            bulk = await folder((BULK_FOLDER,))
            for index in range(self.config.nodes):
                name = f"V{index:05d}"
                node = await bulk.add_variable(
                    _node(f"{BULK_FOLDER}.{name}", idx),
                    ua.QualifiedName(name, idx),
                    ua.Variant(bulk_value(index, 0), ua.VariantType.Double),
                )
                self._bulk.append(node.nodeid)

    async def _reset(self, parent: ua.NodeId) -> list[ua.Variant]:
        """Method Line1/Reset(): counts its calls in Line1/ResetCount and returns the count."""
        assert self._reset_count is not None
        count = int(await self._reset_count.read_value()) + 1
        await self._reset_count.write_value(ua.Variant(count, ua.VariantType.UInt32))
        return [ua.Variant(count, ua.VariantType.UInt32)]

    async def _raise_events(self, tick: int) -> None:
        assert self._alarm is not None and self._batches is not None
        await self._alarm.tick(tick * self.config.period)
        await self._batches.tick(tick)

    async def _write_all(self, tick: int, *, initial: bool) -> None:
        now = ua.DateTime.now(UTC)
        write = self.server.write_attribute_value
        variables: Sequence[Variable] = VARIABLES if initial else [v for _, v in self._dynamic]
        for var in variables:
            nodeid = _node(var.node_id, self.namespace_index)
            status = ua.StatusCode(getattr(StatusCodes, var.status))
            await write(
                nodeid,
                ua.DataValue(
                    ua.Variant(var.value(tick), var.variant_type, is_array=var.array or None),
                    StatusCode=status,
                    SourceTimestamp=now,
                    ServerTimestamp=now,
                ),
            )
        double = ua.VariantType.Double
        for index, nodeid in enumerate(self._bulk):
            await write(
                nodeid,
                ua.DataValue(
                    ua.Variant(bulk_value(index, tick), double),
                    SourceTimestamp=now,
                    ServerTimestamp=now,
                ),
            )
