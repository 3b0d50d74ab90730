"""A 3-node NATS server cluster with MQTT (JetStream) on loopback ports, stopped by PID.

See shared/services.md: MQTT 3.1.1, QoS 0/1, retained messages and wills; JetStream's cluster
takes ~10-15 s after start before QoS 1 works, so ``start()`` waits for a probe round trip
through two different nodes, not for the ports.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest
from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.processes import ManagedProcess, free_port, wait_until

__all__ = ["NatsCluster", "mqtt_round_trip", "nats_binary"]


def nats_binary() -> str:
    binary = shutil.which("nats-server") or shutil.which("nats-server", path="/usr/sbin:/usr/bin")
    if binary is None:
        pytest.skip("nats-server is not installed (apt-get install nats-server)")
    return binary


class NatsNode:
    def __init__(self, workdir: Path, name: str, routes: list[int], index: int) -> None:
        self.name = name
        self.host = "127.0.0.1"
        self.client_port = free_port()
        self.mqtt_port = free_port()
        self.route_port = routes[index]
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / f"{name}.conf"
        route_urls = ", ".join(f"nats-route://127.0.0.1:{port}" for port in routes)
        self.config_path.write_text(
            f"server_name: {name}\n"
            f"listen: 127.0.0.1:{self.client_port}\n"
            f"jetstream {{ store_dir: {workdir / ('js-' + name)} }}\n"
            f"cluster {{ name: gw-cluster, listen: 127.0.0.1:{self.route_port},"
            f" routes: [{route_urls}] }}\n"
            f"mqtt {{ listen: 127.0.0.1:{self.mqtt_port} }}\n"
        )
        self.process = ManagedProcess(
            [nats_binary(), "-c", str(self.config_path)], workdir, name=name, merge_stderr=True
        )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.mqtt_port}"


class NatsCluster:
    def __init__(self, workdir: Path, nodes: int = 3) -> None:
        routes = [free_port() for _ in range(nodes)]
        self.nodes = [NatsNode(workdir, f"n{i + 1}", routes, i) for i in range(nodes)]

    @property
    def addresses(self) -> list[str]:
        return [node.address for node in self.nodes]

    def start(self, timeout: float = 90.0) -> NatsCluster:
        for node in self.nodes:
            node.process.start()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 90.0) -> None:
        """A QoS 1 message published on one node reaches a subscriber on another."""
        live = [node for node in self.nodes if node.process.running]
        first, second = live[0], live[-1]
        wait_until(
            lambda: mqtt_round_trip((first.host, first.mqtt_port), (second.host, second.mqtt_port)),
            timeout,
            "a QoS 1 round trip",
            interval=1.0,
        )

    def stop(self) -> None:
        for node in self.nodes:
            node.process.stop()


def mqtt_round_trip(publisher: tuple[str, int], subscriber: tuple[str, int]) -> bool:
    """Whether a QoS 1 message published at one broker reaches a subscriber at the other."""
    topic = f"probe/{time.monotonic_ns()}"
    got = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2)
    pub = mqtt.Client(CallbackAPIVersion.VERSION2)
    subscribed = threading.Event()
    sub.on_message = lambda *_: got.set()
    sub.on_subscribe = lambda *_: subscribed.set()
    try:
        sub.connect(*subscriber)
        sub.loop_start()
        sub.subscribe(topic, qos=1)
        if not subscribed.wait(3):
            return False
        pub.connect(*publisher)
        pub.loop_start()
        pub.publish(topic, b"x", qos=1)
        return got.wait(3)
    except OSError:
        return False
    finally:
        for client in (pub, sub):
            client.loop_stop()
            client.disconnect()
