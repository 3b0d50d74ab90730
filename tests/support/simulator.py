"""The Modbus PLC simulator as a child process on a free port (restartable on the same port)."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.support.processes import ManagedProcess, free_port

__all__ = ["ModbusSimulator"]

ROOT = Path(__file__).resolve().parents[2]


class ModbusSimulator:
    """``port=None`` picks a free port now, so a restart comes back on the same one;
    ``port=0`` lets the simulator pick (the way to get several ports with ``--ports N``)."""

    def __init__(
        self, workdir: Path, *args: str, port: int | None = None, name: str = "sim"
    ) -> None:
        self.host = "127.0.0.1"
        self.port = free_port() if port is None else port
        self.ports = [self.port]
        """Every listening port, known once started."""
        argv = [sys.executable, "-m", "simulators.modbus", "--port", str(self.port), *args]
        self.process = ManagedProcess(argv, workdir, name=name, cwd=ROOT)

    def start(self, timeout: float = 20.0) -> ModbusSimulator:
        since = self.process.mark() if self.process.stdout_path.exists() else 0
        self.process.start()
        wanted = str(self.port) if self.port else r"\d+"
        ready = self.process.wait_for_line(
            rf"READY port=({wanted})\b(?: ports=(\S+))?", timeout, since=since
        )
        self.port = int(ready.group(1))
        self.ports = [int(p) for p in ready.group(2).split(",")] if ready.group(2) else [self.port]
        return self

    def stop(self) -> None:
        self.process.stop()

    def kill(self) -> None:
        self.process.kill()
