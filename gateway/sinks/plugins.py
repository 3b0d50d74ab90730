"""The gateway's own sink plugins, registered through entry points like any other
(``edge_gateway.sinks``: ``mqtt``, ``sparkplug``, ``influxdb``, ``local``). The sinks themselves
are imported only when one is configured."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gateway.history import HistoryConfig
from gateway.plugins import PluginContext, SinkConfigBase
from gateway.protocols import Sink
from gateway.sinks.influx_config import InfluxConfig
from gateway.sinks.mqtt_config import MqttConfig
from gateway.sinks.sparkplug.config import SparkplugConfig

__all__ = ["INFLUXDB", "LOCAL", "MQTT", "SPARKPLUG", "LocalStoreConfig"]


class MqttPlugin:
    type = "mqtt"
    config_model = MqttConfig

    def create(self, name: str, config: SinkConfigBase, context: PluginContext) -> Sink:
        from gateway.sinks.mqtt import MqttSink

        assert isinstance(config, MqttConfig)
        return MqttSink(config, context.gateway_id, name)


class SparkplugPlugin:
    type = "sparkplug"
    config_model = SparkplugConfig

    def create(self, name: str, config: SinkConfigBase, context: PluginContext) -> Sink:
        from gateway.sinks.sparkplug.sink import SparkplugSink

        assert isinstance(config, SparkplugConfig)
        return SparkplugSink(config, context.gateway_id, name, context.data_dir)


class InfluxPlugin:
    type = "influxdb"
    config_model = InfluxConfig

    def create(self, name: str, config: SinkConfigBase, context: PluginContext) -> Sink:
        from gateway.sinks.influx import InfluxSink

        assert isinstance(config, InfluxConfig)
        return InfluxSink(config, context.gateway_id, name)


class LocalStoreConfig(SinkConfigBase):
    """The local store behind the page and the API: latest values, live stream, history."""

    type: Literal["local"] = "local"
    history: HistoryConfig = Field(default_factory=HistoryConfig)


class LocalStorePlugin:
    type = "local"
    config_model = LocalStoreConfig

    def create(self, name: str, config: SinkConfigBase, context: PluginContext) -> Sink:
        from gateway.history import HISTORY_FILE, History
        from gateway.local_store import LocalStore

        assert isinstance(config, LocalStoreConfig)
        history = None
        if config.history.enabled:
            history = History(context.data_dir / HISTORY_FILE, config.history)
        return LocalStore(history, name)


MQTT = MqttPlugin()
SPARKPLUG = SparkplugPlugin()
INFLUXDB = InfluxPlugin()
LOCAL = LocalStorePlugin()
