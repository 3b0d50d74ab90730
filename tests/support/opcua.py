"""The OPC UA PLC simulator as a child process on a free port (restartable on the same port)."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.support.processes import ManagedProcess, free_port

__all__ = ["OpcUaSimulator"]

ROOT = Path(__file__).resolve().parents[2]


class OpcUaSimulator:
    """``python -m simulators.opcua`` with ``args``; ``port=None`` picks a free port now, so a
    restart (``kill()`` then ``start()``) comes back on the same one."""

    host = "127.0.0.1"

    def __init__(
        self, workdir: Path, *args: str, port: int | None = None, name: str = "opcua-sim"
    ) -> None:
        self.port = free_port(self.host) if port is None else port
        argv = [sys.executable, "-m", "simulators.opcua", "--port", str(self.port), *args]
        self.process = ManagedProcess(argv, workdir, name=name, cwd=ROOT)

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> OpcUaSimulator:
        """Start and wait for ``READY port=<port>``."""
        since = self.process.mark() if self.process.stdout_path.exists() else 0
        self.process.start()
        wanted = str(self.port) if self.port else r"\d+"
        ready = self.process.wait_for_line(rf"READY port=({wanted})\b", timeout, since=since)
        self.port = int(ready.group(1))
        return self

    def stop(self) -> int | None:
        return self.process.stop()

    def kill(self) -> None:
        self.process.kill()
