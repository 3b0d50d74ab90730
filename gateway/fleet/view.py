"""``gateway fleet``: every gateway seen on a broker, and pushing a desired configuration.

Reads only what the gateways keep retained on the broker (their status, their devices'
status and their configuration report): no gateway is asked anything, an offline one is
listed from what it last said.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml
from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from gateway.fleet.desired import fingerprint
from gateway.sinks.mqtt_payload import desired_config_topic

__all__ = [
    "GatewaySeen",
    "fleet_view",
    "load_desired",
    "print_fleet",
    "print_pushed",
    "push_desired",
]

_QUIET = 2.0
"""Seconds without a new retained message, after the subscriptions are acknowledged, after
which the broker has sent them all: a NATS cluster sends them ~1.0-1.4 s after its SUBACK
(measured), Mosquitto at once."""


@dataclass
class GatewaySeen:
    gateway: str
    state: str = "unknown"
    since_ms: int | None = None
    devices: dict[str, str] = field(default_factory=dict)
    """Device → its state (online, degraded, offline...)."""
    config: dict[str, Any] | None = None
    """The last configuration report."""

    def summary(self) -> dict[str, Any]:
        states: dict[str, int] = {}
        for state in self.devices.values():
            states[state] = states.get(state, 0) + 1
        report = self.config or {}
        return {
            "gateway": self.gateway,
            "state": self.state,
            "since": self.since_ms,
            "devices": len(self.devices),
            "devices_by_state": states,
            "config_version": report.get("version"),
            "config_state": report.get("state", "unmanaged"),
            "config_errors": report.get("errors", []),
        }


def _client(broker: tuple[str, int], username: str | None, password: str | None) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    if username is not None:
        client.username_pw_set(username, password)
    try:
        client.connect(*broker)
    except OSError as exc:
        where = f"{broker[0]}:{broker[1]}"
        raise ConnectionError(f"cannot connect to MQTT broker {where}: {exc}") from None
    return client


def fleet_view(
    broker: tuple[str, int],
    prefix: str,
    wait: float = 5.0,
    username: str | None = None,
    password: str | None = None,
) -> list[GatewaySeen]:
    """What the broker holds retained for every gateway under ``prefix``."""
    client = _client(broker, username, password)
    seen: dict[str, GatewaySeen] = {}
    last = [time.monotonic()]
    subscribed = [False]
    refused: list[str] = []

    def on_connect(
        client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, properties: Any
    ) -> None:
        if reason.is_failure:
            refused.append(str(reason))
            return
        client.subscribe(
            [
                (f"{prefix}/+/status", 1),
                (f"{prefix}/+/+/status", 1),
                (f"{prefix}/+/config/reported", 1),
            ]
        )

    def on_subscribe(
        client: mqtt.Client, userdata: Any, mid: int, reasons: Any, properties: Any
    ) -> None:
        last[0] = time.monotonic()
        subscribed[0] = True

    def on_message(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        last[0] = time.monotonic()
        levels = message.topic[len(prefix) + 1 :].split("/")
        if not message.payload:
            return  # cleared
        try:
            payload = orjson.loads(message.payload)
        except orjson.JSONDecodeError:
            return
        if not isinstance(payload, dict):
            return
        gateway = seen.setdefault(levels[0], GatewaySeen(levels[0]))
        if levels[1:] == ["status"]:
            gateway.state = str(payload.get("state", "unknown"))
            gateway.since_ms = payload.get("ts")
        elif levels[1:] == ["config", "reported"]:
            gateway.config = payload
        elif len(levels) == 3 and levels[2] == "status":
            gateway.devices[levels[1]] = str(payload.get("state", "unknown"))

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and not refused:
        client.loop(0.1)
        if subscribed[0] and time.monotonic() - last[0] > _QUIET:
            break
    client.disconnect()
    if refused:
        raise ConnectionError(f"the broker refused the connection: {refused[0]}")
    return sorted(seen.values(), key=lambda g: g.gateway)


def print_fleet(gateways: list[GatewaySeen], as_json: bool) -> None:
    rows = [g.summary() for g in gateways]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    header = ("GATEWAY", "STATE", "DEVICES", "ONLINE", "CONFIG", "SYNC", "ERRORS")
    lines = [header]
    for row in rows:
        by_state = row["devices_by_state"]
        lines.append(
            (
                row["gateway"],
                row["state"],
                str(row["devices"]),
                str(by_state.get("online", 0)),
                "-" if row["config_version"] is None else str(row["config_version"]),
                row["config_state"],
                str(len(row["config_errors"])),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))
    managed = [r for r in rows if r["config_state"] != "unmanaged"]
    in_sync = sum(1 for r in managed if r["config_state"] == "in_sync")
    online = sum(1 for r in rows if r["state"] == "online")
    print(f"{len(rows)} gateway(s), {online} online; {in_sync} of {len(managed)} managed in sync")


def load_desired(path: Path) -> dict[str, Any]:
    """A desired configuration file (YAML or JSON): ``version``, ``profiles``, ``devices``."""
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(document, dict):
        raise ValueError(f"{path}: must be a mapping with version, profiles and devices")
    return document


def push_desired(
    broker: tuple[str, int],
    prefix: str,
    gateways: list[str],
    document: dict[str, Any],
    wait: float,
    username: str | None = None,
    password: str | None = None,
) -> dict[str, dict[str, Any] | None]:
    """Publish ``document`` (retained) to each gateway's desired topic and wait up to ``wait``
    seconds for each to report on it: gateway → its report on this document (None: none)."""
    payload = orjson.dumps(document)
    wanted = fingerprint(document)
    client = _client(broker, username, password)
    reports: dict[str, dict[str, Any] | None] = dict.fromkeys(gateways)

    def on_message(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        gateway = message.topic[len(prefix) + 1 :].split("/")[0]
        try:
            report = orjson.loads(message.payload)
        except orjson.JSONDecodeError:
            return
        if gateway in reports and isinstance(report, dict) and report.get("fingerprint") == wanted:
            reports[gateway] = report

    client.on_message = on_message
    client.subscribe([(f"{prefix}/{g}/config/reported", 1) for g in gateways])
    for gateway in gateways:
        client.publish(desired_config_topic(prefix, gateway), payload, qos=1, retain=True)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and any(r is None for r in reports.values()):
        client.loop(0.1)
    client.disconnect()
    return reports


def print_pushed(reports: dict[str, dict[str, Any] | None], as_json: bool) -> int:
    """Print the reports; 0 when every gateway is in sync."""
    if as_json:
        print(json.dumps(reports, indent=2))
    for gateway, report in reports.items():
        if as_json:
            break
        if report is None:
            print(f"{gateway}: no report yet (offline, or fleet.enabled is off)", file=sys.stderr)
        elif report.get("state") == "in_sync":
            print(f"{gateway}: in_sync (version {report.get('version')})")
        else:
            print(f"{gateway}: {report.get('state')}")
            for error in report.get("errors", []):
                where = f"{error['path']}: " if error.get("path") else ""
                print(f"  {where}{error.get('message')}")
    ok = all(r is not None and r.get("state") == "in_sync" for r in reports.values())
    return 0 if ok else 1
