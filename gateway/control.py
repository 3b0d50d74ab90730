"""The control plane's service layer: register, change and remove devices and profiles live.

Rule between the YAML file and the API: what the file defines is read-only over the API (409:
edit the file and restart); what the API creates is stored in the gateway's SQLite file and is
back after a restart. Ids are unique across both. Every change is validated with the same
models and reference checks as the file, then applied to the running gateway at once, touching
only the devices it concerns.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import ValidationError

from gateway.config import (
    DeviceConfig,
    GatewayConfig,
    ProfileConfig,
    check_references,
    device_adapter,
    problems_from,
    profile_adapter,
)
from gateway.errors import ConfigError, ConfigProblem, GatewayError
from gateway.local_store import LocalStore
from gateway.plugins import Plugins, installed
from gateway.registry import Registry
from gateway.runtime import Runtime
from gateway.status import DeviceState, DeviceStatus

__all__ = ["Conflict", "ControlPlane", "NotFound", "Source"]

log = logging.getLogger(__name__)

Source = Literal["file", "api"]


class NotFound(GatewayError):
    """No device or profile with that id (404)."""


class Conflict(GatewayError):
    """The id is taken, or the thing is defined by the file, or still in use (409)."""


def _document(model: DeviceConfig | ProfileConfig) -> dict[str, Any]:
    """A model as a plain document with its secrets (for storage and patching, never shown)."""
    return model.model_dump(mode="python", exclude_unset=False)


class ControlPlane:
    def __init__(
        self,
        file_config: GatewayConfig,
        registry: Registry,
        runtime: Runtime,
        store: LocalStore | None = None,
        plugins: Plugins | None = None,
    ) -> None:
        self.file_config = file_config
        self.plugins = plugins or installed()
        self._devices = device_adapter(self.plugins)
        self._profiles = profile_adapter(self.plugins)
        self._registry = registry
        self._runtime = runtime
        self._store = store
        self._file_devices = {d.id for d in file_config.devices}
        self._file_profiles = {p.id for p in file_config.profiles}
        self.api_profiles: dict[str, ProfileConfig] = {}
        self.api_devices: dict[str, DeviceConfig] = {}
        self._restore()

    # -- reading -----------------------------------------------------------------------------

    @property
    def config(self) -> GatewayConfig:
        return self._combined(list(self.api_devices.values()), list(self.api_profiles.values()))

    def devices(self) -> list[tuple[DeviceConfig, Source]]:
        return [(d, "file") for d in self.file_config.devices] + [
            (d, "api") for d in self.api_devices.values()
        ]

    def device(self, device_id: str) -> tuple[DeviceConfig, Source]:
        for device, source in self.devices():
            if device.id == device_id:
                return device, source
        raise NotFound(f"no device {device_id!r}")

    def status(self, device_id: str) -> DeviceStatus:
        running = self._runtime.devices.get(device_id)
        if running is not None:
            return running.status
        self.device(device_id)
        return DeviceStatus(device_id, state=DeviceState.DISABLED)

    def profiles(self) -> list[tuple[ProfileConfig, Source]]:
        return [(p, "file") for p in self.file_config.profiles] + [
            (p, "api") for p in self.api_profiles.values()
        ]

    def profile(self, profile_id: str) -> tuple[ProfileConfig, Source]:
        for profile, source in self.profiles():
            if profile.id == profile_id:
                return profile, source
        raise NotFound(f"no profile {profile_id!r}")

    # -- devices -----------------------------------------------------------------------------

    async def create_devices(self, devices: Sequence[DeviceConfig]) -> None:
        """Create one or many devices, all or nothing."""
        seen: set[str] = set()
        for index, device in enumerate(devices):
            where = f"devices[{index}].id" if len(devices) > 1 else "id"
            if device.id in seen or self._exists(device.id):
                raise Conflict(f"{where}: a device {device.id!r} exists already")
            seen.add(device.id)
        candidate = [*self.api_devices.values(), *devices]
        self._check(candidate, list(self.api_profiles.values()), [d.id for d in devices])
        await self._registry.put_devices({d.id: _document(d) for d in devices})
        for device in devices:
            self.api_devices[device.id] = device
        self._apply()
        for device in devices:
            if device.enabled:
                self._runtime.add_device(device)

    async def replace_device(self, device_id: str, device: DeviceConfig) -> None:
        self._own_device(device_id)
        if device.id != device_id:
            raise ConfigError([ConfigProblem("id", f"must be {device_id!r}, the device's id")])
        candidate = [device if d.id == device_id else d for d in self.api_devices.values()]
        self._check(candidate, list(self.api_profiles.values()), [device_id])
        await self._registry.put_device(device_id, _document(device))
        self.api_devices[device_id] = device
        self._apply()
        await self._sync(device)

    async def patch_device(self, device_id: str, changes: dict[str, Any]) -> DeviceConfig:
        """Merge ``changes`` into the device (objects merge, lists and values replace)."""
        current = self._own_device(device_id)
        merged = _merge(_document(current), changes)
        try:
            device = self._devices.validate_python(merged)
        except ValidationError as exc:
            raise ConfigError(problems_from(exc, union_at_root=True, plugins=self.plugins)) from exc
        await self.replace_device(device_id, device)
        return device

    async def delete_device(self, device_id: str) -> None:
        self._own_device(device_id)
        await self._registry.delete_device(device_id)
        del self.api_devices[device_id]
        self._apply()
        if device_id in self._runtime.devices:
            await self._runtime.remove_device(device_id, forget=True)
        if self._store is not None:
            self._store.forget(device_id)

    # -- profiles ----------------------------------------------------------------------------

    async def create_profile(self, profile: ProfileConfig) -> None:
        if profile.id in self.api_profiles or profile.id in self._file_profiles:
            raise Conflict(f"id: a profile {profile.id!r} exists already")
        self._check(list(self.api_devices.values()), [*self.api_profiles.values(), profile], [])
        await self._registry.put_profile(profile.id, _document(profile))
        self.api_profiles[profile.id] = profile
        self._apply()

    async def replace_profile(self, profile_id: str, profile: ProfileConfig) -> None:
        self._own_profile(profile_id)
        if profile.id != profile_id:
            raise ConfigError([ConfigProblem("id", f"must be {profile_id!r}, the profile's id")])
        profiles = [profile if p.id == profile_id else p for p in self.api_profiles.values()]
        users = [d for d in self.api_devices.values() if d.profile == profile_id]
        self._check(list(self.api_devices.values()), profiles, [d.id for d in users])
        await self._registry.put_profile(profile_id, _document(profile))
        self.api_profiles[profile_id] = profile
        self._apply()
        for device in users:
            await self._sync(device)

    async def delete_profile(self, profile_id: str) -> None:
        self._own_profile(profile_id)
        users = sorted(d.id for d in self.api_devices.values() if d.profile == profile_id)
        if users:
            raise Conflict(f"profile {profile_id!r} is used by {', '.join(users)}")
        await self._registry.delete_profile(profile_id)
        del self.api_profiles[profile_id]
        self._apply()

    # -- internals ---------------------------------------------------------------------------

    def _exists(self, device_id: str) -> bool:
        return device_id in self.api_devices or device_id in self._file_devices

    def _own_device(self, device_id: str) -> DeviceConfig:
        if device_id in self._file_devices:
            raise Conflict(f"device {device_id!r} is defined in the configuration file: edit it")
        try:
            return self.api_devices[device_id]
        except KeyError:
            raise NotFound(f"no device {device_id!r}") from None

    def _own_profile(self, profile_id: str) -> ProfileConfig:
        if profile_id in self._file_profiles:
            raise Conflict(f"profile {profile_id!r} is defined in the configuration file: edit it")
        try:
            return self.api_profiles[profile_id]
        except KeyError:
            raise NotFound(f"no profile {profile_id!r}") from None

    def _combined(
        self, devices: list[DeviceConfig], profiles: list[ProfileConfig]
    ) -> GatewayConfig:
        return self.file_config.model_copy(
            update={
                "devices": [*self.file_config.devices, *devices],
                "profiles": [*self.file_config.profiles, *profiles],
            }
        )

    def _check(
        self, devices: list[DeviceConfig], profiles: list[ProfileConfig], changed: list[str]
    ) -> None:
        """Reference checks of the whole candidate configuration; problems of the changed
        devices are reported with paths relative to what the caller sent."""
        candidate = self._combined(devices, profiles)
        index = {d.id: i for i, d in enumerate(candidate.devices)}
        single = len(changed) == 1
        problems: list[ConfigProblem] = []
        for problem in check_references(candidate, self.plugins):
            for position, device_id in enumerate(changed):
                prefix = f"devices[{index[device_id]}]"
                if problem.path.startswith(prefix) or f"({prefix})" in problem.message:
                    path = problem.path.removeprefix(prefix).lstrip(".")
                    if not single and problem.path.startswith(prefix):
                        path = f"devices[{position}]" + problem.path.removeprefix(prefix)
                    message = problem.message.replace(f" (device {prefix})", "")
                    problems.append(ConfigProblem(path, message))
                    break
            else:
                if problem.path.startswith("profiles["):
                    problems.append(problem)
        if problems:
            raise ConfigError(problems)

    def _apply(self) -> None:
        self._runtime.config = self.config

    async def _sync(self, device: DeviceConfig) -> None:
        """Make the running gateway match one device's configuration."""
        running = device.id in self._runtime.devices
        if running and device.enabled:
            await self._runtime.replace_device(device)
        elif running:
            await self._runtime.remove_device(device.id)
        elif device.enabled:
            self._runtime.add_device(device)

    def _restore(self) -> None:
        """Load what the API created before; entries that no longer validate (say, the file
        now defines the same id) are skipped with an error in the log, and kept on disk."""
        for document in self._registry.profiles():
            try:
                profile = self._profiles.validate_python(document)
            except ValidationError as exc:
                log.error("stored profile %s is invalid, skipped: %s", document.get("id"), exc)
                continue
            if profile.id in self._file_profiles:
                log.error("stored profile %s is shadowed by the file, skipped", profile.id)
                continue
            self.api_profiles[profile.id] = profile
        for document in self._registry.devices():
            try:
                device = self._devices.validate_python(document)
                if self._exists(device.id):
                    raise Conflict(f"device {device.id} is also defined in the file")
                self._check(
                    [*self.api_devices.values(), device],
                    list(self.api_profiles.values()),
                    [device.id],
                )
            except (ValidationError, GatewayError) as exc:
                log.error("stored device %s is invalid, skipped: %s", document.get("id"), exc)
                continue
            self.api_devices[device.id] = device
        self._apply()


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged
