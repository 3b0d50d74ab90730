"""A virtual serial line: a ``socat`` pseudo-terminal pair, and the Modbus simulator serving RTU
on one end of it. Killing the pair is unplugging the cable; starting it again plugs it back
(the same link names, new terminals behind them)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from tests.support.processes import ManagedProcess, wait_until

__all__ = ["SerialPair", "SerialSimulator", "socat_available"]

ROOT = Path(__file__).resolve().parents[2]


def socat_available() -> bool:
    return shutil.which("socat") is not None


class SerialPair:
    """``device`` is the end the simulator opens, ``gateway`` the end the gateway opens."""

    def __init__(self, workdir: Path, name: str = "line") -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.device = str(workdir / f"{name}-device")
        self.gateway = str(workdir / f"{name}-gateway")
        ends = [f"pty,raw,echo=0,link={path}" for path in (self.device, self.gateway)]
        self.process = ManagedProcess(["socat", *ends], workdir, name=f"socat-{name}")

    def start(self, timeout: float = 10.0) -> SerialPair:
        for path in (self.device, self.gateway):
            Path(path).unlink(missing_ok=True)  # a killed socat leaves its links behind
        self.process.start()
        wait_until(
            lambda: all(Path(p).exists() for p in (self.device, self.gateway)),
            timeout,
            message=lambda: f"socat's terminals\n{self.process.describe()}",
        )
        return self

    def unplug(self) -> None:
        """The cable pulled: both terminals vanish at once."""
        self.process.kill()

    def stop(self) -> None:
        self.process.stop()


class SerialSimulator:
    """``python -m simulators.modbus --serial PATH`` with the given options."""

    def __init__(self, workdir: Path, path: str, *args: str, name: str = "serial-sim") -> None:
        argv = [sys.executable, "-m", "simulators.modbus", "--serial", path, *args]
        self.process = ManagedProcess(argv, workdir, name=name, cwd=ROOT)

    def start(self, timeout: float = 20.0) -> SerialSimulator:
        since = self.process.mark() if self.process.stdout_path.exists() else 0
        self.process.start()
        self.process.wait_for_line(r"READY serial=\S+", timeout, since=since)
        return self

    def stop(self) -> None:
        self.process.stop()
