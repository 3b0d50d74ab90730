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
from gateway.control import MASK, Conflict, ControlPlane, NotFound
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
    await control.patch_device("a", {"labels": {"line": "2", "cell": None}})
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
    admin, operator, viewer = "a" * 24, "o" * 24, "v" * 16
    book = TokenBook(
        [
            ApiToken(name="ops", token=SecretStr(admin), role="admin"),
            ApiToken(name="shift", token=SecretStr(operator), role="operator"),
            ApiToken(name="screen", token=SecretStr(viewer), role="viewer"),
        ]
    )
    assert book.generated is None
    roles = [book.role_of(token) for token in (admin, operator, viewer, "c" * 24)]
    assert roles == ["admin", "operator", "viewer", None]
    generated = TokenBook([])
    assert generated.generated is not None
    assert len(generated.generated) >= 24
    assert generated.role_of(generated.generated) == "admin"


@pytest.mark.parametrize(
    ("role", "token", "message"),
    [
        ("viewer", "short", "at least 16 characters"),
        ("admin", "x" * 23, "an admin token needs at least 24 characters"),
        ("operator", "x" * 23, "an operator token needs at least 24 characters"),
        ("admin", "change-me-gateway-admin-token", "example value from the repository"),
        ("viewer", "change-me-gateway-viewer-token", "example value from the repository"),
        ("admin", "unset-admin-token-see-env", "example value from the repository"),
        ("admin", "change-me-and-make-it-long-enough", "example value from the repository"),
    ],
)
def test_weak_or_well_known_tokens_are_refused(role: str, token: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ApiToken.model_validate({"name": "x", "token": token, "role": role})


async def test_ids_are_unique_regardless_of_case(
    plane: tuple[ControlPlane, Runtime, FakeSink],
) -> None:
    control, _, _ = plane
    with pytest.raises(Conflict, match="'from-file' exists already"):
        await control.create_devices([device("FROM-FILE")])
    with pytest.raises(Conflict, match=r"devices\[1\].id: a device 'dup1'"):
        await control.create_devices([device("dup1"), device("DUP1")])
    await control.create_devices([device("dup1")])
    with pytest.raises(Conflict, match="'dup1' exists already"):
        await control.create_devices([device("Dup1")])


async def test_listing_filters_come_from_indexes_kept_up_to_date(
    plane: tuple[ControlPlane, Runtime, FakeSink],
) -> None:
    control, _, _ = plane
    await control.create_devices(
        [
            device("a", labels={"line": "1", "cell": "x"}),
            device("b", labels={"line": "2"}, enabled=False),
            device("c", labels={"line": "1"}, groups=[{"tags": TAGS}]),
        ]
    )
    select = control.catalog.select
    assert list(select({"line": "1"})) == ["a", "c"]
    assert list(select({"line": "1", "cell": "x"})) == ["a"]
    assert list(select(profile="p")) == ["from-file", "a", "b"]
    assert list(select(protocol="modbus")) == ["from-file", "a", "b", "c"]
    assert list(select({"line": "3"})) == []
    await control.patch_device("a", {"labels": {"line": "2", "cell": None}})
    assert list(select({"line": "2"})) == ["a", "b"]  # the place in the order is kept
    assert list(select({"cell": "x"})) == []
    await control.delete_device("b")
    assert list(select({"line": "2"})) == ["a"]
    counts = control.counts()
    assert sum(counts.values()) == 3 and counts["disabled"] == 0


async def test_a_masked_secret_sent_back_keeps_the_stored_one(
    plane: tuple[ControlPlane, Runtime, FakeSink],
) -> None:
    """GET shows secrets as the mask; a PUT of what GET showed must not store the mask."""
    control, _, _ = plane
    groups = [{"tags": [{"name": "x", "node": "ns=2;s=X"}]}]
    opcua = {"id": "ua", "type": "opcua", "endpoint": "opc.tcp://h:4840", "groups": groups}
    secret = {**opcua, "username": "op", "password": "s3cret", "enabled": False}
    await control.create_devices([DEVICE.validate_python(secret)])
    shown = control.device("ua")[0].model_dump(mode="json")
    assert shown["password"] == MASK
    await control.replace_device("ua", DEVICE.validate_python({**shown, "labels": {"a": "b"}}))
    stored = control.device("ua")[0]
    assert stored.password.get_secret_value() == "s3cret"  # type: ignore[attr-defined]
    assert stored.labels == {"a": "b"}
    await control.patch_device("ua", {"password": MASK, "username": "op2"})
    assert control.device("ua")[0].password.get_secret_value() == "s3cret"  # type: ignore[attr-defined]
    await control.patch_device("ua", {"password": "new-one"})
    assert control.device("ua")[0].password.get_secret_value() == "new-one"  # type: ignore[attr-defined]


async def test_a_mask_with_no_secret_behind_it_is_refused(
    plane: tuple[ControlPlane, Runtime, FakeSink],
) -> None:
    control, _, _ = plane
    groups = [{"tags": [{"name": "x", "node": "ns=2;s=X"}]}]
    plain = {"id": "ua", "type": "opcua", "endpoint": "opc.tcp://h:4840", "groups": groups}
    await control.create_devices([DEVICE.validate_python({**plain, "enabled": False})])
    masked = DEVICE.validate_python({**plain, "username": "op", "password": MASK})
    with pytest.raises(ConfigError, match=r"password: \*+ is the mask of a secret"):
        await control.replace_device("ua", masked)


async def test_restore_skips_what_no_longer_fits_and_keeps_the_rest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = file_config(tmp_path)
    runtime = Runtime(config, [FakeSink()], {"modbus": Factory()})
    registry = Registry(open_database(tmp_path / "g.db"))
    ids = [f"dev-{i:04d}" for i in range(1500)]
    names = [*ids, "FROM-FILE"]
    await registry.put_devices([device(i, enabled=False) for i in names])
    await registry.put_devices([device("orphan", profile="gone", enabled=False)])
    with caplog.at_level("INFO"):
        control = ControlPlane(config, registry, runtime)
    assert [d.id for d, _ in control.devices()] == ["from-file", *ids]
    assert "stored device FROM-FILE is invalid, skipped: id 'from-file' is taken" in caplog.text
    assert (
        "stored device orphan is invalid, skipped: profile: unknown profile 'gone'" in caplog.text
    )
    assert "restored 1500 of 1502 device(s)" in caplog.text
    registry.close()


async def test_a_profile_change_is_checked_against_its_devices(
    plane: tuple[ControlPlane, Runtime, FakeSink],
) -> None:
    control, _, _ = plane
    await control.create_profile(
        PROFILE.validate_python({"id": "q", "type": "modbus", "groups": [{"tags": TAGS}]})
    )
    await control.create_devices([device("a", profile="q", unit=1)])
    too_far = [{"tags": [{"name": "t", "address": 65535, "data_type": "uint32"}]}]
    with pytest.raises(ConfigError) as caught:
        await control.replace_profile(
            "q", PROFILE.validate_python({"id": "q", "type": "modbus", "groups": too_far})
        )
    assert caught.value.problems[0].path.startswith("groups[0].tags[0]")
    with pytest.raises(Conflict, match="used by a"):
        await control.delete_profile("q")
