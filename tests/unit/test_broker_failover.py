"""Several broker nodes: config checks and the order in which nodes are tried."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.sinks.mqtt_config import MqttConfig, parse_address
from gateway.sinks.mqtt_session import ConnectFailed, keep_connected


@pytest.mark.parametrize(
    ("address", "expected"),
    [("broker-1:1883", ("broker-1", 1883)), ("[::1]:8883", ("::1", 8883))],
)
def test_addresses(address: str, expected: tuple[str, int]) -> None:
    assert parse_address(address) == expected


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("broker", "expected host:port"),
        (":1883", "expected host:port"),
        ("b:0", "port '0' is not 1..65535"),
        ("b:http", "port 'http' is not 1..65535"),
        ("::1:1883", "[address]:port for IPv6"),
    ],
)
def test_bad_addresses_are_named(address: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        MqttConfig(brokers=["ok:1883", address])
    assert f"brokers[1] {address!r}" in str(caught.value)
    assert message in str(caught.value)


def test_brokers_replace_host_and_port() -> None:
    config = MqttConfig(brokers=["a:1883", "b:1884"])
    assert config.addresses == [("a", 1883), ("b", 1884)]
    assert MqttConfig(host="h", port=1).addresses == [("h", 1)]
    with pytest.raises(ValidationError, match="brokers replaces host and port"):
        MqttConfig(brokers=["a:1883"], host="h")
    with pytest.raises(ValidationError, match="listed twice"):
        MqttConfig(brokers=["a:1883", "A:1883"])


class _Lost:
    close_reason = "node stopped"


async def _tried(config: MqttConfig, up: set[str], attempts: int) -> list[str]:
    """The nodes tried, in order, until ``attempts``; a connection to a node in ``up`` is
    served and then lost at once."""
    tried: list[str] = []
    enough = asyncio.Event()

    async def connect(address: tuple[str, int]) -> Any:
        tried.append(address[0])
        if len(tried) == attempts:
            enough.set()
        if address[0] not in up:
            raise ConnectFailed("connection refused")
        return _Lost()

    async def serve(conn: Any) -> None:
        await asyncio.sleep(0)

    task = asyncio.create_task(keep_connected("sink mqtt", config, connect, serve))
    await asyncio.wait_for(enough.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return tried[:attempts]


async def test_a_lost_connection_goes_on_with_the_next_node() -> None:
    config = MqttConfig(brokers=["a:1", "b:1", "c:1"], reconnect_min=0.001, reconnect_max=0.01)
    assert await _tried(config, {"a", "b", "c"}, 5) == ["a", "b", "c", "a", "b"]


async def test_a_dead_node_is_skipped_and_rounds_repeat() -> None:
    config = MqttConfig(brokers=["a:1", "b:1", "c:1"], reconnect_min=0.001, reconnect_max=0.01)
    assert await _tried(config, {"c"}, 7) == ["a", "b", "c", "a", "b", "c", "a"]
    assert await _tried(config, set(), 6) == ["a", "b", "c", "a", "b", "c"]
