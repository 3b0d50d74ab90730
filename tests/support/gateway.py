"""The gateway as a real ``gateway run`` child process with a config written for the test."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from tests.support.processes import ManagedProcess

__all__ = ["GatewayProcess", "example_profile"]

ROOT = Path(__file__).resolve().parents[2]


def example_profile(profile_id: str = "sim-plc") -> dict[str, Any]:
    """A profile of config/gateway.yaml, so tests exercise the shipped example."""
    document = yaml.safe_load((ROOT / "config" / "gateway.yaml").read_text())
    profile: dict[str, Any] = next(p for p in document["profiles"] if p["id"] == profile_id)
    return profile


class GatewayProcess:
    def __init__(self, workdir: Path, config: dict[str, Any]) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "gateway.yaml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        argv = [sys.executable, "-m", "gateway.cli", "run", "--config", str(self.config_path)]
        self.process = ManagedProcess(argv, workdir, name="gateway", cwd=ROOT)

    def start(self) -> GatewayProcess:
        self.process.start()
        return self

    def stop(self, timeout: float = 15.0) -> int | None:
        return self.process.stop(timeout)

    def log(self) -> str:
        return self.process.errors()
