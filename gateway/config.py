"""The gateway's configuration file: load YAML, expand ${ENV} secrets, validate, resolve profiles.

Every problem is reported with the path of the bad field
(``devices[2].groups[0].tags[5].data_type``) and all of them at once, so one run of
``gateway check-config`` lists everything to fix.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model

from gateway.api.config import ApiConfig
from gateway.devices import DeviceBase, GroupBase, ProfileBase
from gateway.errors import ConfigError, ConfigProblem
from gateway.fleet.config import FleetConfig
from gateway.outbox import OutboxConfig
from gateway.plugins import Plugins, SinkConfigBase, installed
from gateway.writeback import WritesConfig

__all__ = [
    "ENV_REF",
    "READING_BYTES",
    "DeviceConfig",
    "GatewayConfig",
    "GatewaySection",
    "ProfileConfig",
    "RuntimeConfig",
    "check_device",
    "check_references",
    "config_model",
    "device_adapter",
    "device_union",
    "expand_env",
    "format_location",
    "load_config",
    "parse_config",
    "problems_from",
    "profile_adapter",
    "profile_union",
]

DeviceConfig = DeviceBase
ProfileConfig = ProfileBase
_UNION_SECTIONS = ("devices", "profiles", "sinks")

SinkName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z][\w\-]*$")]


class GatewaySection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][\w.\-]*$")]
    data_dir: Path = Path("./data")
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")


class RuntimeConfig(BaseModel):
    """How the runtime buffers and retries for the sinks and restarts devices."""

    # An infinite delay would silently stop retrying or reconnecting.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    buffer_max_mb: float = Field(
        default=32.0,
        ge=0.1,
        le=4096,
        description="Memory per sink for batches waiting to be written; past it the oldest"
        " wait on disk (outbox) or, without the outbox, are dropped and counted",
    )
    write_max_batches: int = Field(default=256, ge=1, description="Batches per sink write")
    retry_min: float = Field(default=0.2, gt=0)
    retry_max: float = Field(default=30.0, gt=0)
    reconnect_min: float = Field(default=1.0, gt=0, description="Device reconnect backoff")
    reconnect_max: float = Field(default=60.0, gt=0)
    status_interval: float = Field(
        default=10.0, gt=0, description="Seconds between refreshes of the retained status"
    )
    degraded_hold: float = Field(
        default=30.0,
        ge=0,
        description="Seconds a device stays degraded after its last failed or busy request",
    )
    shutdown_timeout: float = Field(default=10.0, gt=0, description="Bound on the final flush")
    outbox: OutboxConfig = OutboxConfig()

    @property
    def buffer_max_readings(self) -> int:
        """``buffer_max_mb`` in readings, at ``READING_BYTES`` each."""
        return max(1, int(self.buffer_max_mb * 1024 * 1024 / READING_BYTES))


READING_BYTES = 160
"""Memory of one buffered reading: its tuple, its list slot and its value (measured with
tracemalloc: 145 bytes with an int value, about 170 with a float; tag names are shared)."""


class GatewayConfig(BaseModel):
    """The whole file. Its ``devices``, ``profiles`` and ``sinks`` are unions of the installed
    plugins' models: validate through ``config_model(plugins)`` (``parse_config`` does)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gateway: GatewaySection
    sinks: dict[SinkName, SinkConfigBase] = Field(default_factory=dict)
    runtime: RuntimeConfig = RuntimeConfig()
    api: ApiConfig = ApiConfig()
    writes: WritesConfig = WritesConfig()
    fleet: FleetConfig = FleetConfig()
    profiles: list[ProfileBase] = Field(default_factory=list)
    devices: list[DeviceBase] = Field(default_factory=list)

    def profile(self, profile_id: str) -> ProfileBase:
        for profile in self.profiles:
            if profile.id == profile_id:
                return profile
        raise KeyError(profile_id)

    def groups_of(self, device: DeviceBase) -> Sequence[GroupBase]:
        """The device's own groups, or its profile's (of the same protocol: see
        check_references)."""
        if device.groups is not None:
            return device.groups
        assert device.profile is not None
        return self.profile(device.profile).groups

    def measurement_of(self, device: DeviceBase) -> str | None:
        """The device's measurement, or its profile's; None means the sink's default."""
        if device.measurement is not None or device.profile is None:
            return device.measurement
        return self.profile(device.profile).measurement


def _union(models: Sequence[type[BaseModel]], fallback: type[BaseModel]) -> Any:
    """The discriminated union of the plugins' models (on ``type``)."""
    if not models:
        return fallback
    if len(models) == 1:
        return models[0]
    return Annotated[Union[tuple(models)], Field(discriminator="type")]  # noqa: UP007


@functools.cache
def config_model(plugins: Plugins) -> type[GatewayConfig]:
    """GatewayConfig with the installed plugins' device, profile and sink models."""
    protocols = list(plugins.protocols.values())
    devices = _union([p.device_model for p in protocols], DeviceBase)
    profiles = _union([p.profile_model for p in protocols], ProfileBase)
    sinks = _union([p.config_model for p in plugins.sinks.values()], SinkConfigBase)
    model: type[GatewayConfig] = create_model(
        "GatewayConfig",
        __base__=GatewayConfig,
        sinks=(dict[SinkName, sinks], Field(default_factory=dict)),  # type: ignore[valid-type]
        profiles=(list[profiles], Field(default_factory=list)),  # type: ignore[valid-type]
        devices=(list[devices], Field(default_factory=list)),  # type: ignore[valid-type]
    )
    return model


def device_union(plugins: Plugins) -> Any:
    """The type of one device of any installed protocol (an API body's annotation)."""
    return _union([p.device_model for p in plugins.protocols.values()], DeviceBase)


def profile_union(plugins: Plugins) -> Any:
    return _union([p.profile_model for p in plugins.protocols.values()], ProfileBase)


@functools.cache
def device_adapter(plugins: Plugins) -> TypeAdapter[DeviceBase]:
    """Validates one device document of any installed protocol."""
    adapter: TypeAdapter[DeviceBase] = TypeAdapter(device_union(plugins))
    return adapter


@functools.cache
def profile_adapter(plugins: Plugins) -> TypeAdapter[ProfileBase]:
    adapter: TypeAdapter[ProfileBase] = TypeAdapter(profile_union(plugins))
    return adapter


def _union_tags(plugins: Plugins | None) -> frozenset[str]:
    """The tags pydantic puts in error locations of the plugins' unions: their types."""
    plugins = plugins or installed()
    return frozenset(plugins.protocols) | frozenset(plugins.sinks)


_SECRET = re.compile(r"password|token|secret", re.IGNORECASE)
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(node: Any, path: str, problems: list[ConfigProblem]) -> Any:
    """Replace ${NAME} and ${NAME:-default} in strings, so secrets stay out of files."""
    if isinstance(node, dict):
        return {k: expand_env(v, _join(path, k), problems) for k, v in node.items()}
    if isinstance(node, list):
        return [expand_env(v, f"{path}[{i}]", problems) for i, v in enumerate(node)]
    if isinstance(node, str) and "${" in node:

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            value = os.environ.get(name, default)
            if value is None:
                problems.append(ConfigProblem(path, f"environment variable {name} is not set"))
                return ""
            return value

        return ENV_REF.sub(substitute, node)
    return node


def _join(path: str, key: object) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def format_location(
    loc: tuple[int | str, ...], *, union_at_root: bool = False, plugins: Plugins | None = None
) -> str:
    """pydantic's ('devices', 2, 'groups', 0, 'tags', 5, 'data_type') → devices[2]...data_type.

    The tag pydantic inserts after a discriminated union's index is dropped:
    ('devices', 2, 'opcua', 'endpoint') → devices[2].endpoint, ('sinks', 'plant', 'mqtt', 'host')
    → sinks.plant.host; with ``union_at_root`` (a single
    device or profile validated on its own, as in an API body) also ('opcua', 'endpoint').
    """
    path = ""
    tags = _union_tags(plugins)
    for i, part in enumerate(loc):
        if part == "[key]":  # pydantic's marker for "the key itself", already named
            continue
        if part in tags and (
            (i >= 2 and loc[i - 2] in _UNION_SECTIONS) or (union_at_root and i == 0)
        ):
            continue
        path = _join(path, part)
    return path


def problems_from(
    exc: ValidationError,
    prefix: tuple[int | str, ...] = (),
    *,
    union_at_root: bool = False,
    plugins: Plugins | None = None,
) -> list[ConfigProblem]:
    problems = []
    for error in exc.errors():
        message = error["msg"].removeprefix("Value error, ")
        given = error.get("input")
        secret = any(isinstance(part, str) and _SECRET.search(part) for part in error["loc"])
        if (
            not secret
            and error["type"] not in ("missing", "model_type")
            and isinstance(given, str | int | float | bool)
        ):
            message = f"{message} (got {given!r})"
        loc = prefix + tuple(error["loc"])
        if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc += ("type",)  # the discriminator itself is the bad field
        path = format_location(loc, union_at_root=union_at_root, plugins=plugins)
        problems.append(ConfigProblem(path, message))
    return problems


def check_references(config: GatewayConfig, plugins: Plugins | None = None) -> list[ConfigProblem]:
    """What the schema alone cannot see: ids, profile references, tag clashes, and what each
    protocol plugin checks (read limits, namespaces...)."""
    plugins = plugins or installed()
    problems: list[ConfigProblem] = []
    _duplicates((p.id for p in config.profiles), "profiles", "profile id", problems)
    _duplicates((d.id for d in config.devices), "devices", "device id", problems)
    for p, profile in enumerate(config.profiles):
        where = f"profiles[{p}]"
        problems += _check_groups(profile.groups, where)
        protocol = plugins.protocols.get(profile.type)
        if protocol is None:
            problems.append(_no_plugin(f"{where}.type", profile.type))
            continue
        problems += protocol.check_groups(profile.groups, where, None, "")
    profiles = {profile.id: (p, profile) for p, profile in enumerate(config.profiles)}
    for d, device in enumerate(config.devices):
        problems += check_device(device, f"devices[{d}]", profiles, plugins)
    return problems


def check_device(
    device: DeviceBase,
    where: str,
    profiles: Mapping[str, tuple[int, ProfileBase]],
    plugins: Plugins,
) -> list[ConfigProblem]:
    """One device's references: its plugin, its groups or its profile (``profiles``: id →
    (index, profile)), and what its protocol checks. Costs the same whatever the number of other
    devices, so that the control plane can check a change without the whole configuration."""
    protocol = plugins.protocols.get(device.type)
    if protocol is None:
        return [_no_plugin(_at(where, "type"), device.type)]
    if device.groups is not None:
        return _check_groups(device.groups, where) + protocol.check_groups(
            device.groups, where, device, ""
        )
    found = profiles.get(device.profile or "")
    if found is None:
        known = ", ".join(sorted(profiles)) or "none defined"
        message = f"unknown profile {device.profile!r} ({known})"
        return [ConfigProblem(_at(where, "profile"), message)]
    p, profile = found
    if profile.type != device.type:
        message = (
            f"profile {device.profile!r} is a {profile.type} profile; a {device.type} device"
            f" needs a {device.type} profile"
        )
        return [ConfigProblem(_at(where, "profile"), message)]
    device_where = f" (device {where})" if where else ""
    return protocol.check_groups(profile.groups, f"profiles[{p}]", device, device_where)


def _at(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _no_plugin(path: str, type_: str) -> ConfigProblem:
    return ConfigProblem(path, f"no protocol plugin {type_!r} is installed")


def _duplicates(ids: Iterator[str], section: str, what: str, problems: list[ConfigProblem]) -> None:
    """Ids are unique regardless of case: ``line1`` and ``LINE1`` would be one topic on a
    case-insensitive broker ACL, file system or dashboard."""
    seen: dict[str, str] = {}
    for index, item in enumerate(ids):
        first = seen.get(item.casefold())
        if first is None:
            seen[item.casefold()] = item
        else:
            same = "" if first == item else f" (the same as {first!r} but for case)"
            problems.append(
                ConfigProblem(f"{section}[{index}].id", f"duplicate {what} {item!r}{same}")
            )


def _check_groups(groups: Sequence[GroupBase], where: str) -> list[ConfigProblem]:
    problems = []
    names: set[str] = set()
    group_names: set[str] = set()
    for g, group in enumerate(groups):
        if group.name in group_names:
            problems.append(ConfigProblem(f"{where}.groups[{g}].name", "duplicate group name"))
        group_names.add(group.name)
        for t, tag in enumerate(group.tags):
            if tag.name in names:
                problems.append(
                    ConfigProblem(
                        f"{where}.groups[{g}].tags[{t}].name", f"duplicate tag name {tag.name!r}"
                    )
                )
            names.add(tag.name)
    return problems


def parse_config(
    data: Any, source: str | None = None, plugins: Plugins | None = None
) -> GatewayConfig:
    """Validate an already-loaded document (from YAML or an API body)."""
    plugins = plugins or installed()
    problems: list[ConfigProblem] = []
    data = expand_env(data, "", problems)
    if problems:
        raise ConfigError(problems, source)
    if not isinstance(data, dict):
        raise ConfigError([ConfigProblem("", "the file must be a mapping at the top")], source)
    try:
        config = config_model(plugins).model_validate(data)
    except ValidationError as exc:
        raise ConfigError(problems_from(exc, plugins=plugins), source) from exc
    problems = check_references(config, plugins)
    if problems:
        raise ConfigError(problems, source)
    return config


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys; a file saying two things is refused instead.
    A key may still override one brought in by a merge (``<<: *defaults``)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_config(path: Path, plugins: Plugins | None = None) -> GatewayConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([ConfigProblem("", f"cannot read: {exc.strerror}")], str(path)) from exc
    except UnicodeDecodeError as exc:
        problem = ConfigProblem(
            "", f"not UTF-8 text: byte {exc.object[exc.start]:#04x} at offset {exc.start}"
        )
        raise ConfigError([problem], str(path)) from exc
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no Python objects
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([ConfigProblem(where, f"not valid YAML: {reason}")], str(path)) from exc
    except RecursionError as exc:
        raise ConfigError(
            [ConfigProblem("", "not valid YAML: nested too deeply")], str(path)
        ) from exc
    return parse_config(data, str(path), plugins)
