"""Discovery: the variables below a node (node id, browse path, data type, access level), as a
table, as a device/profile YAML block ready to paste into the gateway configuration, or as the
tags the control plane's picker offers (``discover``).

Node ids are printed in the ``nsu=<uri>;...`` form, so the pasted config survives the server
renumbering its namespaces. Properties (HasProperty) and the Server object are skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIdNames, ObjectIds
from asyncua.ua.uaerrors import UaError, UaStatusCodeError
from pydantic import ValidationError

from connectors.opcua.config import OpcUaEndpointConfig
from connectors.opcua.nodes import NodeRef, UnknownNamespace, chunks, make_node_id, parse_node_id
from connectors.opcua.security import ClientPki
from connectors.opcua.session import close_client, describe_error, open_client
from connectors.opcua.values import status_name
from gateway.errors import ConfigError, ConfigProblem, ConnectorError
from gateway.plugins import DiscoveredTag

__all__ = [
    "Variable",
    "browse_variables",
    "discover",
    "render_table",
    "render_yaml",
    "run_browse",
    "suggested_tag",
]

_HIERARCHICAL = make_node_id(ObjectIds.HierarchicalReferences)
_HAS_PROPERTY = make_node_id(ObjectIds.HasProperty)
_SERVER = make_node_id(ObjectIds.Server)
_OBJECTS = "i=85"
_CALLS = 500
"""Nodes per Browse and Read call (well within common operation limits)."""
_BAD_TAG_CHARS = re.compile(r'[/+#"\x00-\x1f]')
_READ, _WRITE = 1, 2  # AccessLevel bits CurrentRead, CurrentWrite


@dataclass(frozen=True, slots=True)
class Variable:
    node_id: str
    """``nsu=<uri>;s=...`` (or ``i=...`` in namespace 0)."""
    path: tuple[str, ...]
    """Browse names from the start node."""
    data_type: str
    access: str
    """``r``, ``w``, ``rw`` or ``-``."""
    array: bool

    @property
    def browse_path(self) -> str:
        return "/".join(self.path)


async def browse_variables(
    client: Client, start: ua.NodeId, depth: int, limit: int | None = None
) -> list[Variable]:
    """Every variable within ``depth`` hierarchical references below ``start``, or the first
    ``limit`` of them (nearest levels first; no deeper level is browsed once there are enough)."""
    namespaces = await client.get_namespace_array()
    found: list[tuple[ua.NodeId, tuple[str, ...]]] = []
    seen = {start}
    frontier: list[tuple[ua.NodeId, tuple[str, ...]]] = [(start, ())]
    for _ in range(depth):
        if not frontier or (limit is not None and len(found) >= limit):
            break
        children: list[tuple[ua.NodeId, tuple[str, ...]]] = []
        for chunk in chunks(frontier, _CALLS):
            results = await _browse(client, [node for node, _ in chunk])
            for (_, path), references in zip(chunk, results, strict=True):
                for ref in references:
                    node = make_node_id(ref.NodeId.Identifier, ref.NodeId.NamespaceIndex)
                    if node in seen or node == _SERVER or ref.ReferenceTypeId == _HAS_PROPERTY:
                        continue
                    seen.add(node)
                    child = (node, (*path, ref.BrowseName.Name or str(node.Identifier)))
                    children.append(child)
                    if ref.NodeClass == ua.NodeClass.Variable:
                        found.append(child)
        frontier = children
    return await _describe(client, found[:limit], namespaces)


async def _browse(
    client: Client, nodes: Sequence[ua.NodeId]
) -> list[list[ua.ReferenceDescription]]:
    """Forward hierarchical references of each node to objects and variables, following
    continuation points."""
    params = ua.BrowseParameters(
        RequestedMaxReferencesPerNode=0,
        NodesToBrowse=[
            ua.BrowseDescription(
                NodeId=node,
                BrowseDirection=ua.BrowseDirection.Forward,
                ReferenceTypeId=_HIERARCHICAL,
                IncludeSubtypes=True,
                NodeClassMask=ua.NodeClass.Object | ua.NodeClass.Variable,
                ResultMask=ua.BrowseResultMask.All,
            )
            for node in nodes
        ],
    )
    results = await client.uaclient.browse(params)
    references = [list(result.References) for result in results]
    pending = [(i, r.ContinuationPoint) for i, r in enumerate(results) if r.ContinuationPoint]
    while pending:
        more = await client.uaclient.browse_next(
            ua.BrowseNextParameters(ContinuationPoints=[point for _, point in pending])
        )
        for (index, _), result in zip(pending, more, strict=True):
            references[index] += result.References
        pending = [
            (i, r.ContinuationPoint)
            for (i, _), r in zip(pending, more, strict=True)
            if r.ContinuationPoint
        ]
    return references


async def _describe(
    client: Client, found: list[tuple[ua.NodeId, tuple[str, ...]]], namespaces: list[str]
) -> list[Variable]:
    attributes = (AttributeIds.DataType, AttributeIds.AccessLevel, AttributeIds.ValueRank)
    values: list[ua.DataValue] = []
    for chunk in chunks(found, _CALLS):
        values += await client.uaclient.read(
            ua.ReadParameters(
                NodesToRead=[
                    ua.ReadValueId(NodeId=node, AttributeId=attribute)
                    for node, _ in chunk
                    for attribute in attributes
                ]
            )
        )
    type_ids = [_value(values[3 * i]) for i in range(len(found))]
    type_names = await _type_names(client, [t for t in type_ids if isinstance(t, ua.NodeId)])
    variables = []
    for i, (node, path) in enumerate(found):
        type_id = type_ids[i]
        access = _value(values[3 * i + 1])
        rank = _value(values[3 * i + 2])
        bits = access if isinstance(access, int) else 0
        variables.append(
            Variable(
                node_id=_portable(node, namespaces),
                path=path,
                data_type=type_names.get(type_id, "?") if isinstance(type_id, ua.NodeId) else "?",
                access=("r" if bits & _READ else "") + ("w" if bits & _WRITE else "") or "-",
                array=isinstance(rank, int) and rank >= 0,
            )
        )
    return variables


async def _type_names(client: Client, type_ids: list[ua.NodeId]) -> dict[ua.NodeId, str]:
    names = {
        t: ObjectIdNames.get(int(t.Identifier), t.to_string())
        for t in type_ids
        if t.NamespaceIndex == 0 and isinstance(t.Identifier, int)
    }
    custom = sorted({t for t in type_ids if t not in names}, key=lambda t: t.to_string())
    for chunk in chunks(custom, _CALLS):
        read = await client.uaclient.read(
            ua.ReadParameters(
                NodesToRead=[
                    ua.ReadValueId(NodeId=t, AttributeId=AttributeIds.BrowseName) for t in chunk
                ]
            )
        )
        for type_id, data in zip(chunk, read, strict=True):
            name = _value(data)
            names[type_id] = (
                name.Name if isinstance(name, ua.QualifiedName) else type_id.to_string()
            )
    return names


def _value(data: ua.DataValue) -> Any:
    if data.StatusCode is not None and not data.StatusCode.is_good():
        return None
    return None if data.Value is None else data.Value.Value


def _portable(node: ua.NodeId, namespaces: list[str]) -> str:
    """``nsu=<uri>;<id>`` for a node outside namespace 0: stable across namespace renumbering."""
    text = node.to_string()
    index = node.NamespaceIndex
    if index == 0 or index >= len(namespaces):
        return text
    return f"nsu={namespaces[index]};" + text.split(";", 1)[1]


def render_table(variables: Sequence[Variable]) -> str:
    """One line per variable: node id, browse path, data type (``[]`` for arrays), access."""
    rows = [("NODE ID", "BROWSE PATH", "DATA TYPE", "ACCESS")] + [
        (v.node_id, v.browse_path, v.data_type + ("[]" if v.array else ""), v.access)
        for v in variables
    ]
    widths = [max(len(row[c]) for row in rows) for c in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True))
        + "  "
        + row[3]
        for row in rows
    )


def render_yaml(
    variables: Sequence[Variable],
    settings: OpcUaEndpointConfig,
    profile_id: str,
    interval: float = 1.0,
) -> str:
    """A ``profiles:`` and ``devices:`` block reading every readable variable by subscription.

    Tag names are the browse paths joined with dots; the password, if any, is left to an
    environment variable (``${OPCUA_PASSWORD}``).
    """
    names: set[str] = set()
    tags = [suggested_tag(v, names) for v in variables if "r" in v.access]
    device: dict[str, Any] = {
        "id": f"{profile_id}-1",
        "type": "opcua",
        "endpoint": settings.endpoint,
    }
    security = settings.security
    if security.policy != "None":
        device["security"] = {
            "policy": security.policy,
            "mode": security.effective_mode,
            **({"trust_on_first_use": True} if security.trust_on_first_use else {}),
        }
    if settings.username is not None:
        device["username"] = settings.username
        device["password"] = "${OPCUA_PASSWORD}"
    device["profile"] = profile_id
    document = {
        "profiles": [
            {
                "id": profile_id,
                "type": "opcua",
                "groups": [{"name": "default", "interval": interval, "tags": tags}],
            }
        ],
        "devices": [device],
    }
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=None, width=1000)


def suggested_tag(variable: Variable, taken: set[str]) -> dict[str, Any]:
    """A tag reading ``variable`` by node id, named after its browse path joined with dots
    (made unique among ``taken``, which it joins); writable when the server lets it be."""
    tag: dict[str, Any] = {"name": _tag_name(variable.path, taken), "node": variable.node_id}
    if "w" in variable.access:
        tag["writable"] = True
    return tag


def _tag_name(path: tuple[str, ...], taken: set[str]) -> str:
    base = _BAD_TAG_CHARS.sub("_", ".".join(path))[:120] or "tag"
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    taken.add(name)
    return name


def run_browse(args: argparse.Namespace) -> int:
    """``gateway browse``: 0 on success, 1 if the server cannot be browsed, 2 on bad options."""
    password = args.password or os.environ.get("OPCUA_PASSWORD")
    try:
        start = parse_node_id(args.node)
        if args.depth < 1:
            raise ValueError("--depth must be at least 1")
        settings = OpcUaEndpointConfig.model_validate(
            {
                "endpoint": args.endpoint,
                "timeout": args.timeout,
                "username": args.username,
                "password": password if args.username is not None else None,
                "security": {
                    "policy": args.policy,
                    "mode": args.mode,
                    "trust_on_first_use": args.trust_on_first_use,
                },
            }
        )
    except (ValueError, ValidationError) as exc:
        print(f"gateway browse: {exc}", file=sys.stderr)
        return 2
    pki = ClientPki(args.data_dir / "opcua" / "pki")
    try:
        variables, start_name = asyncio.run(_browse_endpoint(settings, pki, args.node, args.depth))
    except ConnectorError as exc:
        print(f"gateway browse: {exc}", file=sys.stderr)
        return 1
    if args.yaml:
        profile_id = args.profile_id or _profile_id(start_name)
        print(f"# {len(variables)} variable(s) below {start.text} of {settings.endpoint}")
        print(render_yaml(variables, settings, profile_id), end="")
    else:
        print(render_table(variables))
    return 0


async def discover(
    settings: OpcUaEndpointConfig, pki: ClientPki, start: str | None, depth: int, limit: int
) -> list[DiscoveredTag]:
    """The variables the control plane's picker offers: at most ``limit`` within ``depth``
    levels below ``start`` (default Objects), each with the tag that would read it."""
    node = _start_node(start or _OBJECTS)
    client = await open_client(settings, pki, "discover")
    try:
        namespaces = await client.get_namespace_array()
        try:
            resolved = node.resolve(namespaces)
        except UnknownNamespace as exc:
            raise _bad_start(f"{exc} ({settings.endpoint})") from exc
        try:
            await client.get_node(resolved).read_browse_name()
        except UaStatusCodeError as exc:
            if status_name(exc.code) != "BadNodeIdUnknown":
                raise
            raise _bad_start(f"no node {node.text} on {settings.endpoint}") from exc
        variables = await browse_variables(client, resolved, depth, limit)
    except (OSError, TimeoutError, UaError) as exc:
        raise ConnectorError(describe_error(exc, settings)) from exc
    finally:
        await close_client(client, settings.timeout)
    names: set[str] = set()
    return [
        DiscoveredTag(
            address=v.node_id,
            path=v.path,
            data_type=v.data_type,
            access=v.access,
            array=v.array,
            tag=suggested_tag(v, names),
        )
        for v in variables
    ]


def _start_node(text: str) -> NodeRef:
    try:
        return parse_node_id(text)
    except ValueError as exc:
        raise _bad_start(str(exc)) from exc


def _bad_start(message: str) -> ConfigError:
    return ConfigError([ConfigProblem("start", message)])


async def _browse_endpoint(
    settings: OpcUaEndpointConfig, pki: ClientPki, node: str, depth: int
) -> tuple[list[Variable], str]:
    client = await open_client(settings, pki, "browse")
    try:
        namespaces = await client.get_namespace_array()
        start = parse_node_id(node).resolve(namespaces)
        name = await client.get_node(start).read_browse_name()
        return await browse_variables(client, start, depth), name.Name or "opcua"
    except (OSError, TimeoutError, UaError, LookupError) as exc:
        raise ConnectorError(describe_error(exc, settings)) from exc
    finally:
        await close_client(client, settings.timeout)


def _profile_id(start_name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.\-]+", "-", start_name).strip("-.").lower()
    return cleaned[:60] or "opcua"
