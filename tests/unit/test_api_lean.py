"""The control plane spends memory only on what is used: each route's models are made once,
and the OpenAPI document and Prometheus' library wait for their first request."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import Route

from gateway.api import openapi
from gateway.api.app import create_app
from gateway.assembly import Gateway
from gateway.config import parse_config

ROOT = Path(__file__).resolve().parents[2]


def test_routes_are_the_apps_own_not_copies_of_included_routers(tmp_path: Path) -> None:
    gateway = Gateway(parse_config({"gateway": {"id": "gw", "data_dir": str(tmp_path)}}))
    try:
        app = create_app(gateway)
    finally:
        gateway.close()
    paths = {route.path for route in app.routes if isinstance(route, APIRoute)}
    assert {"/api/v1/devices", "/api/v1/devices/{device_id}", "/healthz", "/"} <= paths
    # An included router's routes would be prepared a second time on the first request.
    assert all(isinstance(route, APIRoute | Route) for route in app.routes)


def test_the_document_is_built_on_its_first_request_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds: list[int] = []

    def counted(**kwargs: Any) -> dict[str, Any]:
        builds.append(1)
        return get_openapi(**kwargs)

    monkeypatch.setattr(openapi, "get_openapi", counted)
    gateway = Gateway(parse_config({"gateway": {"id": "gw", "data_dir": str(tmp_path)}}))
    try:
        app = create_app(gateway)
        client = TestClient(app)
        assert client.get("/healthz").status_code == 200
        assert client.get("/docs").status_code == 200
        assert builds == []
        served = client.get("/openapi.json")
        assert served.status_code == 200
        assert served.headers["content-type"] == "application/json"
        assert client.get("/openapi.json").content == served.content
        assert builds == [1]
        assert orjson.loads(served.content) == app.openapi()
        for page in ("/docs", "/redoc"):
            answer = client.get(page)
            assert answer.status_code == 200
            assert "/openapi.json" in answer.text
        allowed = client.options("/").headers["allow"]  # routes outside the document too
        assert allowed == "GET, HEAD, OPTIONS"
    finally:
        gateway.close()


def test_the_document_pydantic_v1_and_prometheus_wait_for_their_first_use(
    tmp_path: Path,
) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        from fastapi.testclient import TestClient
        from gateway.api.app import create_app
        from gateway.assembly import Gateway
        from gateway.config import parse_config

        config = {{"gateway": {{"id": "gw", "data_dir": {str(tmp_path)!r}}}}}
        gateway = Gateway(parse_config(config))
        client = TestClient(create_app(gateway))
        assert client.get("/healthz").status_code == 200
        loaded = lambda prefix: sorted(m for m in sys.modules if m.startswith(prefix))
        print("before", loaded("prometheus_client"), sys.modules["pydantic.v1"])
        metrics = client.get("/metrics")
        assert metrics.status_code == 200 and b"gateway_" in metrics.content
        print("after", loaded("prometheus_client")[:1], sys.modules["pydantic.v1"])
        gateway.close()
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "before [] None", lines  # pydantic.v1 marked absent, never imported
    assert lines[1] == "after ['prometheus_client'] None", lines
