"""Configuration: examples load, and every kind of mistake is reported with its field path."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import load_config, parse_config
from gateway.errors import ConfigError
from gateway.sinks.mqtt_config import MqttConfig

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "config").glob("*.yaml"))

BASE: dict[str, Any] = {
    "gateway": {"id": "gw1"},
    "sinks": {"plant": {"type": "mqtt", "host": "127.0.0.1", "port": 1883}},
    "profiles": [
        {
            "id": "drive",
            "type": "modbus",
            "groups": [{"name": "fast", "interval": 1, "tags": [{"name": "speed", "address": 0}]}],
        }
    ],
    "devices": [
        {"id": "d1", "type": "modbus", "host": "127.0.0.1", "profile": "drive"},
        {
            "id": "d2",
            "type": "modbus",
            "host": "127.0.0.1",
            "groups": [
                {
                    "tags": [
                        {"name": "a", "address": 0},
                        {"name": "b", "address": 1, "data_type": "float32"},
                    ]
                }
            ],
        },
    ],
}


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_loads(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # As docker/make-env.sh makes them: the compose config requires its tokens.
    monkeypatch.setenv("GATEWAY_ADMIN_TOKEN", "0123456789abcdef0123456789abcdef")
    monkeypatch.setenv("GATEWAY_OPERATOR_TOKEN", "00112233445566778899aabbccddeeff")
    monkeypatch.setenv("GATEWAY_VIEWER_TOKEN", "fedcba9876543210fedcba9876543210")
    config = load_config(path)
    assert config.devices
    for device in config.devices:
        assert config.groups_of(device)


def test_base_is_valid_and_profiles_resolve() -> None:
    config = parse_config(copy.deepcopy(BASE))
    assert [t.name for g in config.groups_of(config.devices[0]) for t in g.tags] == ["speed"]
    assert config.devices[1].groups is not None
    assert config.devices[1].groups[0].name == "default"


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

# (what to change, value, expected path, a word of the message)
MISTAKES = [
    (
        "devices/1/groups/0/tags/1/data_type",
        "float33",
        "devices[1].groups[0].tags[1].data_type",
        "float32",
    ),
    (
        "devices/1/groups/0/tags/1/byte_order",
        "ABDC",
        "devices[1].groups[0].tags[1].byte_order",
        "CDAB",
    ),
    ("devices/1/groups/0/tags/1/adress", 3, "devices[1].groups[0].tags[1].adress", "Extra inputs"),
    ("devices/0/unit", 256, "devices[0].unit", "255"),
    ("devices/0/port", 0, "devices[0].port", "greater than"),
    ("devices/0/profile", "dirve", "devices[0].profile", "unknown profile 'dirve'"),
    ("devices/1/id", "d1", "devices[1].id", "duplicate device id"),
    ("devices/1/id", "has space", "devices[1].id", "pattern"),
    ("devices/0/host", _DELETE, "devices[0]", "needs 'host'"),
    ("devices/0/groups", [], "devices[0]", "either 'profile' or 'groups'"),
    ("devices/0/type", "profinet", "devices[0].type", "modbus"),
    ("profiles/0/groups/0/interval", 0, "profiles[0].groups[0].interval", "greater than"),
    ("profiles/0/groups/0/tags", [], "profiles[0].groups[0].tags", "at least 1"),
    ("devices/1/groups/0/tags/1/name", "a", "devices[1].groups[0].tags[1].name", "duplicate tag"),
    ("devices/1/groups/0/tags/1/name", "a/b", "devices[1].groups[0].tags[1].name", "pattern"),
    ("devices/1/groups/0/tags/0/data_type", "bool", "devices[1].groups[0].tags[0]", "needs 'bit'"),
    ("devices/1/groups/0/tags/0/table", "coil", "devices[1].groups[0].tags[0]", "data_type bool"),
    ("devices/1/groups/0/tags/0/data_type", "string", "devices[1].groups[0].tags[0]", "length"),
    ("devices/1/groups/0/tags/0/address", 65536, "devices[1].groups[0].tags[0].address", "65535"),
    ("devices/1/address_base", 1, "devices[1].groups[0].tags[0].address", "address_base"),
    ("devices/1/max_registers_per_read", 1, "devices[1].groups[0].tags[1].length", "do not fit"),
    ("devices/1/max_registers_per_read", 126, "devices[1].max_registers_per_read", "125"),
    (
        "devices/1/groups/0/tags/1/deadband",
        {"absolute": 1, "percent": 2},
        "devices[1].groups[0].tags[1].deadband",
        "exactly one",
    ),
    ("sinks/plant/qos", 3, "sinks.plant.qos", "0, 1 or 2"),
    ("sinks/plant/topic_prefix", "a/#", "sinks.plant.topic_prefix", "wildcards"),
    ("sinks/plant/tls", {"cert_file": "c.pem"}, "sinks.plant.tls.key_file", "both or neither"),
    ("sinks/plant/type", "kafka", "sinks.plant.type", "'mqtt'"),
    ("sinks/Bad name", {"type": "mqtt"}, "sinks.Bad name", "pattern"),
    ("sinks/spb", {"type": "sparkplug", "group_id": "a/b"}, "sinks.spb.group_id", "pattern"),
    ("sinks/spb", {"type": "sparkplug", "edge_node_id": "n+"}, "sinks.spb.edge_node_id", "pattern"),
    ("sinks/spb", {"type": "sparkplug", "primary_host_id": ""}, "sinks.spb.primary_host_id", "1"),
    ("sinks/spb", {"type": "sparkplug", "group": "x"}, "sinks.spb.group", "not permitted"),
    ("sinks/spb", {"type": "sparkplug", "qos": 1}, "sinks.spb.qos", "not permitted"),
    ("devices/0/type", "profinet", "devices[0].type", "'modbus'"),
    ("gateway/id", "", "gateway.id", "at least 1"),
    ("runtime", {"buffer_max_mb": 0.01}, "runtime.buffer_max_mb", "0.1"),
    ("runtime", {"retry_max": float("inf")}, "runtime.retry_max", "finite"),
    (
        "devices/1/groups/0/tags/0/scale",
        float("nan"),
        "devices[1].groups[0].tags[0].scale",
        "finite",
    ),
    (
        "devices/1/groups/0/tags/0/offset",
        float("-inf"),
        "devices[1].groups[0].tags[0].offset",
        "finite",
    ),
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


def test_profile_tags_that_do_not_fit_a_device_name_both() -> None:
    doc = copy.deepcopy(BASE)
    doc["devices"][0]["address_base"] = 1
    with pytest.raises(ConfigError) as caught:
        parse_config(doc)
    [problem] = caught.value.problems
    assert problem.path == "profiles[0].groups[0].tags[0].address"
    assert "devices[0]" in problem.message


def test_all_problems_are_reported_at_once() -> None:
    doc = copy.deepcopy(BASE)
    doc["devices"][0]["unit"] = 999
    doc["devices"][1]["groups"][0]["tags"][0]["data_type"] = "nope"
    doc["extra"] = True
    with pytest.raises(ConfigError) as caught:
        parse_config(doc)
    assert {p.path for p in caught.value.problems} == {
        "devices[0].unit",
        "devices[1].groups[0].tags[0].data_type",
        "extra",
    }


def test_secrets_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    doc = copy.deepcopy(BASE)
    doc["sinks"]["plant"]["username"] = "gw"
    doc["sinks"]["plant"]["password"] = "${GW_TEST_PASSWORD}"
    doc["sinks"]["plant"]["port"] = "${GW_TEST_PORT:-1884}"
    monkeypatch.setenv("GW_TEST_PASSWORD", "s3cret")
    config = parse_config(doc)
    mqtt = config.sinks["plant"]
    assert isinstance(mqtt, MqttConfig)
    assert mqtt.password is not None
    assert mqtt.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(config)
    assert mqtt.port == 1884


def test_a_rejected_secret_is_not_echoed() -> None:
    doc = copy.deepcopy(BASE)
    doc["sinks"]["plant"]["password"] = "hunter2"  # no username: rejected
    with pytest.raises(ConfigError) as caught:
        parse_config(doc)
    assert caught.value.problems[0].path == "sinks.plant.password"
    assert "hunter2" not in str(caught.value)


def test_a_missing_environment_variable_names_field_and_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GW_TEST_UNSET", raising=False)
    doc = copy.deepcopy(BASE)
    doc["sinks"]["plant"]["password"] = "${GW_TEST_UNSET}"
    with pytest.raises(ConfigError) as caught:
        parse_config(doc)
    assert [str(p) for p in caught.value.problems] == [
        "sinks.plant.password: environment variable GW_TEST_UNSET is not set"
    ]


def test_bad_yaml_gives_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("gateway:\n  id: gw1\n devices: [\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems[0].path.startswith("line ")
    assert str(path) in str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")


def test_top_level_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError, match="mapping"):
        parse_config(yaml.safe_load("- a\n- b\n"))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"gateway: {id: gw\xe91}\n", "not UTF-8 text: byte 0xe9 at offset 16"),
        (
            b"gateway: {id: gw1}\ngateway: {id: gw2}\n",
            "line 2, column 1: not valid YAML: duplicate key 'gateway'",
        ),
        (b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n", "not valid YAML: nested too deeply"),
    ],
    ids=["latin-1", "duplicate key", "deep"],
)
def test_a_malformed_file_is_a_clear_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [str(p) for p in caught.value.problems] == [message]


def test_a_key_may_override_a_merged_one(tmp_path: Path) -> None:
    path = tmp_path / "merge.yaml"
    path.write_text(
        "gateway: {id: gw1}\n"
        "devices:\n"
        "  - &drive {id: d1, type: modbus, host: 10.0.0.1,\n"
        "            groups: [{tags: [{name: a, address: 0}]}]}\n"
        "  - {<<: *drive, id: d2, host: 10.0.0.2}\n"
    )
    devices = load_config(path).devices
    assert [(d.id, d.model_dump()["host"]) for d in devices] == [
        ("d1", "10.0.0.1"),
        ("d2", "10.0.0.2"),
    ]
