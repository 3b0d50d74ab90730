"""Which MQTT broker cluster for a fleet: a 3-node NATS cluster and a 3-node RabbitMQ cluster
(MQTT plugin), both from Debian packages on loopback ports, measured the same way.

For each: seconds from start to a QoS 1 message crossing nodes, RSS per node when idle,
whether a retained message published on node 1 reaches a new subscriber on node 3 (the fleet
view and desired configurations are retained), and QoS 1 throughput from a publisher on node
1 to a subscriber on node 3 (messages of 50 values, as a gateway sends) with the nodes' CPU.

    python -m bench.brokers [--messages 5000]
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Protocol

import orjson
import psutil
from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.nats import NatsCluster, mqtt_round_trip
from tests.support.processes import wait_until
from tests.support.rabbitmq import RabbitCluster


class _Node(Protocol):
    name: str
    host: str
    mqtt_port: int
    process: Any


def _tree(node: _Node) -> list[psutil.Process]:
    """The node's process and its children (RabbitMQ's script starts the Erlang VM)."""
    process = psutil.Process(node.process.pid)
    return [process, *process.children(recursive=True)]


def _cpu(node: _Node) -> float:
    return sum(sum(p.cpu_times()[:2]) for p in _tree(node))


def _rss_mib(node: _Node) -> float:
    return float(sum(p.memory_info().rss for p in _tree(node))) / 2**20


def _client(node: _Node) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.connect(node.host, node.mqtt_port)
    client.loop_start()
    return client


def _retained_crosses(first: _Node, last: _Node) -> str:
    topic = f"probe/retained/{time.monotonic_ns()}"
    publisher = _client(first)
    publisher.publish(topic, b"kept", qos=1, retain=True).wait_for_publish(10)
    publisher.loop_stop()
    publisher.disconnect()
    got = threading.Event()
    subscriber = mqtt.Client(CallbackAPIVersion.VERSION2)
    subscriber.on_message = lambda *_: got.set()
    subscriber.connect(last.host, last.mqtt_port)
    subscriber.loop_start()
    started = time.monotonic()
    subscriber.subscribe(topic, qos=1)
    seen = got.wait(10)
    subscriber.loop_stop()
    subscriber.disconnect()
    return f"yes, after {time.monotonic() - started:.1f} s" if seen else "no (10 s)"


def _throughput(first: _Node, last: _Node, nodes: list[_Node], messages: int) -> str:
    payload = orjson.dumps({"ts": 0, "values": {f"r{i}": 1000 + i for i in range(50)}})
    received = 0
    done = threading.Event()

    def on_message(*_: Any) -> None:
        nonlocal received
        received += 1
        if received == messages:
            done.set()

    subscriber = mqtt.Client(CallbackAPIVersion.VERSION2)
    subscriber.on_message = on_message
    subscribed = threading.Event()
    subscriber.on_subscribe = lambda *_: subscribed.set()
    subscriber.connect(last.host, last.mqtt_port)
    subscriber.loop_start()
    subscriber.subscribe("probe/load", qos=1)
    subscribed.wait(10)
    publisher = _client(first)
    cpu = [_cpu(node) for node in nodes]
    started = time.monotonic()
    for _ in range(messages):
        publisher.publish("probe/load", payload, qos=1)
    done.wait(120)
    elapsed = time.monotonic() - started
    used = [_cpu(node) - c for node, c in zip(nodes, cpu, strict=True)]
    for client in (publisher, subscriber):
        client.loop_stop()
        client.disconnect()
    per_node = ", ".join(
        f"{n.name} {100 * u / elapsed:.0f} %" for n, u in zip(nodes, used, strict=True)
    )
    return (
        f"{received:,}/{messages:,} in {elapsed:.1f} s = {received / elapsed:,.0f} msg/s; "
        f"CPU {per_node}; {1000 * sum(used) / max(received, 1):.2f} ms CPU per message"
    )


def measure(kind: str, workdir: Path, messages: int) -> dict[str, str]:
    cluster: Any = NatsCluster(workdir) if kind == "nats" else RabbitCluster(workdir)
    with contextlib.ExitStack() as stops:
        stops.callback(cluster.stop)
        started = time.monotonic()
        if kind == "nats":
            for node in cluster.nodes:
                node.process.start()
        else:
            cluster.start()
        first, last = cluster.nodes[0], cluster.nodes[-1]
        wait_until(
            lambda: mqtt_round_trip((first.host, first.mqtt_port), (last.host, last.mqtt_port)),
            180,
            "a QoS 1 message across nodes",
            interval=1.0,
        )
        ready = time.monotonic() - started
        rss = ", ".join(f"{n.name} {_rss_mib(n):.0f} MiB" for n in cluster.nodes)
        return {
            "broker": kind,
            "ready": f"{ready:.1f} s",
            "rss": rss,
            "retained across nodes": _retained_crosses(first, last),
            "QoS 1 node 1 → node 3": _throughput(first, last, cluster.nodes, messages),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    args = parser.parse_args(argv)
    for kind in ("nats", "rabbitmq"):
        with tempfile.TemporaryDirectory(prefix=f"bench-{kind}-") as workdir:
            result = measure(kind, Path(workdir), args.messages)
        for key, value in result.items():
            print(f"{key}: {value}")
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
