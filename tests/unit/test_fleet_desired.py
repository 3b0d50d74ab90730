"""A desired configuration document: its checks, names of problems, secrets and fingerprint."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.config import device_adapter, profile_adapter
from gateway.errors import ConfigError
from gateway.fleet.desired import DesiredConfig, fingerprint, parse_desired
from gateway.plugins import installed

PLUGINS = installed()
DEVICES = device_adapter(PLUGINS)
PROFILES = profile_adapter(PLUGINS)


def _parse(document: Any) -> DesiredConfig:
    return parse_desired(orjson.dumps(document), PLUGINS, DEVICES, PROFILES)


def _problems(document: Any) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        _parse(document)
    return {p.path: p.message for p in caught.value.problems}


MODBUS = {"id": "m1", "type": "modbus", "host": "10.0.0.5", "profile": "p"}
OPCUA = {"id": "u1", "type": "opcua", "endpoint": "opc.tcp://10.0.0.6:4840", "profile": "p"}


def test_a_document_is_parsed_with_the_plugins_models() -> None:
    desired = _parse({"version": 3, "devices": [MODBUS]})
    assert desired.version == 3
    assert [d.id for d in desired.devices] == ["m1"]
    assert desired.profiles == []
    assert desired.fingerprint == fingerprint({"version": 3, "devices": [MODBUS]})


def test_the_document_shape_is_checked_first() -> None:
    assert _problems([]) == {"": "must be an object"}
    assert _problems({"devices": {}, "extra": 1}) == {
        "extra": "unknown key",
        "version": "required: a number or a text",
        "devices": "must be a list",
    }
    with pytest.raises(ConfigError, match="not JSON"):
        parse_desired(b"{not json", PLUGINS, DEVICES, PROFILES)


def test_every_bad_device_is_named_by_its_place() -> None:
    problems = _problems(
        {"version": 1, "devices": [MODBUS, {**MODBUS, "id": "m2", "port": 70000, "colour": 1}]}
    )
    assert set(problems) == {"devices[1].port", "devices[1].colour"}


def test_a_literal_secret_is_refused_and_a_reference_is_filled_locally(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    literal = {**OPCUA, "username": "op", "password": "hunter2"}
    problems = _problems({"version": 1, "devices": [literal]})
    assert list(problems) == ["devices[0].password"]
    assert "secrets never travel over MQTT" in problems["devices[0].password"]
    monkeypatch.setenv("LINE1_UA_PASSWORD", "from-the-gateway")
    referenced = {**OPCUA, "username": "op", "password": "${LINE1_UA_PASSWORD}"}
    device = _parse({"version": 1, "devices": [referenced]}).devices[0]
    assert device.password.get_secret_value() == "from-the-gateway"  # type: ignore[attr-defined]
    monkeypatch.delenv("LINE1_UA_PASSWORD")
    assert "devices[0].password" in _problems({"version": 1, "devices": [referenced]})
