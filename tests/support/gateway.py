"""The gateway as a real ``gateway run`` child process with a config written for the test."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.processes import ManagedProcess, free_port, wait_until

__all__ = ["GatewayProcess", "example_profile"]

ROOT = Path(__file__).resolve().parents[2]


def example_profile(profile_id: str = "sim-plc") -> dict[str, Any]:
    """A profile of config/gateway.yaml, so tests exercise the shipped example."""
    document = yaml.safe_load((ROOT / "config" / "gateway.yaml").read_text())
    profile: dict[str, Any] = next(p for p in document["profiles"] if p["id"] == profile_id)
    return profile


ADMIN_TOKEN = "test-admin-token-0123456789"
VIEWER_TOKEN = "test-viewer-token-0123456789"


class GatewayProcess:
    """Unless the config says otherwise, the gateway keeps its data in ``workdir`` and serves
    its control plane on a free port with the test tokens above."""

    def __init__(
        self, workdir: Path, config: dict[str, Any], env: dict[str, str] | None = None
    ) -> None:
        """``env`` is added to the gateway's environment (e.g. PYTHONPATH for a plugin)."""
        workdir.mkdir(parents=True, exist_ok=True)
        config = copy.deepcopy(config)
        config["gateway"].setdefault("data_dir", str(workdir / "data"))
        api = config.setdefault("api", {})
        api.setdefault("port", free_port())
        api.setdefault(
            "tokens",
            [
                {"name": "test-admin", "token": ADMIN_TOKEN, "role": "admin"},
                {"name": "test-viewer", "token": VIEWER_TOKEN, "role": "viewer"},
            ],
        )
        self.api_url = f"http://127.0.0.1:{api['port']}"
        self.data_dir = Path(config["gateway"]["data_dir"])
        self.config_path = workdir / "gateway.yaml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        argv = [sys.executable, "-m", "gateway.cli", "run", "--config", str(self.config_path)]
        self.process = ManagedProcess(argv, workdir, name="gateway", cwd=ROOT, env=env)

    def start(self) -> GatewayProcess:
        self.process.start()
        return self

    def stop(self, timeout: float = 15.0) -> int | None:
        return self.process.stop(timeout)

    def log(self) -> str:
        return self.process.errors()

    def wait_api(self, timeout: float = 20.0) -> str:
        """Wait until the control plane answers /healthz; its base URL."""

        def healthy() -> bool:
            if not self.process.running:
                raise RuntimeError(f"the gateway exited\n{self.process.describe()}")
            try:
                return httpx.get(f"{self.api_url}/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(healthy, timeout, lambda: f"control plane up\n{self.process.describe()}")
        return self.api_url
