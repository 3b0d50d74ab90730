"""One assembly: ``gateway run`` builds one ``Gateway`` that owns everything; the HTTP API is an
optional face that receives it.

The gateway is put together from the installed plugins only: each configured sink from its
sink plugin, each device's connector from its protocol plugin's factory (built the first time a
device of that protocol starts, so an unused protocol costs nothing).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Mapping, Sequence

from gateway.audit import AUDIT_FILE, Audit
from gateway.commands import command_handler
from gateway.config import GatewayConfig
from gateway.control import ControlPlane
from gateway.datadir import DataDir
from gateway.errors import ConfigError, ConfigProblem
from gateway.fleet.agent import ConfigAgent
from gateway.history import HISTORY_FILE
from gateway.local_store import LocalStore
from gateway.memory import collect_less_often, settle_long_lived
from gateway.plugins import ConnectorFactory, PluginContext, Plugins, SinkConfigBase, installed
from gateway.protocols import CarriesConfig, DescribesDevices, Sink, TakesCommands
from gateway.reading import Reading
from gateway.registry import DATABASE_FILE, Registry, open_database
from gateway.runtime import Runtime
from gateway.tags import TagBase
from gateway.writeback import WriteService

__all__ = ["LOCAL_STORE", "Gateway"]

log = logging.getLogger(__name__)

LOCAL_STORE = "local"
"""The type of the local store's sink, and its name when the config does not list one."""


class _Factories(Mapping[str, ConnectorFactory]):
    """Connector factories by protocol type, each made on first use."""

    def __init__(self, plugins: Plugins, context: PluginContext) -> None:
        self._plugins = plugins
        self._context = context
        self._made: dict[str, ConnectorFactory] = {}

    def __getitem__(self, type_: str) -> ConnectorFactory:
        factory = self._made.get(type_)
        if factory is None:
            plugin = self._plugins.protocol(type_)
            factory = self._made[type_] = plugin.connector_factory(self._context)
        return factory

    def __iter__(self) -> Iterator[str]:
        return iter(self._plugins.protocols)

    def __len__(self) -> int:
        return len(self._plugins.protocols)


class _Directory:
    """The running devices (the runtime's) and their latest values (the local store's)."""

    def __init__(self, runtime: Runtime, store: LocalStore) -> None:
        self._runtime = runtime
        self._store = store

    def running(self) -> Sequence[str]:
        return list(self._runtime.devices)

    def tags_of(self, device: str) -> Sequence[TagBase] | None:
        running = self._runtime.devices.get(device)
        return None if running is None else running.tags

    def current(self, device: str) -> Mapping[str, Reading]:
        return self._store.current(device)


class Gateway:
    """Plugins, storage, registry, control plane, runtime and sinks of one gateway process."""

    def __init__(self, config: GatewayConfig, plugins: Plugins | None = None) -> None:
        self.config = config
        self.data_dir = DataDir(config.gateway.data_dir)
        self.data_dir.lock()  # before anything touches the directory
        self.data_dir.set_aside_if_damaged(
            DATABASE_FILE,
            "the outbox (batches not yet delivered) and the devices and profiles registered"
            " over the API",
        )
        self.data_dir.set_aside_if_damaged(HISTORY_FILE, "the local history")
        self.data_dir.set_aside_if_damaged(AUDIT_FILE, "the audit of writes to devices")
        self.plugins = plugins = plugins or installed()
        context = PluginContext(config.gateway.id, config.gateway.data_dir)
        sink_configs: dict[str, SinkConfigBase] = dict(config.sinks)
        if not any(c.type == LOCAL_STORE for c in sink_configs.values()):
            # The page and the API show what the local store keeps: it is always there.
            model = plugins.sink(LOCAL_STORE).config_model
            sink_configs.setdefault(LOCAL_STORE, model.model_validate({"type": LOCAL_STORE}))
        self.sinks: list[Sink] = [
            plugins.sink(c.type).create(name, c, context) for name, c in sink_configs.items()
        ]
        stores = [sink for sink in self.sinks if isinstance(sink, LocalStore)]
        if len(stores) != 1:
            # Two listed, or none listed and its default name taken by a sink of another type.
            problem = ConfigProblem(
                "sinks", f"exactly one sink of type {LOCAL_STORE} (found {len(stores)})"
            )
            raise ConfigError([problem])
        self.store = stores[0]
        self.runtime = Runtime(config, self.sinks, _Factories(plugins, context))
        directory = _Directory(self.runtime, self.store)
        for sink in self.sinks:
            if isinstance(sink, DescribesDevices):
                sink.use_directory(directory)
        self._database = open_database(config.gateway.data_dir / DATABASE_FILE)
        self._registry = Registry(self._database)
        self.control = ControlPlane(config, self._registry, self.runtime, self.store, plugins)
        self.audit = Audit(config.gateway.data_dir / AUDIT_FILE, config.writes.audit_rows)
        self.writes = WriteService(config.writes, self.audit)
        if config.writes.enabled and config.writes.mqtt:
            handler = command_handler(self.control, self.writes)
            takers = [sink for sink in self.sinks if isinstance(sink, TakesCommands)]
            if not takers:
                raise ConfigError(
                    [ConfigProblem("writes.mqtt", "no sink takes commands: add an MQTT sink")]
                )
            for sink in takers:
                sink.take_commands(handler)
        if config.fleet.enabled:
            self._carry_config(config)
        settle_long_lived()  # the libraries and every restored device
        collect_less_often()

    def _carry_config(self, config: GatewayConfig) -> None:
        """Take desired configurations over the fleet's MQTT sink (gateway/fleet/agent.py)."""
        carriers = [sink for sink in self.sinks if isinstance(sink, CarriesConfig)]
        wanted = config.fleet.sink
        if wanted is not None:
            carriers = [sink for sink in carriers if sink.name == wanted]
        if len(carriers) != 1:
            found = ", ".join(sink.name for sink in carriers) or "none"
            problem = (
                f"no MQTT sink named {wanted!r}"
                if wanted is not None
                else f"exactly one MQTT sink carries it, or name it in fleet.sink (found {found})"
            )
            raise ConfigError([ConfigProblem("fleet.sink", problem)])
        carriers[0].carry_config(ConfigAgent(self.control).handle)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; ``runtime.started`` is set once devices are polled."""
        try:
            await self.runtime.run(stop)
        finally:
            self.close()

    def close(self) -> None:
        """Release the files (``run`` does it when it ends; a gateway never run needs it)."""
        self.audit.close()
        self._registry.close()
        self._database.close()
        self.data_dir.release()
