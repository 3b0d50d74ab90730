"""POST /api/v1/protocols/{type}/discover in process: who may call it, which protocols have it,
every bad field named in one 422, and a server that cannot be reached or is too slow as a clear
502 or 504 (never a 500). No OPC UA server is needed: the unreachable one is a closed port."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict

from connectors.modbus.plugin import PLUGIN as MODBUS
from connectors.opcua.plugin import PLUGIN as OPCUA
from gateway.api.auth import TokenBook
from gateway.api.config import ApiToken
from gateway.api.problems import install_problem_handlers
from gateway.api.routes import discover, protocols
from gateway.errors import ConnectorError
from gateway.plugins import DiscoveredTag, PluginContext, Plugins
from tests.support.gateway import ADMIN_TOKEN, VIEWER_TOKEN
from tests.support.processes import free_port

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
VIEWER = {"Authorization": f"Bearer {VIEWER_TOKEN}"}


class FakeConnection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str


class FakeDiscoverer:
    """The Modbus plugin's models, plus a discovery answering ``found`` (or never answering)."""

    type = "fake"
    device_model = MODBUS.device_model
    profile_model = MODBUS.profile_model
    check_groups = MODBUS.check_groups
    connector_factory = MODBUS.connector_factory
    connection_model = FakeConnection

    def __init__(self) -> None:
        self.found: list[DiscoveredTag] | None = []
        self.calls: list[tuple[Any, ...]] = []

    async def discover(
        self,
        connection: BaseModel,
        start: str | None,
        depth: int,
        limit: int,
        context: PluginContext,
    ) -> list[DiscoveredTag]:
        self.calls.append((connection, start, depth, limit, context))
        if self.found is None:
            await asyncio.Event().wait()  # a server that never finishes
        return list(self.found or [])[:limit]


def variable(n: int) -> DiscoveredTag:
    return DiscoveredTag(
        address=f"r{n}",
        path=("Line1", f"V{n}"),
        data_type="Double",
        access="rw",
        array=False,
        tag={"name": f"Line1.V{n}", "address": n},
    )


@pytest.fixture
def fake() -> FakeDiscoverer:
    return FakeDiscoverer()


@pytest.fixture
def client(fake: FakeDiscoverer, tmp_path: Path) -> Iterator[TestClient]:
    plugins = Plugins([MODBUS, OPCUA, fake])
    app = FastAPI()
    install_problem_handlers(app)
    app.state.tokens = TokenBook(
        [
            ApiToken(name="admin", token=ADMIN_TOKEN, role="admin"),  # type: ignore[arg-type]
            ApiToken(name="viewer", token=VIEWER_TOKEN, role="viewer"),  # type: ignore[arg-type]
        ]
    )
    # The routes read only the gateway's id and data directory (for the plugin's context)
    # and whether writes are on (/api/v1/me).
    app.state.gateway = SimpleNamespace(
        config=SimpleNamespace(
            gateway=SimpleNamespace(id="gw-test", data_dir=tmp_path),
            writes=SimpleNamespace(enabled=False),
        )
    )
    discover.build_routes(plugins).add_to(app.router)
    protocols.me_routes().add_to(app.router)
    with TestClient(app) as test_client:
        yield test_client


def fields(response: Any) -> dict[str, str]:
    assert response.headers["content-type"] == "application/problem+json"
    return {e["field"]: e["message"] for e in response.json()["errors"]}


def test_which_protocols_discover_and_the_callers_role(client: TestClient) -> None:
    assert protocols.describe(OPCUA).discover and not protocols.describe(MODBUS).discover
    assert client.get("/api/v1/me", headers=VIEWER).json()["role"] == "viewer"
    assert client.get("/api/v1/me", headers=ADMIN).json() == {
        "name": "admin",
        "role": "admin",
        "writes": False,
    }
    assert client.get("/api/v1/me").status_code == 401


@pytest.mark.parametrize(
    ("headers", "status"), [({}, 401), ({"Authorization": "Bearer nope"}, 401), (VIEWER, 403)]
)
def test_only_admins_discover(
    client: TestClient, fake: FakeDiscoverer, headers: dict[str, str], status: int
) -> None:
    response = client.post(
        "/api/v1/protocols/fake/discover", json={"connection": {"host": "h"}}, headers=headers
    )
    assert response.status_code == status
    assert fake.calls == []


@pytest.mark.parametrize(
    ("protocol", "status", "detail"),
    [
        ("profinet", 404, "no protocol 'profinet' is installed"),
        ("modbus", 400, "protocol 'modbus' cannot discover: give its tags"),
    ],
)
def test_unknown_protocols_and_protocols_without_discovery(
    client: TestClient, protocol: str, status: int, detail: str
) -> None:
    response = client.post(
        f"/api/v1/protocols/{protocol}/discover", json={"connection": {}}, headers=ADMIN
    )
    assert (response.status_code, response.json()["detail"]) == (status, detail)


def test_every_bad_field_is_named_in_one_answer(client: TestClient) -> None:
    body = {
        "connection": {"endpoint": "http://plc:4840", "timeout": 0, "colour": "red"},
        "depth": 9,
        "limit": 0,
        "timeout": -1,
        "extra": True,
    }
    response = client.post("/api/v1/protocols/opcua/discover", json=body, headers=ADMIN)
    assert response.status_code == 422
    named = fields(response)
    assert set(named) == {
        "depth",
        "limit",
        "timeout",
        "extra",
        "connection.endpoint",
        "connection.timeout",
        "connection.colour",
    }
    assert "less than or equal to 5" in named["depth"]
    assert "String should match pattern" in named["connection.endpoint"]


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({}, {"connection": "Field required"}),
        ({"connection": "opc.tcp://plc"}, {"connection": "Input should be a valid dictionary"}),
        (
            {"connection": {"endpoint": "opc.tcp://plc:4840", "username": "gw"}},
            {"connection": "give both 'username' and 'password', or neither"},
        ),
    ],
)
def test_a_missing_or_malformed_connection(
    client: TestClient, body: dict[str, Any], named: dict[str, str]
) -> None:
    response = client.post("/api/v1/protocols/opcua/discover", json=body, headers=ADMIN)
    assert response.status_code == 422
    assert {k: v.split(" (got")[0] for k, v in fields(response).items()} == named


def test_a_bad_start_node_is_named_before_any_connection(client: TestClient) -> None:
    # Nothing listens on the port: a connection attempt would be a 502, not this.
    body = {"connection": {"endpoint": f"opc.tcp://127.0.0.1:{free_port()}"}, "start": "x=1"}
    response = client.post("/api/v1/protocols/opcua/discover", json=body, headers=ADMIN)
    assert response.status_code == 422
    assert list(fields(response)) == ["start"]


def test_an_unreachable_server_is_a_502_naming_it(client: TestClient) -> None:
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}"
    body = {"connection": {"endpoint": endpoint, "timeout": 2}}
    response = client.post("/api/v1/protocols/opcua/discover", json=body, headers=ADMIN)
    assert response.status_code == 502
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == f"cannot connect to {endpoint}: connection refused"


def test_a_listing_past_its_timeout_is_a_504(client: TestClient, fake: FakeDiscoverer) -> None:
    fake.found = None
    body = {"connection": {"host": "h"}, "timeout": 0.05}
    response = client.post("/api/v1/protocols/fake/discover", json=body, headers=ADMIN)
    assert response.status_code == 504
    assert "did not finish within 0.05 s" in response.json()["detail"]


def test_a_plugins_connector_error_is_a_502(
    client: TestClient, fake: FakeDiscoverer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refuse(*args: Any) -> list[DiscoveredTag]:
        raise ConnectorError("h:502: login refused")

    monkeypatch.setattr(fake, "discover", refuse)
    response = client.post(
        "/api/v1/protocols/fake/discover", json={"connection": {"host": "h"}}, headers=ADMIN
    )
    assert (response.status_code, response.json()["detail"]) == (502, "h:502: login refused")


def test_the_variables_with_their_tags_and_the_options_passed_on(
    client: TestClient, fake: FakeDiscoverer, tmp_path: Path
) -> None:
    fake.found = [variable(n) for n in range(3)]
    body = {"connection": {"host": "h"}, "start": "Line1", "depth": 2, "limit": 2}
    response = client.post("/api/v1/protocols/fake/discover", json=body, headers=ADMIN)
    assert response.status_code == 200
    answer = response.json()
    assert answer["type"] == "fake"
    assert answer["truncated"] is True
    assert answer["variables"] == [
        {
            "address": f"r{n}",
            "path": ["Line1", f"V{n}"],
            "data_type": "Double",
            "access": "rw",
            "array": False,
            "tag": {"name": f"Line1.V{n}", "address": n},
        }
        for n in range(2)
    ]
    # One more than the limit is asked for, to know whether there are more.
    [(connection, start, depth, limit, context)] = fake.calls
    assert (connection, start, depth, limit) == (FakeConnection(host="h"), "Line1", 2, 3)
    assert context == PluginContext("gw-test", tmp_path)

    fake.found = fake.found[:2]
    again = client.post("/api/v1/protocols/fake/discover", json=body, headers=ADMIN).json()
    assert again["truncated"] is False
