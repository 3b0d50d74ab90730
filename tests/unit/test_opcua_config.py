"""OPC UA configuration: the example, every mistake with its field path, and browse's YAML."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from connectors.opcua.browse import Variable, render_table, render_yaml
from connectors.opcua.config import (
    OpcUaDeviceConfig,
    OpcUaEndpointConfig,
    OpcUaGroup,
    OpcUaProfile,
)
from gateway.config import GatewayConfig, load_config, parse_config
from gateway.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
NODE = "nsu=urn:plc;s=Line1.Speed"


def opcua_groups(config: GatewayConfig, device: OpcUaDeviceConfig) -> list[OpcUaGroup]:
    return [g for g in config.groups_of(device) if isinstance(g, OpcUaGroup)]


BASE: dict[str, Any] = {
    "gateway": {"id": "gw1"},
    "profiles": [
        {
            "id": "line",
            "type": "opcua",
            "groups": [
                {"name": "fast", "interval": 0.5, "tags": [{"name": "speed", "node": NODE}]}
            ],
        },
        {
            "id": "drive",
            "type": "modbus",
            "groups": [{"tags": [{"name": "speed", "address": 0}]}],
        },
    ],
    "devices": [
        {"id": "plc1", "type": "opcua", "endpoint": "opc.tcp://plc1:4840", "profile": "line"},
        {
            "id": "plc2",
            "type": "opcua",
            "endpoint": "opc.tcp://10.0.0.2:4840/server",
            "security": {"policy": "Basic256Sha256", "mode": "Sign"},
            "username": "gw",
            "password": "${GW_TEST_OPCUA_PASSWORD:-pw}",
            "groups": [
                {
                    "name": "slow",
                    "mode": "polling",
                    "interval": 5,
                    "namespace": "urn:plc",
                    "tags": [
                        {"name": "count", "path": "Plant/Line1/Count"},
                        {"name": "state", "node": "ns=2;i=1001"},
                    ],
                }
            ],
        },
        {"id": "drive1", "type": "modbus", "host": "127.0.0.1", "profile": "drive"},
    ],
}


def test_the_example_loads_with_both_modes_and_security() -> None:
    config = load_config(ROOT / "config" / "opcua-example.yaml")
    devices = [d for d in config.devices if isinstance(d, OpcUaDeviceConfig)]
    assert len(devices) == 2
    modes = {g.mode for d in devices for g in opcua_groups(config, d)}
    assert modes == {"subscription", "polling"}
    assert {d.security.policy for d in devices} == {"None", "Basic256Sha256"}


def test_base_is_valid_and_mixes_protocols() -> None:
    config = parse_config(copy.deepcopy(BASE))
    plc1, plc2, drive = config.devices
    assert isinstance(plc1, OpcUaDeviceConfig) and isinstance(plc2, OpcUaDeviceConfig)
    assert isinstance(config.profiles[0], OpcUaProfile)
    assert opcua_groups(config, plc1)[0].mode == "subscription"
    assert plc2.security.effective_mode == "Sign"
    assert plc2.password is not None and plc2.password.get_secret_value() == "pw"
    assert "pw" not in repr(plc2)
    assert drive.type == "modbus"


def _set(doc: dict[str, Any], path: str, value: Any) -> None:
    parts: list[str | int] = [int(p) if p.isdigit() else p for p in path.split("/")]
    target: Any = doc
    for part in parts[:-1]:
        target = target[part]
    if value is _DELETE:
        del target[parts[-1]]
    else:
        target[parts[-1]] = value


_DELETE = object()
G = "devices/1/groups/0"
P = "devices[1].groups[0]"

# (what to change, value, expected path, a word of the message)
MISTAKES = [
    ("devices/0/endpoint", "http://plc1", "devices[0].endpoint", "pattern"),
    ("devices/0/endpoint", _DELETE, "devices[0].endpoint", "Field required"),
    ("devices/0/timeout", 0, "devices[0].timeout", "greater than"),
    # The one device base: an OPC UA measurement is checked like a Modbus one.
    ("devices/0/measurement", "#x", "devices[0].measurement", "comment"),
    ("devices/0/busy_retries", 11, "devices[0].busy_retries", "less than or equal"),
    ("devices/0/unit", 1, "devices[0].unit", "Extra inputs"),
    ("devices/0/type", "opcuaa", "devices[0].type", "opcua"),
    ("devices/0/profile", "drive", "devices[0].profile", "modbus profile"),
    ("devices/2/profile", "line", "devices[2].profile", "opcua profile"),
    ("devices/0/groups", [], "devices[0]", "either 'profile' or 'groups'"),
    ("devices/1/username", _DELETE, "devices[1]", "both 'username' and 'password'"),
    ("devices/1/security/mode", "None", "devices[1].security", "Sign or SignAndEncrypt"),
    ("devices/1/security/policy", "Basic128", "devices[1].security.policy", "Basic256Sha256"),
    ("devices/1/security/certificate", "c.der", "devices[1].security", "private_key"),
    ("devices/1/max_nodes_per_read", 0, "devices[1].max_nodes_per_read", "greater than"),
    (f"{G}/mode", "push", f"{P}.mode", "subscription"),
    (f"{G}/filter", {"absolute": 1}, P, "only for mode subscription"),
    (f"{G}/queue_size", 5, P, "only for mode subscription"),
    (f"{G}/start_node", "Objects", f"{P}.start_node", "expected a node id"),
    (f"{G}/namespace", _DELETE, f"{P}.tags[0].path", "namespace"),
    (f"{G}/tags/1/node", "ns=2;q=1", f"{P}.tags[1].node", "expected a node id"),
    (f"{G}/tags/1/node", "ns=2;i=x", f"{P}.tags[1].node", "numeric identifier"),
    (f"{G}/tags/0/path", "Plant//Count", f"{P}.tags[0].path", "empty browse name"),
    (f"{G}/tags/1/path", "Plant/State", f"{P}.tags[1]", "either 'node'"),
    (f"{G}/tags/1/name", "count", f"{P}.tags[1].name", "duplicate tag name"),
    (
        "profiles/0/groups/0/filter",
        {"absolute": 1, "percent": 5},
        "profiles[0].groups[0].filter",
        "at most one",
    ),
    (
        "profiles/0/groups/0/filter",
        {"trigger": "value"},
        "profiles[0].groups[0].filter.trigger",
        "status_value",
    ),
    (
        "profiles/0/groups/0/sampling_interval",
        -1,
        "profiles[0].groups[0].sampling_interval",
        "greater than",
    ),
    ("profiles/0/type", "opc", "profiles[0].type", "opcua"),
]


@pytest.mark.parametrize(
    ("where", "value", "path", "word"), MISTAKES, ids=[m[2] + ":" + m[3] for m in MISTAKES]
)
def test_mistakes_name_their_field(where: str, value: Any, path: str, word: str) -> None:
    doc = copy.deepcopy(BASE)
    _set(doc, where, value)
    with pytest.raises(ConfigError) as caught:
        parse_config(doc)
    problems = [(p.path, p.message) for p in caught.value.problems]
    assert any(p == path and word in m for p, m in problems), problems


def test_a_rejected_password_is_not_echoed() -> None:
    doc = copy.deepcopy(BASE)
    _set(doc, "devices/1/password", "hunter2")
    _set(doc, "devices/1/username", _DELETE)
    with pytest.raises(ConfigError) as caught:
        parse_config(doc)
    assert "hunter2" not in str(caught.value)


VARIABLES = [
    Variable("nsu=urn:plc;s=Line1.Speed", ("Line1", "Speed"), "Double", "r", False),
    Variable("nsu=urn:plc;s=Line1.Setpoint", ("Line1", "Setpoint"), "Double", "rw", False),
    Variable("nsu=urn:plc;s=Line1.Levels", ("Line1", "Levels"), "Double", "r", True),
    Variable("nsu=urn:plc;s=Line1.Secret", ("Line1", "Secret"), "String", "w", False),
    Variable("nsu=urn:plc;s=A/B", ("A/B#1",), "Int32", "r", False),
    Variable("nsu=urn:plc;s=A_B", ("A_B#1",), "Int32", "r", False),
]


def test_browse_yaml_is_a_valid_config_block() -> None:
    settings = OpcUaEndpointConfig.model_validate(
        {
            "endpoint": "opc.tcp://plc:4840",
            "username": "gw",
            "password": "pw",
            "security": {"policy": "Basic256Sha256", "trust_on_first_use": True},
        }
    )
    block = yaml.safe_load(render_yaml(VARIABLES, settings, "line"))
    assert block["devices"][0]["password"] == "${OPCUA_PASSWORD}"
    block["devices"][0]["password"] = "pw"
    config = parse_config({"gateway": {"id": "gw"}, **block})
    [device] = config.devices
    assert isinstance(device, OpcUaDeviceConfig)
    assert device.security.policy == "Basic256Sha256"
    assert device.security.trust_on_first_use
    tags = {t.name: t for g in opcua_groups(config, device) for t in g.tags}
    # unreadable variables are left out; names are browse paths made valid and unique
    assert list(tags) == ["Line1.Speed", "Line1.Setpoint", "Line1.Levels", "A_B_1", "A_B_1_2"]
    assert tags["Line1.Setpoint"].writable and not tags["Line1.Speed"].writable
    assert tags["A_B_1"].node == "nsu=urn:plc;s=A/B"


def test_browse_yaml_leaves_the_password_to_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = OpcUaEndpointConfig.model_validate(
        {"endpoint": "opc.tcp://plc:4840", "username": "gw", "password": "s3cret"}
    )
    text = render_yaml(VARIABLES[:1], settings, "line")
    assert "s3cret" not in text
    monkeypatch.setenv("OPCUA_PASSWORD", "s3cret")
    config = parse_config({"gateway": {"id": "gw"}, **yaml.safe_load(text)})
    [device] = config.devices
    assert isinstance(device, OpcUaDeviceConfig)
    assert device.password is not None and device.password.get_secret_value() == "s3cret"


def test_browse_table_has_a_line_per_variable() -> None:
    lines = render_table(VARIABLES).splitlines()
    assert lines[0].split() == ["NODE", "ID", "BROWSE", "PATH", "DATA", "TYPE", "ACCESS"]
    assert lines[3].split() == ["nsu=urn:plc;s=Line1.Levels", "Line1/Levels", "Double[]", "r"]
    assert len(lines) == 1 + len(VARIABLES)
