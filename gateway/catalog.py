"""Every device the gateway knows (from the file and from the API), indexed for the control
plane: by id regardless of case, by label, profile and protocol. Each change and each lookup
costs the same at 10 devices and at 10,000, so that listing and registering never hold the
event loop for long."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from typing import Literal, TypeVar

from gateway.devices import DeviceBase

__all__ = ["DeviceCatalog", "Source"]

Source = Literal["file", "api"]
_Key = TypeVar("_Key")


class DeviceCatalog:
    def __init__(self) -> None:
        self._entries: dict[str, tuple[DeviceBase, Source]] = {}
        self._folded: dict[str, str] = {}
        self._position: dict[str, int] = {}
        self._next = 0
        self._by_label: defaultdict[tuple[str, str], set[str]] = defaultdict(set)
        self._by_profile: defaultdict[str, set[str]] = defaultdict(set)
        self._by_type: defaultdict[str, set[str]] = defaultdict(set)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, device_id: object) -> bool:
        return device_id in self._entries

    def get(self, device_id: str) -> tuple[DeviceBase, Source] | None:
        return self._entries.get(device_id)

    def taken(self, device_id: str) -> str | None:
        """The id already in use that equals ``device_id`` regardless of case, if any."""
        return self._folded.get(device_id.casefold())

    def devices(self, source: Source | None = None) -> Iterator[DeviceBase]:
        for device, where in self._entries.values():
            if source is None or where == source:
                yield device

    def entries(self) -> Iterator[tuple[DeviceBase, Source]]:
        return iter(self._entries.values())

    def users_of(self, profile_id: str) -> set[str]:
        return set(self._by_profile.get(profile_id, ()))

    def put(self, device: DeviceBase, source: Source) -> None:
        """Add a device, or replace the one with its id (which keeps its place in the order)."""
        if device.id in self._entries:
            self._unindex(self._entries[device.id][0])
        else:
            self._position[device.id] = self._next
            self._next += 1
            self._folded[device.id.casefold()] = device.id
        self._entries[device.id] = (device, source)
        self._by_type[device.type].add(device.id)
        if device.profile is not None:
            self._by_profile[device.profile].add(device.id)
        for pair in device.labels.items():
            self._by_label[pair].add(device.id)

    def remove(self, device_id: str) -> None:
        device, _ = self._entries.pop(device_id)
        self._unindex(device)
        del self._folded[device_id.casefold()], self._position[device_id]

    def select(
        self,
        labels: Mapping[str, str] | None = None,
        profile: str | None = None,
        protocol: str | None = None,
    ) -> Iterable[str]:
        """The ids matching every filter given, in the order devices were added."""
        sets: list[set[str]] = [self._by_label.get(pair, set()) for pair in (labels or {}).items()]
        if profile is not None:
            sets.append(self._by_profile.get(profile, set()))
        if protocol is not None:
            sets.append(self._by_type.get(protocol, set()))
        if not sets:
            return self._entries.keys()
        found = set.intersection(*sorted(sets, key=len))
        return sorted(found, key=self._position.__getitem__)

    def _unindex(self, device: DeviceBase) -> None:
        _discard(self._by_type, device.type, device.id)
        if device.profile is not None:
            _discard(self._by_profile, device.profile, device.id)
        for pair in device.labels.items():
            _discard(self._by_label, pair, device.id)


def _discard(index: defaultdict[_Key, set[str]], key: _Key, device_id: str) -> None:
    ids = index.get(key)
    if ids is not None:
        ids.discard(device_id)
        if not ids:
            del index[key]
