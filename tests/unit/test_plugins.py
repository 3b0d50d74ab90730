"""The plugin seam in process: a plugin that lives only in the tests joins the config's unions,
its checks and its error paths; broken plugins are named."""

from __future__ import annotations

import copy
import importlib
import sys
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest

from gateway.config import device_adapter, parse_config
from gateway.errors import ConfigError
from gateway.plugins import PluginError, Plugins, _load, installed

PLUGINS_DIR = Path(__file__).resolve().parents[1] / "plugins"


@pytest.fixture
def with_counter() -> Iterator[Plugins]:
    """The installed plugins plus the test-only ``counter`` one, found by its entry point."""
    sys.path.insert(0, str(PLUGINS_DIR))
    importlib.invalidate_caches()
    try:
        yield Plugins.from_entry_points()
    finally:
        sys.path.remove(str(PLUGINS_DIR))
        sys.modules.pop("counter_plugin", None)


DOC: dict[str, Any] = {
    "gateway": {"id": "gw"},
    "profiles": [{"id": "c", "type": "counter", "groups": [{"tags": [{"name": "n"}]}]}],
    "devices": [
        {"id": "c1", "type": "counter", "profile": "c", "start": 5},
        {
            "id": "m1",
            "type": "modbus",
            "host": "h",
            "groups": [{"tags": [{"name": "a", "address": 0}]}],
        },
    ],
}


def test_the_installed_plugins_are_the_gateways_own() -> None:
    plugins = installed()
    assert set(plugins.protocols) == {"modbus", "opcua", "s7"}
    assert set(plugins.sinks) == {"mqtt", "sparkplug", "influxdb", "local"}
    assert set(plugins.commands()) == {"browse"}


def test_a_plugin_from_the_tests_joins_the_config(with_counter: Plugins) -> None:
    assert set(with_counter.protocols) == {"modbus", "opcua", "s7", "counter"}
    config = parse_config(copy.deepcopy(DOC), plugins=with_counter)
    assert [d.type for d in config.devices] == ["counter", "modbus"]
    assert config.devices[0].model_dump()["start"] == 5
    device = device_adapter(with_counter).validate_python(
        {"id": "c2", "type": "counter", "profile": "c"}
    )
    assert device.type == "counter"


def test_a_plugins_mistakes_are_named_with_their_path(with_counter: Plugins) -> None:
    doc = copy.deepcopy(DOC)
    doc["devices"][0]["start"] = "many"
    doc["profiles"][0]["groups"][0]["tags"][0]["name"] = "xn"
    doc["devices"][1]["type"] = "profinet"
    with pytest.raises(ConfigError) as caught:
        parse_config(doc, plugins=with_counter)
    paths = {p.path for p in caught.value.problems}
    assert paths == {"devices[0].start", "devices[1].type"}
    assert "'counter'" in str(caught.value)  # the expected types come from the plugins
    doc["devices"][0]["start"] = 1
    doc["devices"][1]["type"] = "modbus"
    with pytest.raises(ConfigError) as caught:
        parse_config(doc, plugins=with_counter)
    assert [str(p) for p in caught.value.problems] == [
        "profiles[0].groups[0].tags[0].name: counter tags never start with x",
        "profiles[0].groups[0].tags[0].name: counter tags never start with x (device devices[0])",
    ]


def test_without_the_plugin_its_devices_are_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(copy.deepcopy(DOC))
    assert {p.path for p in caught.value.problems} >= {"devices[0].type", "profiles[0].type"}


def test_a_broken_plugin_is_named() -> None:
    broken = EntryPoint("broken", "no_such_module:PLUGIN", "edge_gateway.connectors")
    with pytest.raises(PluginError, match=r"'broken'.*no_such_module"):
        _load(broken, "protocol")
    liar = EntryPoint("modbus2", "connectors.modbus.plugin:PLUGIN", "edge_gateway.connectors")
    with pytest.raises(PluginError, match="says its type is 'modbus'"):
        _load(liar, "protocol")
    plugin = installed().protocols["modbus"]
    with pytest.raises(PluginError, match="two protocol plugins of type 'modbus'"):
        Plugins([plugin, plugin])
