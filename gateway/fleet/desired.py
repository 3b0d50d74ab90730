"""A desired configuration pushed to one gateway: its document, checks and fingerprint.

The document (JSON, on ``{prefix}/{gateway}/config/desired``, retained) is the part of a
configuration a fleet manages, the devices and profiles the API would otherwise register::

    {"version": 7, "profiles": [...], "devices": [...]}

Secrets never travel in it: a secret field (a password) must be an ``${ENV}`` reference, which
the gateway fills from its own environment, as it does for its file.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import SecretStr, TypeAdapter, ValidationError

from gateway.config import (
    DeviceConfig,
    ProfileConfig,
    expand_env,
    problems_from,
)
from gateway.errors import ConfigError, ConfigProblem
from gateway.plugins import Plugins

__all__ = ["DesiredConfig", "fingerprint", "parse_desired"]

_KEYS = frozenset(("version", "profiles", "devices"))
_WHOLE_REF = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*\}$")


@dataclass(frozen=True, slots=True)
class DesiredConfig:
    version: int | str
    fingerprint: str
    """sha256 of the document as sent (canonical JSON), before the environment fills it."""
    profiles: list[ProfileConfig]
    devices: list[DeviceConfig]


def fingerprint(document: Any) -> str:
    return hashlib.sha256(orjson.dumps(document, option=orjson.OPT_SORT_KEYS)).hexdigest()


def parse_desired(
    payload: bytes,
    plugins: Plugins,
    devices: TypeAdapter[DeviceConfig],
    profiles: TypeAdapter[ProfileConfig],
) -> DesiredConfig:
    """The desired configuration in ``payload``, or ConfigError naming every problem."""
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise ConfigError([ConfigProblem("", f"not JSON: {exc}")]) from None
    if not isinstance(document, dict):
        raise ConfigError([ConfigProblem("", "must be an object")])
    problems = [ConfigProblem(key, "unknown key") for key in sorted(set(document) - _KEYS)]
    version = document.get("version")
    if isinstance(version, bool) or not isinstance(version, int | str) or version == "":
        problems.append(ConfigProblem("version", "required: a number or a text"))
    for section in ("profiles", "devices"):
        if not isinstance(document.get(section, []), list):
            problems.append(ConfigProblem(section, "must be a list"))
    if problems:
        raise ConfigError(problems)
    expanded = expand_env(document, "", problems)
    if problems:
        raise ConfigError(problems)
    parsed_profiles = _validate(expanded.get("profiles", []), "profiles", profiles, plugins)
    parsed_devices = _validate(expanded.get("devices", []), "devices", devices, plugins)
    problems = _literal_secrets(parsed_devices, document.get("devices", []), "devices")
    problems += _literal_secrets(parsed_profiles, document.get("profiles", []), "profiles")
    if problems:
        raise ConfigError(problems)
    assert isinstance(version, int | str)
    return DesiredConfig(version, fingerprint(document), parsed_profiles, parsed_devices)


def _validate(items: list[Any], section: str, adapter: TypeAdapter[Any], plugins: Plugins) -> Any:
    problems: list[ConfigProblem] = []
    parsed = []
    for index, item in enumerate(items):
        try:
            parsed.append(adapter.validate_python(item))
        except ValidationError as exc:
            for problem in problems_from(exc, union_at_root=True, plugins=plugins):
                path = f"{section}[{index}]" + (f".{problem.path}" if problem.path else "")
                problems.append(ConfigProblem(path, problem.message))
    if problems:
        raise ConfigError(problems)
    return parsed


def _literal_secrets(models: list[Any], raw: list[Any], section: str) -> list[ConfigProblem]:
    """Every secret set in ``models`` must come from a whole ``${ENV}`` reference in ``raw``."""
    problems = []
    for index, (model, document) in enumerate(zip(models, raw, strict=True)):
        for path in _secret_paths(model.model_dump(mode="python")):
            value: Any = document
            for key in path:
                if isinstance(value, dict):
                    value = value.get(key)
                elif isinstance(value, list) and isinstance(key, int) and key < len(value):
                    value = value[key]
                else:
                    value = None
            if not (isinstance(value, str) and _WHOLE_REF.match(value)):
                where = f"{section}[{index}]" + "".join(
                    f"[{k}]" if isinstance(k, int) else f".{k}" for k in path
                )
                problems.append(
                    ConfigProblem(
                        where,
                        "a secret must be an ${ENV} reference here: secrets never travel"
                        " over MQTT (set it in the gateway's environment)",
                    )
                )
    return problems


def _secret_paths(node: Any, path: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    if isinstance(node, SecretStr):
        return [path]
    if isinstance(node, dict):
        return [p for key, value in node.items() for p in _secret_paths(value, (*path, key))]
    if isinstance(node, list | tuple):
        return [p for i, value in enumerate(node) for p in _secret_paths(value, (*path, i))]
    return []
