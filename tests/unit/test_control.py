"""The control plane's rules, against a real runtime with fake connectors and sinks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from gateway.api.auth import TokenBook
from gateway.api.config import ApiToken
from gateway.config import (
    DeviceConfig,
    GatewayConfig,
    device_adapter,
    parse_config,
    profile_adapter,
)
from gateway.control import Conflict, ControlPlane, NotFound
from gateway.errors import ConfigError
from gateway.plugins import installed
from gateway.registry import Registry, open_database
from gateway.runtime import Runtime
from tests.support.processes import async_wait_until
from tests.unit.fakes import FakeSink
from tests.unit.test_runtime import Factory

DEVICE = device_adapter(installed())
PROFILE = profile_adapter(installed())
TAGS = [{"name": "t0", "address": 0}]


def device(device_id: str, **extra: Any) -> DeviceConfig:
    body = {"id": device_id, "type": "modbus", "host": "127.0.0.1", "profile": "p", **extra}
    if "groups" in extra:
        del body["profile"]
    return DEVICE.validate_python(body)


def file_config(tmp_path: Path) -> GatewayConfig:
    return parse_config(
        {
            "gateway": {"id": "gw", "data_dir": str(tmp_path)},
            "runtime": {"reconnect_min": 0.01, "reconnect_max": 0.02},
            "profiles": [{"id": "p", "type": "modbus", "groups": [{"tags": TAGS}]}],
            "devices": [{"id": "from-file", "type": "modbus", "host": "h", "profile": "p"}],
        }
    )


@pytest.fixture
async def plane(tmp_path: Path) -> AsyncIterator[tuple[ControlPlane, Runtime, FakeSink]]:
    config = file_config(tmp_path)
    sink = FakeSink()
    runtime = Runtime(config, [sink], {"modbus": Factory()})
    control = ControlPlane(config, Registry(open_database(tmp_path / "g.db")), runtime)
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    await runtime.started.wait()
    yield control, runtime, sink
    stop.set()
    await task


async def test_created_devices_run_and_come_back_from_the_registry(
    plane: tuple[ControlPlane, Runtime, FakeSink], tmp_path: Path
) -> None:
    control, runtime, sink = plane
    await control.create_devices([device("a"), device("b", enabled=False)])
    await async_wait_until(lambda: any(b.device == "a" for b in sink.written), 5)
    assert set(runtime.devices) == {"from-file", "a"}
    assert control.status("b").state.value == "disabled"
    again = ControlPlane(file_config(tmp_path), Registry(open_database(tmp_path / "g.db")), runtime)
    assert [(d.id, s) for d, s in again.devices()] == [
        ("from-file", "file"),
        ("a", "api"),
        ("b", "api"),
    ]


async def test_file_entries_are_read_only_and_ids_unique(
    plane: tuple[ControlPlane, Runtime, FakeSink],
) -> None:
    control, _, _ = plane
    with pytest.raises(Conflict, match="configuration file"):
        await control.delete_device("from-file")
    with pytest.raises(Conflict, match="exists already"):
        await control.create_devices([device("from-file")])
    with pytest.raises(Conflict, match=r"devices\[1\].id"):
        await control.create_devices([device("x"), device("x")])
    with pytest.raises(NotFound):
        await control.delete_device("nope")
    assert [d.id for d, _ in control.devices()] == ["from-file"]


async def test_reference_errors_name_the_field_of_the_body(
    plane: tuple[ControlPlane, Runtime, FakeSink],
) -> None:
    control, _, _ = plane
    with pytest.raises(ConfigError) as caught:
        await control.create_devices([device("x", profile="missing")])
    assert [(p.path, p.message.split(" (")[0]) for p in caught.value.problems] == [
        ("profile", "unknown profile 'missing'")
    ]
    with pytest.raises(ConfigError) as caught:
        await control.create_devices([device("y", address_base=1)])
    assert caught.value.problems[0].path == "profiles[0].groups[0].tags[0].address"


async def test_patch_disable_enable_and_profile_rules(
    plane: tuple[ControlPlane, Runtime, FakeSink],
) -> None:
    control, runtime, _ = plane
    await control.create_profile(
        PROFILE.validate_python({"id": "q", "type": "modbus", "groups": [{"tags": TAGS}]})
    )
    await control.create_devices([device("a", profile="q")])
    await control.patch_device("a", {"labels": {"line": "2"}})
    assert control.device("a")[0].labels == {"line": "2"}
    await control.patch_device("a", {"enabled": False})
    assert "a" not in runtime.devices
    await control.patch_device("a", {"enabled": True})
    assert "a" in runtime.devices
    with pytest.raises(ConfigError) as caught:
        await control.patch_device("a", {"unit": 300})
    assert caught.value.problems[0].path == "unit"
    with pytest.raises(Conflict, match="used by a"):
        await control.delete_profile("q")
    await control.delete_device("a")
    await control.delete_profile("q")
    assert [p.id for p, _ in control.profiles()] == ["p"]


def test_tokens_have_roles_and_a_generated_admin_when_none() -> None:
    book = TokenBook(
        [
            ApiToken(name="ops", token=SecretStr("a" * 20), role="admin"),
            ApiToken(name="screen", token=SecretStr("b" * 20), role="viewer"),
        ]
    )
    assert book.generated is None
    assert (book.role_of("a" * 20), book.role_of("b" * 20), book.role_of("c" * 20)) == (
        "admin",
        "viewer",
        None,
    )
    generated = TokenBook([])
    assert generated.generated is not None
    assert generated.role_of(generated.generated) == "admin"


def test_short_tokens_are_refused() -> None:
    with pytest.raises(ValueError, match="16 characters"):
        ApiToken(name="x", token=SecretStr("short"))
