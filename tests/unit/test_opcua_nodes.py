"""Node ids and browse paths from configs, their resolution, and the splitting of calls."""

from __future__ import annotations

import uuid

import pytest
from asyncua import ua

from connectors.opcua.nodes import (
    UnknownNamespace,
    chunks,
    make_node_id,
    parse_browse_path,
    parse_node_id,
)

NAMESPACES = ["http://opcfoundation.org/UA/", "urn:server", "urn:plc"]
GUID = "72962b91-fa75-4ae6-8d28-b404dc7daf63"

# (text, namespace as parsed, identifier as parsed, node id on a server with NAMESPACES)
GOOD = [
    ("i=85", 0, 85, make_node_id(85)),
    ("ns=2;i=1001", 2, 1001, make_node_id(1001, 2)),
    ("ns=2;s=Line1.Speed", 2, "Line1.Speed", make_node_id("Line1.Speed", 2)),
    ("nsu=urn:plc;s=Line1.Speed", "urn:plc", "Line1.Speed", make_node_id("Line1.Speed", 2)),
    ("nsu=urn:server;i=7", "urn:server", 7, make_node_id(7, 1)),
    ('ns=3;s="DB_Press"."Ram;Pos=1"', 3, '"DB_Press"."Ram;Pos=1"', None),
    ("s=NoNamespace", 0, "NoNamespace", make_node_id("NoNamespace", 0)),
    (f"ns=2;g={GUID}", 2, uuid.UUID(GUID), make_node_id(uuid.UUID(GUID), 2)),
    ("ns=2;b=AMr+", 2, b"\x00\xca\xfe", make_node_id(b"\x00\xca\xfe", 2)),
    ("ns=2;i=4294967295", 2, 2**32 - 1, make_node_id(2**32 - 1, 2)),
]


@pytest.mark.parametrize(
    ("text", "namespace", "identifier", "resolved"), GOOD, ids=[g[0] for g in GOOD]
)
def test_node_ids_parse_and_resolve(
    text: str, namespace: int | str, identifier: object, resolved: ua.NodeId | None
) -> None:
    ref = parse_node_id(text)
    assert (ref.namespace, ref.identifier, str(ref)) == (namespace, identifier, text)
    if resolved is not None:
        node = ref.resolve(NAMESPACES)
        assert node == resolved
        assert node.NodeIdType == resolved.NodeIdType


def test_a_namespace_uri_follows_its_index() -> None:
    ref = parse_node_id("nsu=urn:plc;s=Speed")
    assert ref.resolve(NAMESPACES).NamespaceIndex == 2
    assert ref.resolve([*NAMESPACES[:1], "urn:new", "urn:other", "urn:plc"]).NamespaceIndex == 3
    with pytest.raises(UnknownNamespace, match="urn:plc"):
        ref.resolve(NAMESPACES[:2])


BAD = [
    ("", "expected a node id"),
    ("Line1.Speed", "expected a node id"),
    ("ns=2;x=5", "expected a node id"),
    ("ns=two;i=5", "namespace index"),
    ("ns=70000;i=5", "namespace index"),
    ("nsu=;s=A", "needs a namespace URI"),
    ("ns=2;i=-1", "numeric identifier"),
    ("ns=2;i=4294967296", "numeric identifier"),
    ("ns=2;i=abc", "numeric identifier"),
    ("ns=2;s=", "empty identifier"),
    ("ns=2;g=not-a-guid", "not a GUID"),
    ("ns=2;b=@@@", "not base64"),
]


@pytest.mark.parametrize(("text", "message"), BAD, ids=[b[0] or "empty" for b in BAD])
def test_bad_node_ids_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_node_id(text)


def test_browse_paths_qualify_names_with_the_group_namespace() -> None:
    path = parse_browse_path("Plant/1:Line1/Filler/Speed")
    assert [(s.name, s.namespace) for s in path.segments] == [
        ("Plant", None),
        ("Line1", 1),
        ("Filler", None),
        ("Speed", None),
    ]
    assert not path.qualified
    relative = path.relative_path("urn:plc", NAMESPACES)
    assert [(e.TargetName.Name, e.TargetName.NamespaceIndex) for e in relative.Elements] == [
        ("Plant", 2),
        ("Line1", 1),
        ("Filler", 2),
        ("Speed", 2),
    ]
    assert all(not e.IsInverse and e.IncludeSubtypes for e in relative.Elements)
    with pytest.raises(UnknownNamespace):
        path.relative_path(None, NAMESPACES)
    with pytest.raises(UnknownNamespace):
        path.relative_path("urn:gone", NAMESPACES)


def test_fully_qualified_paths_need_no_namespace() -> None:
    path = parse_browse_path("/2:Plant/2:Speed/")
    assert path.qualified
    assert [e.TargetName.Name for e in path.relative_path(None, NAMESPACES).Elements] == [
        "Plant",
        "Speed",
    ]


@pytest.mark.parametrize("text", ["", "Plant//Speed", "Plant/ /Speed", "70000:Plant"])
def test_bad_browse_paths(text: str) -> None:
    with pytest.raises(ValueError, match=r"empty browse name|namespace index"):
        parse_browse_path(text)


@pytest.mark.parametrize(
    ("count", "limit", "sizes"),
    [
        (0, 100, []),
        (1, 0, [1]),
        (26, 0, [26]),
        (26, 26, [26]),
        (26, 7, [7, 7, 7, 5]),
        (27, 1, [1] * 27),
        (10000, 1000, [1000] * 10),
        (10001, 1000, [1000] * 10 + [1]),
    ],
)
def test_reads_are_split_by_max_nodes_per_read(count: int, limit: int, sizes: list[int]) -> None:
    items = list(range(count))
    split = chunks(items, limit)
    assert [len(c) for c in split] == sizes
    assert [i for c in split for i in c] == items  # every node once, in order


def test_a_negative_limit_is_an_error() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        chunks([1], -1)
