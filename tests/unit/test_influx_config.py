"""The influxdb section and measurements: valid shapes, and mistakes named by their field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from gateway.assembly import Gateway
from gateway.cli import main
from gateway.config import GatewayConfig, parse_config
from gateway.errors import ConfigError
from gateway.sinks.influx import InfluxSink
from gateway.sinks.influx_config import InfluxConfig

V2 = {"url": "http://127.0.0.1:8086", "org": "plant", "bucket": "telemetry", "token": "t0k3n"}
T = {"type": "influxdb"}
S = "sinks.tsdb"
V1 = {"api": "v1", "url": "http://127.0.0.1:8086", "database": "plant"}
TAGS = [{"name": "speed", "address": 0}]

BASE: dict[str, Any] = {
    "gateway": {"id": "gw1"},
    "sinks": {"tsdb": {"type": "influxdb", **V2}},
    "profiles": [
        {"id": "drive", "type": "modbus", "measurement": "drives", "groups": [{"tags": TAGS}]},
        {"id": "meter", "type": "modbus", "groups": [{"tags": TAGS}]},
    ],
    "devices": [
        {"id": "d1", "type": "modbus", "host": "h", "profile": "drive"},
        {"id": "d2", "type": "modbus", "host": "h", "profile": "drive", "measurement": "special"},
        {"id": "d3", "type": "modbus", "host": "h", "profile": "meter"},
        {"id": "d4", "type": "modbus", "host": "h", "groups": [{"tags": TAGS}]},
    ],
}


def with_influx(**section: Any) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    doc["sinks"]["tsdb"] = {"type": "influxdb", **section}
    return doc


def influx(config: GatewayConfig) -> InfluxConfig:
    sink = config.sinks["tsdb"]
    assert isinstance(sink, InfluxConfig)
    return sink


def test_v2_section_with_defaults() -> None:
    config = parse_config(copy.deepcopy(BASE))
    section = influx(config)
    assert (section.api, section.measurement, section.precision, section.gzip) == (
        "v2",
        "telemetry",
        "ms",
        False,
    )
    assert section.token is not None and section.token.get_secret_value() == "t0k3n"
    assert "t0k3n" not in repr(config)
    assert section.target == "InfluxDB http://127.0.0.1:8086 (bucket telemetry)"


def test_v1_section() -> None:
    config = parse_config(
        with_influx(**V1, retention_policy="week", username="gw", password="pw", gzip=True)
    )
    assert influx(config).target == "InfluxDB http://127.0.0.1:8086 (database plant.week)"


@pytest.mark.parametrize(
    ("section", "unsigned"),
    [
        (V2, True),
        ({**V2, "unsigned": False}, False),  # InfluxDB 1.8 through its v2 endpoint
        (V1, False),
        ({**V1, "unsigned": True}, True),
    ],
)
def test_ints_beyond_int64_are_unsigned_where_the_server_has_the_type(
    section: dict[str, Any], unsigned: bool
) -> None:
    config = parse_config(with_influx(**section))
    assert influx(config).writes_unsigned is unsigned


def test_measurement_comes_from_the_device_then_its_profile() -> None:
    config = parse_config(copy.deepcopy(BASE))
    assert [config.measurement_of(d) for d in config.devices] == ["drives", "special", None, None]


def test_the_gateway_builds_the_named_influx_sink_and_its_local_store(tmp_path: Path) -> None:
    doc = copy.deepcopy(BASE)
    doc["gateway"]["data_dir"] = str(tmp_path)
    gateway = Gateway(parse_config(doc))
    tsdb, local = gateway.sinks
    assert isinstance(tsdb, InfluxSink)
    assert (tsdb.name, local.name) == ("tsdb", "local")
    assert local is gateway.store


def test_check_config_lists_the_sink(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text(
        "gateway: {id: gw1}\n"
        "sinks: {tsdb: {type: influxdb, api: v1, url: 'http://db:8086', database: plant}}\n"
        "devices: [{id: d1, type: modbus, host: h, groups: [{tags: [{name: a, address: 0}]}]}]\n"
    )
    assert main(["check-config", str(path)]) == 0
    assert "sinks: tsdb (influxdb)" in capsys.readouterr().out


# (section or a change to BASE, expected path, a word of the message)
MISTAKES: list[tuple[dict[str, Any], str, str]] = [
    ({"sinks/tsdb": {**T, **V2, "url": "ftp://db:21"}}, S + ".url", "http://"),
    ({"sinks/tsdb": {**T, **V2, "url": "http://"}}, S + ".url", "http://"),
    (
        {"sinks/tsdb": {**T, **V2, "url": "http://db:8086/?db=x"}},
        S + ".url",
        "query",
    ),
    (
        {"sinks/tsdb": {**T, **V2, "url": "http://db:80860"}},
        S + ".url",
        "port",
    ),
    ({"sinks/tsdb": {**T, "org": "o", "bucket": "b"}}, S + ".url", "required"),
    ({"sinks/tsdb": {**T, **V2, "bucket": None}}, S, "needs 'bucket'"),
    (
        {"sinks/tsdb": {**T, "url": "http://db"}},
        S,
        "needs 'org' and 'bucket'",
    ),
    (
        {"sinks/tsdb": {**T, **V2, "database": "x"}},
        S,
        "'database': not used by api v2",
    ),
    (
        {"sinks/tsdb": {**T, **V1, "database": None}},
        S,
        "api v1 needs 'database'",
    ),
    (
        {"sinks/tsdb": {**T, **V1, "token": "t"}},
        S,
        "'token': not used by api v1",
    ),
    (
        {"sinks/tsdb": {**T, **V1, "password": "pw"}},
        S,
        "a password needs a username",
    ),
    ({"sinks/tsdb": {**T, **V2, "api": "v3"}}, S + ".api", "'v2' or 'v1'"),
    (
        {"sinks/tsdb": {**T, **V2, "bukcet": "b"}},
        S + ".bukcet",
        "Extra inputs",
    ),
    (
        {"sinks/tsdb": {**T, **V2, "precision": "min"}},
        S + ".precision",
        "'ms'",
    ),
    (
        {"sinks/tsdb": {**T, **V2, "timeout": 0}},
        S + ".timeout",
        "greater than 0",
    ),
    (
        {"sinks/tsdb": {**T, **V2, "measurement": ""}},
        S + ".measurement",
        "at least 1",
    ),
    (
        {"sinks/tsdb": {**T, **V2, "measurement": "#x"}},
        S + ".measurement",
        "comment",
    ),
    (
        {"sinks/tsdb": {**T, **V2, "measurement": "m" * 129}},
        S + ".measurement",
        "at most 128",
    ),
    ({"devices/0/measurement": "_internal"}, "devices[0].measurement", "reserved"),
    ({"profiles/0/measurement": "a\nb"}, "profiles[0].measurement", "control characters"),
]


def _apply(change: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    for where, value in change.items():
        parts: list[Any] = [int(p) if p.isdigit() else p for p in where.split("/")]
        target: Any = doc
        for part in parts[:-1]:
            target = target[part]
        target[parts[-1]] = value
        if isinstance(value, dict):
            target[parts[-1]] = {k: v for k, v in value.items() if v is not None}
    return doc


@pytest.mark.parametrize(
    ("change", "path", "word"), MISTAKES, ids=[f"{m[1]}:{m[2]}" for m in MISTAKES]
)
def test_mistakes_name_their_field(change: dict[str, Any], path: str, word: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(_apply(change))
    problems = [(p.path, p.message) for p in caught.value.problems]
    assert any(p == path and word in m for p, m in problems), problems


def test_a_rejected_token_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(with_influx(**{**V2, "token": 123456789}))
    assert caught.value.problems[0].path == S + ".token"
    assert "123456789" not in str(caught.value)
