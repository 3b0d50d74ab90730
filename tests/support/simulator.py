"""The Modbus PLC simulator as a child process on a free port (restartable on the same port)."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.support.processes import ManagedProcess, free_port

__all__ = ["ModbusSimulator"]

ROOT = Path(__file__).resolve().parents[2]


class ModbusSimulator:
    def __init__(
        self, workdir: Path, *args: str, port: int | None = None, name: str = "sim"
    ) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        argv = [sys.executable, "-m", "simulators.modbus", "--port", str(self.port), *args]
        self.process = ManagedProcess(argv, workdir, name=name, cwd=ROOT)

    def start(self, timeout: float = 20.0) -> ModbusSimulator:
        since = self.process.mark() if self.process.stdout_path.exists() else 0
        self.process.start()
        self.process.wait_for_line(rf"READY port={self.port}\b", timeout, since=since)
        return self

    def stop(self) -> None:
        self.process.stop()

    def kill(self) -> None:
        self.process.kill()
