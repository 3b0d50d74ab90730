"""The control plane's service layer: register, change and remove devices and profiles live.

Rule between the YAML file and the API: what the file defines is read-only over the API (409:
edit the file and restart); what the API creates is stored in the gateway's SQLite file and is
back after a restart. Ids are unique across both. Every change is validated with the same
models and reference checks as the file, then applied to the running gateway at once, touching
only the devices it concerns.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pydantic import SecretStr, TypeAdapter, ValidationError

from gateway.catalog import DeviceCatalog, Source
from gateway.config import (
    DeviceConfig,
    GatewayConfig,
    ProfileConfig,
    check_device,
    check_references,
    device_adapter,
    problems_from,
    profile_adapter,
)
from gateway.devices import GroupBase
from gateway.errors import ConfigError, ConfigProblem, GatewayError
from gateway.local_store import LocalStore
from gateway.memory import settle_long_lived
from gateway.plugins import Plugins, installed
from gateway.registry import Registry
from gateway.runtime import Runtime
from gateway.status import DeviceState, DeviceStatus
from gateway.writeback import Target

__all__ = ["MASK", "Conflict", "ControlPlane", "NotFound", "Source"]

log = logging.getLogger(__name__)

MASK = "**********"
"""How a secret is shown (pydantic's SecretStr in JSON); never taken back as a new secret."""

_DEVICE_AT = re.compile(r"\(device devices\[(\d+)\]\)")
"""How check_references names the device a profile problem was found for."""

_SECTION_AT = re.compile(r"(devices|profiles)\[(\d+)\]")

_SLICE = 50
"""Devices handled between two yields to the event loop in bulk work: a few ms, and no more
new devices' first steps (their connections) in one loop pass."""


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
        self._file_profiles = {p.id for p in file_config.profiles}
        self.api_profiles: dict[str, ProfileConfig] = {}
        self._profile_index: dict[str, tuple[int, ProfileConfig]] = {}
        self.catalog = DeviceCatalog()
        for device in file_config.devices:
            self.catalog.put(device, "file")
        # One change at a time: bulk work yields to the loop between slices, and a concurrent
        # change must not slip in between its checks and its commit.
        self._changing = asyncio.Lock()
        self._restore()

    # -- reading -----------------------------------------------------------------------------

    @property
    def device_adapter(self) -> TypeAdapter[DeviceConfig]:
        """The installed plugins' device models as one union (built once, here)."""
        return self._devices

    @property
    def profile_adapter(self) -> TypeAdapter[ProfileConfig]:
        return self._profiles

    @property
    def config(self) -> GatewayConfig:
        """The file's configuration with what the API added."""
        return self.file_config.model_copy(
            update={
                "devices": list(self.catalog.devices()),
                "profiles": [*self.file_config.profiles, *self.api_profiles.values()],
            }
        )

    def devices(self) -> Iterator[tuple[DeviceConfig, Source]]:
        return self.catalog.entries()

    def device(self, device_id: str) -> tuple[DeviceConfig, Source]:
        found = self.catalog.get(device_id)
        if found is None:
            raise NotFound(f"no device {device_id!r}")
        return found

    def tag_names(self, device_id: str) -> list[str]:
        """The tags a device reads (its own groups' or its profile's)."""
        groups = self._groups_of(self.device(device_id)[0])
        return [tag.name for group in groups for tag in group.tags]

    def write_target(self, device_id: str) -> Target | None:
        """What a write to the device needs: its tags, state and connector (None: no such
        device)."""
        found = self.catalog.get(device_id)
        if found is None:
            return None
        groups = self._groups_of(found[0])
        running = self._runtime.devices.get(device_id)
        return Target(
            device_id,
            {tag.name: tag for group in groups for tag in group.tags},
            DeviceState.DISABLED if running is None else running.status.state,
            None if running is None else running.connector,
        )

    def state(self, device_id: str) -> DeviceState:
        running = self._runtime.devices.get(device_id)
        return DeviceState.DISABLED if running is None else running.status.state

    def status(self, device_id: str) -> DeviceStatus:
        running = self._runtime.devices.get(device_id)
        if running is not None:
            return running.status
        self.device(device_id)
        return DeviceStatus(device_id, state=DeviceState.DISABLED)

    def counts(self) -> dict[str, int]:
        """Devices per state (every state named, zeros included)."""
        counts = dict.fromkeys((state.value for state in DeviceState), 0)
        for running in self._runtime.devices.values():
            counts[running.status.state.value] += 1
        counts[DeviceState.DISABLED.value] = len(self.catalog) - len(self._runtime.devices)
        return counts

    def profiles(self) -> list[tuple[ProfileConfig, Source]]:
        return [(p, "file") for p in self.file_config.profiles] + [
            (p, "api") for p in self.api_profiles.values()
        ]

    def profile(self, profile_id: str) -> tuple[ProfileConfig, Source]:
        found = self._profile_index.get(profile_id)
        if found is None:
            raise NotFound(f"no profile {profile_id!r}")
        source: Source = "file" if profile_id in self._file_profiles else "api"
        return found[1], source

    # -- devices -----------------------------------------------------------------------------

    async def create_devices(
        self, devices: Sequence[DeviceConfig], places: Sequence[str] | None = None
    ) -> None:
        """Create one or many devices, all or nothing; ``places`` name them in problems (by
        default ``devices[i]``, or nothing for a single one)."""
        if places is None:
            places = [""] if len(devices) == 1 else [f"devices[{i}]" for i in range(len(devices))]
        async with self._changing:
            problems: list[ConfigProblem] = []
            seen: dict[str, str] = {}
            for index, (device, where) in enumerate(zip(devices, places, strict=True)):
                taken = self.catalog.taken(device.id) or seen.get(device.id.casefold())
                if taken is not None:
                    raise Conflict(f"{_at(where, 'id')}: a device {taken!r} exists already")
                seen[device.id.casefold()] = device.id
                problems += [_place(p, where) for p in self._check(device)]
                if index % _SLICE == _SLICE - 1:
                    await asyncio.sleep(0)
            if problems:
                raise ConfigError(problems)
            await self._registry.put_devices(devices)
            for index, device in enumerate(devices):
                self.catalog.put(device, "api")
                if device.enabled:
                    self._runtime.add_device(device)
                if index % _SLICE == _SLICE - 1:
                    await asyncio.sleep(0)
            self._apply()
            settle_long_lived()

    async def replace_device(self, device_id: str, device: DeviceConfig) -> DeviceConfig:
        """Replace an API device; a secret sent back masked keeps its stored value."""
        async with self._changing:
            current = self._own_device(device_id)
            if device.id != device_id:
                raise ConfigError([ConfigProblem("id", f"must be {device_id!r}, the device's id")])
            device = self._unmask(device, current)
            problems = self._check(device)
            if problems:
                raise ConfigError(problems)
            await self._registry.put_device(device_id, _document(device))
            self.catalog.put(device, "api")
            self._apply()
            await self._sync(device)
            return device

    async def patch_device(self, device_id: str, changes: dict[str, Any]) -> DeviceConfig:
        """Merge ``changes`` into the device (RFC 7396: objects merge, null removes, lists and
        values replace)."""
        merged = _merge(_document(self._own_device(device_id)), changes)
        try:
            device = self._devices.validate_python(merged)
        except ValidationError as exc:
            raise ConfigError(problems_from(exc, union_at_root=True, plugins=self.plugins)) from exc
        return await self.replace_device(device_id, device)

    async def delete_device(self, device_id: str) -> None:
        async with self._changing:
            self._own_device(device_id)
            await self._registry.delete_device(device_id)
            self.catalog.remove(device_id)
            self._apply()
            if device_id in self._runtime.devices:
                await self._runtime.remove_device(device_id, forget=True)
            if self._store is not None:
                self._store.forget(device_id)

    # -- profiles ----------------------------------------------------------------------------

    async def create_profile(self, profile: ProfileConfig) -> None:
        async with self._changing:
            taken = next(
                (p for p in self._profile_index if p.casefold() == profile.id.casefold()), None
            )
            if taken is not None:
                raise Conflict(f"id: a profile {taken!r} exists already")
            self._check_profile(profile, [])
            await self._registry.put_profile(profile.id, _document(profile))
            self.api_profiles[profile.id] = profile
            self._index_profiles()
            self._apply()

    async def replace_profile(self, profile_id: str, profile: ProfileConfig) -> None:
        async with self._changing:
            self._own_profile(profile_id)
            if profile.id != profile_id:
                raise ConfigError(
                    [ConfigProblem("id", f"must be {profile_id!r}, the profile's id")]
                )
            users = sorted(self.catalog.users_of(profile_id))
            self._check_profile(profile, users)
            await self._registry.put_profile(profile_id, _document(profile))
            self.api_profiles[profile_id] = profile
            self._index_profiles()
            self._apply()
            for index, device_id in enumerate(users):
                await self._sync(self.device(device_id)[0])
                if index % _SLICE == _SLICE - 1:
                    await asyncio.sleep(0)

    async def delete_profile(self, profile_id: str) -> None:
        async with self._changing:
            self._own_profile(profile_id)
            users = sorted(self.catalog.users_of(profile_id))
            if users:
                shown = ", ".join(users[:20]) + (
                    f" and {len(users) - 20} more" if len(users) > 20 else ""
                )
                raise Conflict(f"profile {profile_id!r} is used by {shown}")
            await self._registry.delete_profile(profile_id)
            del self.api_profiles[profile_id]
            self._index_profiles()
            self._apply()

    # -- a desired configuration (pushed to the gateway over MQTT) ----------------------------

    async def reconcile(
        self, profiles: Sequence[ProfileConfig], devices: Sequence[DeviceConfig]
    ) -> dict[str, int]:
        """Make what the API manages exactly ``profiles`` and ``devices``: checked as a whole,
        with the file's, as a file is (problems named ``devices[2].port``), then stored in one
        transaction and applied live, touching only what changed. What the file defines stays.
        Returns how many devices and profiles were added, changed and removed."""
        async with self._changing:
            self._check_desired(profiles, devices)
            current = {d.id: d for d in self.catalog.devices("api")}
            wanted = {d.id: d for d in devices}
            added = [d for d in devices if d.id not in current]
            changed = [d for d in devices if d.id in current and d != current[d.id]]
            removed = [device_id for device_id in current if device_id not in wanted]
            wanted_profiles = {p.id: p for p in profiles}
            put_profiles = [p for p in profiles if self.api_profiles.get(p.id) != p]
            removed_profiles = [p for p in self.api_profiles if p not in wanted_profiles]
            await self._registry.apply(put_profiles, [*added, *changed], removed, removed_profiles)
            self.api_profiles = dict(wanted_profiles)
            self._index_profiles()
            for device_id in removed:
                self.catalog.remove(device_id)
            for device in [*added, *changed]:
                self.catalog.put(device, "api")
            self._apply()
            # Devices of a changed profile run with its old tags until synced.
            touched = {p.id for p in put_profiles}
            changed_ids = {d.id for d in changed}
            profile_users = [
                d
                for d in devices
                if d.profile in touched and d.id in current and d.id not in changed_ids
            ]
            for index, device_id in enumerate(removed):
                if device_id in self._runtime.devices:
                    await self._runtime.remove_device(device_id, forget=True)
                if self._store is not None:
                    self._store.forget(device_id)
                if index % _SLICE == _SLICE - 1:
                    await asyncio.sleep(0)
            for index, device in enumerate([*added, *changed, *profile_users]):
                await self._sync(device)
                if index % _SLICE == _SLICE - 1:
                    await asyncio.sleep(0)
            settle_long_lived()
            return {
                "devices_added": len(added),
                "devices_changed": len(changed),
                "devices_removed": len(removed),
                "profiles_put": len(put_profiles),
                "profiles_removed": len(removed_profiles),
            }

    def _check_desired(
        self, profiles: Sequence[ProfileConfig], devices: Sequence[DeviceConfig]
    ) -> None:
        """The file's profiles and devices with these after them, checked as one file."""
        file = self.file_config
        candidate = file.model_copy(
            update={
                "devices": [*file.devices, *devices],
                "profiles": [*file.profiles, *profiles],
            }
        )
        shift = {"devices": len(file.devices), "profiles": len(file.profiles)}
        problems = []
        for problem in check_references(candidate, self.plugins):
            path = problem.path
            match = _SECTION_AT.match(path)
            if match is not None:
                section, index = match[1], int(match[2]) - shift[match[1]]
                where = f"{section}[{index}]" if index >= 0 else f"the file's {section}"
                path = where + path[match.end() :]
            problems.append(ConfigProblem(path, problem.message))
        if problems:
            raise ConfigError(problems)

    # -- internals ---------------------------------------------------------------------------

    def _groups_of(self, device: DeviceConfig) -> Sequence[GroupBase]:
        if device.groups is not None:
            return device.groups
        return self.profile(device.profile or "")[0].groups

    def _own_device(self, device_id: str) -> DeviceConfig:
        device, source = self.device(device_id)
        if source == "file":
            raise Conflict(f"device {device_id!r} is defined in the configuration file: edit it")
        return device

    def _own_profile(self, profile_id: str) -> ProfileConfig:
        if profile_id in self._file_profiles:
            raise Conflict(f"profile {profile_id!r} is defined in the configuration file: edit it")
        try:
            return self.api_profiles[profile_id]
        except KeyError:
            raise NotFound(f"no profile {profile_id!r}") from None

    def _check(self, device: DeviceConfig) -> list[ConfigProblem]:
        """One device against the profiles it references: the same checks as the file's, at a
        cost that does not grow with the number of devices."""
        problems = check_device(device, "", self._profile_index, self.plugins)
        return [ConfigProblem(p.path.lstrip("."), p.message) for p in problems]

    def _check_profile(self, profile: ProfileConfig, users: Sequence[str]) -> None:
        """A new or changed profile, with every device that uses it."""
        profiles = [p for p in self.api_profiles.values() if p.id != profile.id]
        candidate = self.file_config.model_copy(
            update={
                "devices": [self.device(d)[0] for d in users],
                "profiles": [*self.file_config.profiles, *profiles, profile],
            }
        )
        position = len(candidate.profiles) - 1
        problems = []
        for problem in check_references(candidate, self.plugins):
            path = problem.path
            if path.startswith(f"profiles[{position}]"):
                path = path.removeprefix(f"profiles[{position}]").lstrip(".")
            elif path.startswith("devices["):
                device = users[int(path[len("devices[") : path.index("]")])]
                path = f"device {device}: {path[path.index(']') + 1 :].lstrip('.')}"
            elif path.startswith("profiles["):
                continue  # another profile's old problem, not this change's
            message = _DEVICE_AT.sub(lambda m: f"(device {users[int(m[1])]})", problem.message)
            problems.append(ConfigProblem(path, message))
        if problems:
            raise ConfigError(problems)

    def _index_profiles(self) -> None:
        profiles = [*self.file_config.profiles, *self.api_profiles.values()]
        self._profile_index = {p.id: (i, p) for i, p in enumerate(profiles)}

    def _unmask(self, device: DeviceConfig, current: DeviceConfig) -> DeviceConfig:
        """Secrets sent back as the mask keep their stored values; a mask with nothing stored
        behind it is refused, never stored as the secret."""
        problems: list[ConfigProblem] = []
        document = _restore_secrets(_document(device), _document(current), "", problems)
        if problems:
            raise ConfigError(problems)
        return self._devices.validate_python(document)

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
        """Load what the API created before, in time linear in its size; entries that no
        longer validate (say, the file now defines the same id) are skipped with an error in
        the log, and kept on disk."""
        started = time.perf_counter()
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
        self._index_profiles()
        documents = self._registry.devices()
        if documents:
            log.info("restoring %d device(s) registered over the API", len(documents))
        restored = 0
        for document in documents:
            try:
                device = self._devices.validate_python(document)
                taken = self.catalog.taken(device.id)
                if taken is not None:
                    raise Conflict(f"id {taken!r} is taken (by the file, or the same but for case)")
                problems = self._check(device)
                if problems:
                    raise ConfigError(problems)
            except ValidationError as exc:
                problems = problems_from(exc, union_at_root=True, plugins=self.plugins)
                log.error(
                    "stored device %s is invalid, skipped: %s", document.get("id"), _line(problems)
                )
                continue
            except ConfigError as exc:
                log.error(
                    "stored device %s is invalid, skipped: %s",
                    document.get("id"),
                    _line(exc.problems),
                )
                continue
            except GatewayError as exc:
                log.error("stored device %s is invalid, skipped: %s", document.get("id"), exc)
                continue
            self.catalog.put(device, "api")
            restored += 1
        if documents:
            elapsed = time.perf_counter() - started
            log.info("restored %d of %d device(s) in %.2f s", restored, len(documents), elapsed)
        self._apply()


def _line(problems: Sequence[ConfigProblem]) -> str:
    return "; ".join(f"{p.path}: {p.message}" if p.path else p.message for p in problems)


def _place(problem: ConfigProblem, where: str) -> ConfigProblem:
    """A device's problem as the caller named the device; one found in the profile it uses
    keeps the profile's path and names the device."""
    if problem.path.startswith("profiles[") and where:
        return ConfigProblem(problem.path, f"{problem.message} (device {where})")
    return ConfigProblem(_at(where, problem.path), problem.message)


def _at(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _restore_secrets(new: Any, current: Any, path: str, problems: list[ConfigProblem]) -> Any:
    if isinstance(new, SecretStr) and new.get_secret_value() == MASK:
        if isinstance(current, SecretStr):
            return current
        problems.append(
            ConfigProblem(path, f"{MASK} is the mask of a secret, not a value; send the secret")
        )
        return new
    if isinstance(new, Mapping):
        old = current if isinstance(current, Mapping) else {}
        return {k: _restore_secrets(v, old.get(k), _at(path, k), problems) for k, v in new.items()}
    if isinstance(new, list):
        old_items = current if isinstance(current, list) else []
        return [
            _restore_secrets(
                v, old_items[i] if i < len(old_items) else None, f"{path}[{i}]", problems
            )
            for i, v in enumerate(new)
        ]
    return new


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """JSON merge patch (RFC 7396): objects merge, null removes (back to the default), lists
    and values replace."""
    merged = dict(base)
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged
