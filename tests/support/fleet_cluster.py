"""A fleet on a broker cluster: N gateways on a 3-node NATS cluster (MQTT), the nodes they
are on killed one after the other, every reading counted per gateway, then a desired
configuration pushed to all of them.

Shared by ``tests/integration/test_fleet_cluster.py`` and ``python -m bench.fleet``.

- The gateways start spread over nodes 1 and 2 (``brokers`` in another order for each); the
  counting subscriber is on node 3, which is never killed.
- Node 1 is killed (SIGKILL), and started again once its gateways have moved on; then node 2.
  Every gateway loses the node it is on at least once.
- Counting as in tests/support/faults.py: **served** from the simulator's record, **accepted**
  from each gateway's /metrics, **delivered** distinct (device, ts) at the subscriber.
- **Failover**: each gateway logs "reachable again after X s" when its sink is connected again
  after a lost connection: the time without a broker.
"""

from __future__ import annotations

import contextlib
import json
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml

from tests.support.faults import (
    TAGS,
    Gateway,
    Lab,
    Metrics,
    _device,
    _profile,
    read_record,
)
from tests.support.gateway import ROOT, GatewayProcess
from tests.support.mqtt_watch import MqttWatch
from tests.support.nats import NatsCluster
from tests.support.processes import wait_until

__all__ = ["ClusterRun", "GatewayTally", "cluster_run"]

PREFIX = "fleet"
DEVICES_PER_GATEWAY = 2
_FAILOVER = re.compile(r"reachable again after ([0-9.]+) s")


@dataclass
class GatewayTally:
    gateway: str
    node: str
    """The node it started on."""
    served: int = 0
    accepted: int = 0
    delivered: int = 0
    duplicated: int = 0
    dropped: int = 0
    failovers: list[float] = field(default_factory=list)
    """Seconds without a broker, for each lost connection."""

    @property
    def lost(self) -> int:
        return self.accepted - self.delivered - self.dropped


@dataclass
class ClusterRun:
    gateways: list[GatewayTally]
    reports: dict[str, dict[str, Any] | None]
    """The configuration report of each gateway on the pushed document."""
    fleet_table: str
    """``gateway fleet`` output at the end."""
    fleet_json: list[dict[str, Any]]
    node_cpu: dict[str, float] = field(default_factory=dict)
    """CPU seconds of each broker node over the run (a killed node: since its restart)."""
    seconds: float = 0.0
    """From the gateways' start to the end of the counting."""
    messages: int = 0
    """Telemetry messages the subscriber received."""

    @property
    def failovers(self) -> list[float]:
        return [seconds for g in self.gateways for seconds in g.failovers]

    def table(self) -> str:
        lines = [
            "| gateway | started on | served | accepted | delivered | duplicated | dropped"
            " | lost | failovers (s) |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for g in self.gateways:
            numbers = (g.served, g.accepted, g.delivered, g.duplicated, g.dropped, g.lost)
            cells = " | ".join(f"{n:,}" for n in numbers)
            times = ", ".join(f"{s:.1f}" for s in g.failovers)
            lines.append(f"| {g.gateway} | {g.node} | {cells} | {times} |")
        if self.seconds:
            rate = self.messages / self.seconds
            cpu = ", ".join(f"{n} {100 * c / self.seconds:.1f} %" for n, c in self.node_cpu.items())
            lines.append(f"\ntelemetry: {rate:,.0f} messages/s; broker nodes' CPU: {cpu}")
        failovers = self.failovers
        if failovers:
            lines.append(
                f"\nfailover: {len(failovers)} lost connections, time without a broker "
                f"p50 {statistics.median(failovers):.1f} s, max {max(failovers):.1f} s"
            )
        return "\n".join(lines)


def _gateway_config(index: int, cluster: NatsCluster, devices: list[dict[str, Any]]) -> Any:
    first, second, third = cluster.addresses
    brokers = [first, second, third] if index % 2 == 0 else [second, first, third]
    return {
        "gateway": {"id": f"gw{index:02d}", "log_level": "INFO"},
        "runtime": {
            "reconnect_min": 0.1, "reconnect_max": 0.5, "retry_min": 0.05, "retry_max": 0.5,
            "status_interval": 1,
        },
        "sinks": {
            "mqtt": {
                "type": "mqtt", "brokers": brokers, "topic_prefix": PREFIX, "qos": 1,
                "reconnect_min": 0.1, "reconnect_max": 1.0, "keepalive": 5,
                "publish_timeout": 5,
            }
        },
        "fleet": {"enabled": True},
        "api": {"enabled": True},
        "profiles": [_profile()],
        "devices": devices,
    }  # fmt: skip


def _fleet(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "fleet", "--broker", address, "--prefix", PREFIX,
         *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


_EVENT = re.compile(
    r"(?:connected to MQTT broker (?P<up>\S+) \(sink mqtt\)"
    r"|MQTT broker (?P<back>\S+) \(sink mqtt\) reachable again"
    r"|lost the connection to MQTT broker (?P<lost>\S+) \(sink mqtt\))"
)


def _node_of(gateway: Gateway) -> str | None:
    """The broker node the gateway is connected to now (its log's last word on it)."""
    events = list(_EVENT.finditer(gateway.log()))
    if not events:
        return None
    last = events[-1]
    return last["up"] or last["back"]


def _all_moved(gateways: list[tuple[Gateway, int]]) -> Callable[[], bool]:
    """Whether each gateway logged a reconnection since its log mark."""
    return lambda: all(_FAILOVER.search(g.log()[since:]) for g, since in gateways)


def cluster_run(workdir: Path, gateways: int = 10) -> ClusterRun:
    with contextlib.closing(Lab(workdir)) as lab, contextlib.ExitStack() as stops:
        cluster = NatsCluster(workdir / "nats")
        stops.callback(cluster.stop)
        cluster.start()
        watcher_node = cluster.nodes[2]
        watch = MqttWatch(watcher_node.host, watcher_node.mqtt_port, f"{PREFIX}/+/+/telemetry")
        stops.callback(watch.stop)
        watch.start()
        sim, record = lab.simulator("sim", gateways * DEVICES_PER_GATEWAY)
        running: list[Gateway] = []
        units: dict[int, str] = {}
        started = time.monotonic()
        for index in range(gateways):
            devices = []
            for k in range(DEVICES_PER_GATEWAY):
                unit = index * DEVICES_PER_GATEWAY + k + 1
                units[unit] = f"plc-{unit}"
                devices.append(_device(units[unit], sim.ports[unit - 1], unit))
            process = GatewayProcess(
                workdir / f"gw{index:02d}", _gateway_config(index, cluster, devices)
            )
            stops.callback(process.stop)
            running.append(Gateway(process.start()))
        for gateway in running:
            gateway.process.wait_api(timeout=60)
            gateway.wait_online(DEVICES_PER_GATEWAY, timeout=60)
        _hold(3.0)  # normal running before the first kill
        # Nodes 1 and 2 in turn, each killed under the gateways connected to it (NATS may
        # also drop connections when a peer goes: gateways move more than once), until every
        # gateway has lost the node it was on; node 3 holds the counting subscriber.
        for node in [cluster.nodes[0], cluster.nodes[1]] * 2:
            if all(_FAILOVER.search(g.log()) for g in running):
                break
            on_node = [(g, len(g.log())) for g in running if _node_of(g) == node.address]
            node.process.kill()
            wait_until(
                _all_moved(on_node), 60, f"the gateways on {node.name} connected to another node"
            )
            node.process.start()
            cluster.wait_ready()
            _hold(2.0)  # normal running before the next kill
        document = yaml.safe_load(_desired_yaml())
        path = workdir / "desired.yaml"
        path.write_text(yaml.safe_dump(document))
        ids = [g.process.config_path.parent.name for g in running]
        pushed = _fleet(watcher_node.address, "--json", "--wait", "60", "push", *ids, str(path))
        reports = json.loads(pushed.stdout) if pushed.stdout else dict.fromkeys(ids)
        table = _fleet(watcher_node.address).stdout
        listed = json.loads(_fleet(watcher_node.address, "--json").stdout)
        sim.stop()
        tallies = []
        for index, gateway in enumerate(running):
            metrics: Metrics = gateway.settle("mqtt", timeout=120)
            tallies.append(
                GatewayTally(
                    f"gw{index:02d}",
                    "n1" if index % 2 == 0 else "n2",
                    accepted=int(metrics.value("gateway_device_readings_total")),
                    dropped=int(metrics.value("gateway_sink_dropped_readings_total", sink="mqtt")),
                    failovers=[float(s) for s in _FAILOVER.findall(gateway.log())],
                )
            )
        _count(watch, tallies, read_record(record, units))
        node_cpu = {
            node.name: sum(psutil.Process(node.process.pid).cpu_times()[:2])
            for node in cluster.nodes
        }
        return ClusterRun(
            tallies,
            reports,
            table,
            listed,
            node_cpu,
            time.monotonic() - started,
            len(watch.messages()),
        )


def _count(watch: MqttWatch, tallies: list[GatewayTally], served: list[Any]) -> None:
    """Served per gateway from the simulator's record; deliveries at the watcher, polled until
    every gateway's accepted readings are there (or 30 s)."""
    by_gateway = {t.gateway: t for t in tallies}
    owner = {
        f"plc-{index * DEVICES_PER_GATEWAY + k + 1}": f"gw{index:02d}"
        for index in range(len(tallies))
        for k in range(DEVICES_PER_GATEWAY)
    }
    for read in served:
        by_gateway[owner[read.device]].served += len(TAGS)

    def delivered() -> bool:
        seen: set[tuple[str, int]] = set()
        for tally in tallies:
            tally.delivered = tally.duplicated = 0
        for message in watch.messages():
            _, gateway, device, _ = message.topic.split("/")
            payload = message.json()
            tally = by_gateway[gateway]
            if (device, payload["ts"]) in seen:
                tally.duplicated += len(payload["values"])
                continue
            seen.add((device, payload["ts"]))
            tally.delivered += len(payload["values"])
        return all(t.delivered + t.dropped >= t.accepted for t in tallies)

    with contextlib.suppress(TimeoutError):
        wait_until(delivered, 30, "every accepted reading at the subscriber", interval=0.5)


def _hold(seconds: float) -> None:
    """A deliberate spell of normal running, not a wait for an effect."""
    time.sleep(seconds)


def _desired_yaml() -> str:
    """Version 1 for the whole fleet: one more profile, no device (nothing to reach)."""
    profile = {
        "id": "press",
        "type": "modbus",
        "groups": [{"name": "g", "interval": 1, "tags": [{"name": "t", "address": 1}]}],
    }
    return yaml.safe_dump({"version": 1, "profiles": [profile], "devices": []})
