"""A 3-node RabbitMQ cluster with its MQTT plugin on loopback ports, stopped by PID.

Each node is ``rabbitmq-server`` (Debian's, run directly as this user, not through the service
wrapper) with its own ports, directories and node name; the cluster has its own ``epmd`` on a
free port, so nothing on the machine is shared. Nodes 2 and 3 join node 1.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from tests.support.processes import ManagedProcess, free_port, wait_until

__all__ = ["RabbitCluster", "RabbitNode"]

_BIN = Path("/usr/lib/rabbitmq/bin")


def _rabbit(tool: str) -> str:
    path = _BIN / tool
    if not path.exists():
        pytest.skip("rabbitmq-server is not installed (apt-get install rabbitmq-server)")
    return str(path)


class RabbitNode:
    def __init__(self, workdir: Path, name: str, env: dict[str, str]) -> None:
        self.name = name
        self.node = f"{name}@{socket.gethostname().split('.')[0]}"
        self.host = "127.0.0.1"
        self.mqtt_port = free_port()
        self.amqp_port = free_port()
        home = workdir / name
        home.mkdir(parents=True, exist_ok=True)
        (home / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}\n"
            f"mqtt.listeners.tcp.default = 127.0.0.1:{self.mqtt_port}\n"
            "mqtt.allow_anonymous = true\n"
            "loopback_users = none\n"
        )
        (home / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
        self.env = {
            **env,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_CONFIG_FILE": str(home / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(home / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(home / "mnesia"),
            "RABBITMQ_LOG_BASE": str(home / "log"),
        }
        self.process = ManagedProcess(
            [_rabbit("rabbitmq-server")], home, name=name, env=self.env, merge_stderr=True
        )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.mqtt_port}"

    def answers(self) -> bool:
        try:
            self.ctl("ping", timeout=30)
        except RuntimeError:
            return False
        return True

    def ctl(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run(
            [_rabbit("rabbitmqctl"), "-n", self.node, *args],
            env={**os.environ, **self.env}, capture_output=True, text=True,
            timeout=timeout, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {done.stderr or done.stdout}")
        return done.stdout


class RabbitCluster:
    def __init__(self, workdir: Path, nodes: int = 3) -> None:
        if shutil.which("epmd") is None and not Path("/usr/lib/erlang").exists():
            pytest.skip("Erlang's epmd is missing (apt-get install rabbitmq-server)")
        epmd_port = free_port()
        home = workdir / "home"
        home.mkdir(parents=True, exist_ok=True)
        # One cookie for the cluster, in this HOME; epmd of our own on a free port.
        env = {"HOME": str(home), "ERL_EPMD_PORT": str(epmd_port)}
        self.epmd = ManagedProcess(
            [_epmd(), "-port", str(epmd_port)], workdir, name="epmd", env=env
        )
        self.nodes = [RabbitNode(workdir, f"r{i + 1}", env) for i in range(nodes)]

    @property
    def addresses(self) -> list[str]:
        return [node.address for node in self.nodes]

    def start(self) -> RabbitCluster:
        self.epmd.start()
        for node in self.nodes:
            node.process.start()
        for node in self.nodes:
            # await_startup fails at once until the node has registered with epmd.
            wait_until(node.answers, 120, f"{node.node} answering", interval=0.5)
            node.ctl("await_startup", "--timeout", "120")
        first = self.nodes[0]
        for node in self.nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", first.node)
            node.ctl("start_app")
            node.ctl("await_startup", "--timeout", "120")
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.process.stop(timeout=20)
        self.epmd.stop()


def _epmd() -> str:
    found = shutil.which("epmd") or next(Path("/usr/lib/erlang").glob("erts-*/bin/epmd"), None)
    if found is None:
        pytest.skip("Erlang's epmd is missing (apt-get install rabbitmq-server)")
    return str(found)
