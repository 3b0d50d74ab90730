"""An OPC UA server that answers a Read "too busy" gets it again within the cycle."""

from __future__ import annotations

from typing import Any

import pytest
from asyncua import ua
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaStatusCodeError

from connectors.opcua.config import OpcUaDeviceConfig
from connectors.opcua.connector import OpcUaConnector
from connectors.opcua.security import ClientPki
from gateway.cycle import Cycle


class BusyThenFine:
    """The ``uaclient`` of a session whose server is too busy ``busy`` times, then answers."""

    def __init__(self, busy: int, code: int = StatusCodes.BadServerTooBusy) -> None:
        self.busy = busy
        self.code = code
        self.reads = 0

    async def read(self, params: ua.ReadParameters) -> list[ua.DataValue]:
        self.reads += 1
        if self.reads <= self.busy:
            raise UaStatusCodeError(self.code)  # type: ignore[no-untyped-call]
        return [ua.DataValue(ua.Variant(1.5))]


class Session:
    def __init__(self, uaclient: BusyThenFine) -> None:
        self.uaclient = uaclient


def connector(tmp_path: Any, retries: int = 2) -> OpcUaConnector:
    device = OpcUaDeviceConfig.model_validate(
        {
            "id": "d",
            "type": "opcua",
            "endpoint": "opc.tcp://127.0.0.1:4840",
            "busy_retries": retries,
            "profile": "p",
        }
    )
    return OpcUaConnector(device, [], ClientPki(tmp_path))


@pytest.mark.parametrize("code", [StatusCodes.BadServerTooBusy, StatusCodes.BadTooManyOperations])
async def test_busy_reads_are_retried(tmp_path: Any, code: int) -> None:
    busy = BusyThenFine(2, code)
    cycle = Cycle([], 0)
    values = await connector(tmp_path)._read(Session(busy), ua.ReadParameters(), cycle)  # type: ignore[arg-type]
    assert (busy.reads, cycle.retries, values[0].Value.Value) == (3, 2, 1.5)


async def test_past_the_retries_the_busy_answer_is_raised(tmp_path: Any) -> None:
    busy = BusyThenFine(5)
    cycle = Cycle([], 0)
    with pytest.raises(UaStatusCodeError):
        await connector(tmp_path, retries=1)._read(Session(busy), ua.ReadParameters(), cycle)  # type: ignore[arg-type]
    assert (busy.reads, cycle.retries) == (2, 1)


async def test_other_bad_answers_are_not_retried(tmp_path: Any) -> None:
    busy = BusyThenFine(1, StatusCodes.BadNodeIdUnknown)
    cycle = Cycle([], 0)
    with pytest.raises(UaStatusCodeError):
        await connector(tmp_path)._read(Session(busy), ua.ReadParameters(), cycle)  # type: ignore[arg-type]
    assert (busy.reads, cycle.retries) == (1, 0)
