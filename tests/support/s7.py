"""The S7 PLC simulator as a child process on a free port (restartable on the same port)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.support.processes import ManagedProcess, free_port

__all__ = ["S7Simulator"]

ROOT = Path(__file__).resolve().parents[2]


class S7Simulator:
    """``python -m simulators.s7`` recording every request it serves in ``record``."""

    host = "127.0.0.1"

    def __init__(self, workdir: Path, *args: str, port: int | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port(self.host) if port is None else port
        self.ports = [self.port]
        self.record = workdir / "requests.jsonl"
        argv = [
            sys.executable, "-m", "simulators.s7", "--port", str(self.port),
            "--record", str(self.record), *args,
        ]  # fmt: skip
        self.process = ManagedProcess(argv, workdir, name="s7-sim", cwd=ROOT)

    def start(self, timeout: float = 20.0) -> S7Simulator:
        since = self.process.mark() if self.process.stdout_path.exists() else 0
        self.process.start()
        ready = self.process.wait_for_line(
            r"READY port=(\d+)\b(?: ports=(\S+))?", timeout, since=since
        )
        self.port = int(ready.group(1))
        self.ports = [int(p) for p in ready.group(2).split(",")] if ready.group(2) else [self.port]
        return self

    def requests(self) -> list[dict[str, object]]:
        """Every request served so far (``{"read": [[area, db, start, count], ...]}`` or
        ``{"write": [...]}``)."""
        if not self.record.exists():
            return []
        lines = self.record.read_text().splitlines()
        return [json.loads(line) for line in lines if line.endswith("}")]

    def stop(self) -> None:
        self.process.stop()

    def kill(self) -> None:
        self.process.kill()
