"""The OPC UA PLC simulator as a process, seen by a plain asyncua client."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.uaerrors import UaError, UaStatusCodeError

from connectors.opcua.nodes import make_node_id
from simulators.opcua.plant import NAMESPACE, bulk_value
from tests.support.gateway import ROOT
from tests.support.opcua import OpcUaSimulator

pytestmark = pytest.mark.integration


@pytest.fixture
def launch_sim(tmp_path: Path) -> Iterator[Callable[..., OpcUaSimulator]]:
    started: list[OpcUaSimulator] = []

    def launch(*args: str) -> OpcUaSimulator:
        sim = OpcUaSimulator(tmp_path / f"sim{len(started)}", *args, port=0)
        started.append(sim)
        return sim.start()

    yield launch
    for sim in started:
        sim.stop()


async def test_values_method_setpoints_and_a_clean_stop(
    launch_sim: Callable[..., OpcUaSimulator],
) -> None:
    sim = launch_sim("--period", "1000", "--nodes", "3")
    client = Client(sim.endpoint, timeout=5)
    await client.connect()
    try:
        index = await client.get_namespace_index(NAMESPACE)
        ids = ["Line1.Filler.Counter", "Line1.Filler.Label", "Bulk.V00002", "Line1.ResetCount"]
        values = await client.read_values([client.get_node(make_node_id(i, index)) for i in ids])
        assert values[0] == 0
        assert values[1] == ua.LocalizedText("idle", "en")
        assert values[2] == bulk_value(2, 0)
        assert values[3] == 0

        setpoint = client.get_node(make_node_id("Line1.Filler.Setpoint", index))
        await setpoint.write_value(ua.Variant(55.5, ua.VariantType.Double))
        assert await setpoint.read_value() == 55.5

        line = client.get_node(make_node_id("Line1", index))
        assert await line.call_method(ua.QualifiedName("Reset", index)) == 1
        assert await line.call_method(ua.QualifiedName("Reset", index)) == 2
        count = client.get_node(make_node_id("Line1.ResetCount", index))
        assert await count.read_value() == 2

        counter = client.get_node(make_node_id("Line1.Filler.Counter", index))
        with pytest.raises(UaStatusCodeError, match=r"BadUserAccessDenied|BadNotWritable"):
            await counter.write_value(ua.Variant(7, ua.VariantType.UInt32))
    finally:
        await client.disconnect()
    assert sim.stop() == 0


async def test_a_login_is_required_when_configured(
    launch_sim: Callable[..., OpcUaSimulator], tmp_path: Path
) -> None:
    sim = launch_sim(
        "--secure", "--pki-dir", str(tmp_path / "pki"), "--username", "op", "--password", "pw"
    )
    assert (tmp_path / "pki" / "server-cert.der").is_file()
    anonymous = Client(sim.endpoint, timeout=5)
    with pytest.raises(UaError, match="No matching endpoints"):
        await anonymous.connect()
    anonymous.disconnect_socket()
    endpoints = await Client(sim.endpoint, timeout=5).connect_and_get_server_endpoints()
    assert {(e.SecurityPolicyUri.rsplit("#", 1)[-1], e.SecurityMode.name) for e in endpoints} == {
        ("Basic256Sha256", "Sign"),
        ("Basic256Sha256", "SignAndEncrypt"),
    }


def test_a_load_above_what_one_process_serves_is_refused() -> None:
    argv = [sys.executable, "-m", "simulators.opcua", "--nodes", "10000", "--period", "1"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "changes/s" in done.stderr
    assert done.stdout == ""
