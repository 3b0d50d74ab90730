"""Discovery over the control plane of a real gateway against the OPC UA simulator: the listing,
its start, depth and limit, logins, and a device registered from the tags it suggests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from connectors.opcua.config import OpcUaGroup
from simulators.opcua.plant import NAMESPACE, VARIABLES
from tests.support.gateway import ADMIN_TOKEN, GatewayProcess
from tests.support.opcua import OpcUaSimulator
from tests.support.processes import wait_until

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
LOGIN = {"username": "operator", "password": "s3cret"}


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpcUaSimulator]:
    """Frozen at tick 0, and refusing anonymous sessions."""
    login = ["--username", LOGIN["username"], "--password", LOGIN["password"]]
    simulator = OpcUaSimulator(tmp_path_factory.mktemp("opcua"), "--period", "1000", *login)
    try:
        yield simulator.start()
    finally:
        simulator.stop()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    config = {
        "gateway": {"id": "gw-discover"},
        "sinks": {"local": {"type": "local", "history": {"min_interval": 1}}},
        "runtime": {"reconnect_min": 0.1, "reconnect_max": 0.5, "status_interval": 1},
    }
    process = GatewayProcess(tmp_path_factory.mktemp("gateway"), config).start()
    try:
        process.wait_api()
        yield process
    finally:
        process.stop()


def discover(gateway: GatewayProcess, sim: OpcUaSimulator, **options: Any) -> httpx.Response:
    connection = {"endpoint": sim.endpoint, **LOGIN, **options.pop("connection", {})}
    return httpx.post(
        f"{gateway.api_url}/api/v1/protocols/opcua/discover",
        json={"connection": connection, **options},
        headers=ADMIN,
        timeout=30,
    )


def node(*path: str) -> str:
    return f"nsu={NAMESPACE};s={'.'.join(path)}"


def test_every_variable_of_the_line_with_a_tag_that_reads_it(
    gateway: GatewayProcess, sim: OpcUaSimulator
) -> None:
    response = discover(gateway, sim, depth=4)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["truncated"] is False
    found = {v["address"]: v for v in answer["variables"]}
    assert set(found) >= {node(*v.path) for v in VARIABLES}
    assert not any("Server" in v["path"] for v in found.values())

    speed = found[node("Line1", "Filler", "Speed")]
    assert speed == {
        "address": node("Line1", "Filler", "Speed"),
        "path": ["Plant", "Line1", "Filler", "Speed"],
        "data_type": "Double",
        "access": "r",
        "array": False,
        "tag": {"name": "Plant.Line1.Filler.Speed", "node": node("Line1", "Filler", "Speed")},
    }
    setpoint = found[node("Line1", "Filler", "Setpoint")]
    assert (setpoint["access"], setpoint["tag"]["writable"]) == ("rw", True)
    assert found[node("Line1", "Filler", "Levels")]["array"] is True
    assert found[node("Line1", "Filler", "TotalCount")]["data_type"] == "UInt64"
    # The suggested tags are unique and valid in one group of the protocol.
    group = OpcUaGroup.model_validate({"tags": [v["tag"] for v in answer["variables"]]})
    assert len({t.name for t in group.tags}) == len(answer["variables"])


def test_start_depth_and_limit(gateway: GatewayProcess, sim: OpcUaSimulator) -> None:
    filler = node("Line1", "Filler")
    below = discover(gateway, sim, start=filler, depth=1).json()
    paths = sorted(v["path"][0] for v in below["variables"])
    wanted = sorted(v.path[2] for v in VARIABLES if v.path[:2] == ("Line1", "Filler"))
    assert paths == wanted

    two = discover(gateway, sim, start=filler, depth=1, limit=2).json()
    assert (len(two["variables"]), two["truncated"]) == (2, True)
    shallow = discover(gateway, sim, depth=2).json()
    assert shallow["variables"] == []  # Objects/Plant/Line1 holds no variable itself


@pytest.mark.parametrize(
    ("start", "message"),
    [
        (node("Line9"), f"no node {node('Line9')} on opc.tcp://"),
        ("nsu=urn:nowhere;s=X", "namespace urn:nowhere is not on the server"),
        ("Plant/Line1", "expected a node id such as"),
    ],
)
def test_a_start_the_server_does_not_have_is_a_422(
    gateway: GatewayProcess, sim: OpcUaSimulator, start: str, message: str
) -> None:
    response = discover(gateway, sim, start=start)
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["field"] == "start"
    assert message in error["message"]


@pytest.mark.parametrize(
    ("login", "detail"),
    [
        (
            {"username": None, "password": None},
            "the server does not accept this kind of login (anonymous or username/password)",
        ),
        (
            {"password": "nope"},
            "login refused: wrong username or password (user 'operator')",
        ),
    ],
)
def test_a_refused_login_is_a_502_naming_the_server_and_the_reason(
    gateway: GatewayProcess, sim: OpcUaSimulator, login: dict[str, Any], detail: str
) -> None:
    response = discover(gateway, sim, connection=login)
    assert response.status_code == 502
    assert response.json()["detail"].startswith(f"{sim.endpoint}: {detail}")
    assert "nope" not in response.text


def test_a_device_registered_from_the_suggested_tags_reads_them(
    gateway: GatewayProcess, sim: OpcUaSimulator
) -> None:
    variables = discover(gateway, sim, start=node("Line1", "Filler"), depth=1).json()["variables"]
    tags = [v["tag"] for v in variables if "r" in v["access"]]
    device = {
        "id": "picked",
        "type": "opcua",
        "endpoint": sim.endpoint,
        **LOGIN,
        "groups": [{"name": "picked", "interval": 0.2, "tags": tags}],
    }
    created = httpx.post(f"{gateway.api_url}/api/v1/devices", json=device, headers=ADMIN)
    assert created.status_code == 201, created.text

    def latest() -> dict[str, Any] | None:
        values: dict[str, Any] = httpx.get(
            f"{gateway.api_url}/api/v1/devices/picked/latest", headers=ADMIN
        ).json()["values"]
        return values if len(values) == len(tags) else None

    values = wait_until(latest, 15, "a value of every picked tag")
    assert values["TotalCount"]["value"] == 10**15  # exactly, at tick 0
    assert values["Speed"]["quality"] == "good"
