"""Node ids and browse paths as written in a config, checked at load time and resolved against
the server's namespace array at every connect (so ``nsu=<uri>`` survives index changes).

Node ids: ``i=85``, ``ns=2;s=Line1.Speed``, ``nsu=urn:plc;s=Line1.Speed``, ``ns=3;g=<uuid>``,
``ns=3;b=<base64>``. Everything after ``s=`` is the identifier, ``;`` and ``=`` included.

Browse paths: browse names separated by ``/`` (``Plant/Line1/Filler/Speed``), each optionally
qualified with a namespace index (``2:Plant``); an unqualified name is in the group's
``namespace`` (a URI). Followed over hierarchical references from the group's start node.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Literal, TypeVar

if TYPE_CHECKING:
    from asyncua import ua

__all__ = [
    "BrowsePath",
    "NodeRef",
    "PathSegment",
    "UnknownNamespace",
    "chunks",
    "make_node_id",
    "parse_browse_path",
    "parse_node_id",
]

T = TypeVar("T")

_MAX_UINT32 = 2**32 - 1
_MAX_NAMESPACE = 65535
_PREFIX = re.compile(r"^(ns|nsu)=([^;]*);")
_KINDS = ("i", "s", "g", "b")
_QUALIFIED = re.compile(r"^(\d+):(.+)$")


def make_node_id(identifier: int | str | uuid.UUID | bytes, namespace: int = 0) -> ua.NodeId:
    """A ``ua.NodeId``, its identifier wrapped in the asyncua types its signature asks for.

    asyncua is imported here, not with the module: checking a config (which parses node ids)
    must not cost asyncua's 25 MB and 0.3 s in a gateway without OPC UA devices."""
    from asyncua import ua

    index = ua.Int16(namespace)
    if isinstance(identifier, bool):
        raise TypeError("a node id identifier is not a bool")
    if isinstance(identifier, int):
        return ua.NodeId(ua.Int32(identifier), index, ua.NodeIdType.Numeric)
    if isinstance(identifier, str):
        return ua.NodeId(ua.String(identifier), index, ua.NodeIdType.String)
    if isinstance(identifier, uuid.UUID):
        return ua.NodeId(ua.Guid(int=identifier.int), index, ua.NodeIdType.Guid)
    return ua.NodeId(ua.ByteString(identifier), index, ua.NodeIdType.ByteString)


@cache
def _hierarchical() -> ua.NodeId:
    from asyncua.ua.object_ids import ObjectIds

    return make_node_id(ObjectIds.HierarchicalReferences)


class UnknownNamespace(LookupError):
    """A namespace URI of the config is not in the server's namespace array."""

    def __init__(self, uri: str) -> None:
        super().__init__(f"namespace {uri} is not on the server")
        self.uri = uri


def _namespace_index(namespace: int | str, namespaces: Sequence[str]) -> int:
    if isinstance(namespace, int):
        return namespace
    try:
        return namespaces.index(namespace)
    except ValueError:
        raise UnknownNamespace(namespace) from None


@dataclass(frozen=True, slots=True)
class NodeRef:
    """A parsed node id whose namespace is an index or a URI."""

    namespace: int | str
    kind: Literal["i", "s", "g", "b"]
    identifier: int | str | uuid.UUID | bytes
    text: str
    """As written in the config, for messages."""

    def resolve(self, namespaces: Sequence[str]) -> ua.NodeId:
        """The node id on a server with this namespace array; raises UnknownNamespace."""
        return make_node_id(self.identifier, _namespace_index(self.namespace, namespaces))

    def __str__(self) -> str:
        return self.text


def parse_node_id(text: str) -> NodeRef:
    """Parse ``[ns=<index>;|nsu=<uri>;]<i|s|g|b>=<identifier>``; ValueError says what is wrong."""
    rest = text.strip()
    namespace: int | str = 0
    prefix = _PREFIX.match(rest)
    if prefix:
        key, value = prefix.groups()
        rest = rest[prefix.end() :]
        if key == "ns":
            if not value.isdigit() or int(value) > _MAX_NAMESPACE:
                raise ValueError(f"namespace index must be 0..{_MAX_NAMESPACE}, not {value!r}")
            namespace = int(value)
        elif not value:
            raise ValueError("'nsu=' needs a namespace URI")
        else:
            namespace = value
    kind, equals, identifier = rest.partition("=")
    if not equals or kind not in _KINDS:
        raise ValueError(
            "expected a node id such as 'ns=2;s=Line1.Speed', 'nsu=<uri>;i=1001' or 'i=85'"
        )
    if not identifier:
        raise ValueError(f"empty identifier after '{kind}='")
    if kind == "i":
        if not identifier.isdigit() or int(identifier) > _MAX_UINT32:
            raise ValueError(f"a numeric identifier is 0..{_MAX_UINT32}, not {identifier!r}")
        return NodeRef(namespace, "i", int(identifier), text)
    if kind == "s":
        return NodeRef(namespace, "s", identifier, text)
    if kind == "g":
        try:
            return NodeRef(namespace, "g", uuid.UUID(identifier), text)
        except ValueError:
            raise ValueError(f"not a GUID: {identifier!r}") from None
    try:
        return NodeRef(namespace, "b", base64.b64decode(identifier, validate=True), text)
    except (binascii.Error, ValueError):
        raise ValueError(f"not base64: {identifier!r}") from None


@dataclass(frozen=True, slots=True)
class PathSegment:
    name: str
    namespace: int | None
    """An explicit namespace index, or None for the group's namespace."""


@dataclass(frozen=True, slots=True)
class BrowsePath:
    segments: tuple[PathSegment, ...]
    text: str

    @property
    def qualified(self) -> bool:
        """Whether every segment names its namespace index (no group namespace needed)."""
        return all(segment.namespace is not None for segment in self.segments)

    def relative_path(
        self, default_namespace: str | None, namespaces: Sequence[str]
    ) -> ua.RelativePath:
        """The path for TranslateBrowsePathsToNodeIds; raises UnknownNamespace."""
        from asyncua import ua

        default = (
            None if default_namespace is None else _namespace_index(default_namespace, namespaces)
        )
        elements = []
        for segment in self.segments:
            index = segment.namespace if segment.namespace is not None else default
            if index is None:
                raise UnknownNamespace("(none: set the group's 'namespace')")
            elements.append(
                ua.RelativePathElement(
                    ReferenceTypeId=_hierarchical(),
                    IsInverse=False,  # type: ignore[arg-type]  # asyncua's Boolean is a bare class
                    IncludeSubtypes=True,  # type: ignore[arg-type]
                    TargetName=ua.QualifiedName(segment.name, index),
                )
            )
        return ua.RelativePath(Elements=elements)

    def __str__(self) -> str:
        return self.text


def parse_browse_path(text: str) -> BrowsePath:
    """Parse ``Name/2:Name/...``; ValueError says what is wrong."""
    parts = text.strip().strip("/").split("/")
    segments = []
    for position, part in enumerate(parts):
        if not part.strip():
            raise ValueError(f"empty browse name at position {position + 1} (a '//' or a blank)")
        qualified = _QUALIFIED.match(part)
        if qualified:
            index = int(qualified.group(1))
            if index > _MAX_NAMESPACE:
                raise ValueError(f"namespace index must be 0..{_MAX_NAMESPACE}, not {index}")
            segments.append(PathSegment(qualified.group(2), index))
        else:
            segments.append(PathSegment(part, None))
    return BrowsePath(tuple(segments), text)


def chunks(items: Sequence[T], limit: int) -> list[Sequence[T]]:
    """``items`` in consecutive slices of at most ``limit`` (0: no limit, one slice).

    How a Read or CreateMonitoredItems call for many nodes respects the server's operation
    limits (MaxNodesPerRead, MaxMonitoredItemsPerCall).
    """
    if limit < 0:
        raise ValueError("limit must be >= 0")
    if not items:
        return []
    if limit == 0 or len(items) <= limit:
        return [items]
    return [items[start : start + limit] for start in range(0, len(items), limit)]
