"""One S7 connection through python-snap7's asyncio client (no thread, no blocking call).

python-snap7 3.x's ``AsyncClient`` does the ISO-on-TCP/COTP connection and the PDU
negotiation; its ``read_multi_vars`` reads one variable per request, so the multi-variable
read that coalescing needs is sent here, built by its ``S7Protocol`` and answered per variable
(a refused variable does not fail the others). Polls and writes take turns on ``lock``.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Sequence

from snap7.async_client import AsyncClient
from snap7.error import S7ConnectionError, S7Error, S7ProtocolError, S7TimeoutError
from snap7.s7protocol import get_return_code_description
from snap7.type import Area as SnapArea
from snap7.type import Parameter

from connectors.s7.address import Area
from connectors.s7.config import S7DeviceConfig
from gateway.errors import ConnectorError

__all__ = ["Refused", "S7Link", "Variable"]

_OK = 0xFF
_BIT_LENGTH = 0x04
"""Transport size of an answer whose length is given in bits (bytes otherwise)."""

Variable = tuple[Area, int, int, int]
"""Area, DB number, first byte, length in bytes."""


class Refused(Exception):
    """The PLC answered, but refused the request or the variable (the reason is its words)."""


class S7Link:
    def __init__(self, device: S7DeviceConfig) -> None:
        self.device = device
        self.lock = asyncio.Lock()
        self._client: AsyncClient | None = None
        self.pdu = device.pdu_size
        """The PDU size the PLC agreed to (known once connected)."""

    @property
    def connected(self) -> bool:
        return self._client is not None

    async def connect(self) -> None:
        """Open the connection and negotiate the PDU size; ConnectorError if impossible."""
        device = self.device
        client = AsyncClient()
        client.set_param(Parameter.PDURequest, device.pdu_size)
        rack, slot = device.rack, device.slot
        if device.local_tsap is not None and device.remote_tsap is not None:
            # LOGO!/S7-200: the client derives the remote TSAP from type, rack and slot.
            client.local_tsap = device.local_tsap
            client.set_connection_type(device.remote_tsap >> 8)
            rack, slot = (device.remote_tsap & 0xFF) >> 5, device.remote_tsap & 0x1F
        try:
            async with asyncio.timeout(device.timeout):
                await client.connect(device.host, rack, slot, device.port)
        except (S7Error, OSError, TimeoutError) as exc:
            await _quietly_disconnect(client)
            reason = "no answer in time" if isinstance(exc, TimeoutError) else str(exc)
            raise ConnectorError(f"cannot connect to {device.address}: {reason}") from exc
        self._client = client
        self.pdu = client.get_pdu_length()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await _quietly_disconnect(client)

    async def read(self, variables: Sequence[Variable]) -> list[bytes | Refused]:
        """One multi-variable read: each variable's bytes, or why the PLC refused it. Raises
        Refused when the whole request is refused, ConnectorError when the link is lost."""
        client = self._live()
        protocol = client.protocol
        request = protocol.build_multi_read_request(
            [(int(area), db, start, size) for area, db, start, size in variables]
        )
        expected = struct.unpack_from(">H", request, 4)[0]
        response = await self._exchange(client, request, expected)
        return _variables(response.get("raw_data", b""), len(variables))

    async def write(self, area: Area, db: int, start: int, data: bytes) -> None:
        """Write bytes; Refused if the PLC says no, ConnectorError if the link is lost. The
        caller holds ``lock``."""
        client = self._live()
        try:
            async with asyncio.timeout(self.device.timeout):
                await client.write_area(SnapArea(int(area)), db, start, bytearray(data))
        except S7ProtocolError as exc:
            raise Refused(str(exc)) from exc
        except (S7ConnectionError, S7TimeoutError, OSError, TimeoutError) as exc:
            await self.close()
            raise ConnectorError(f"{self.device.address}: write failed: {_reason(exc)}") from exc

    def _live(self) -> AsyncClient:
        if self._client is None:
            raise ConnectorError(f"not connected to {self.device.address}")
        return self._client

    async def _exchange(
        self, client: AsyncClient, request: bytes, expected: int
    ) -> dict[str, object]:
        connection = client.connection
        if connection is None:
            await self.close()
            raise ConnectorError(f"not connected to {self.device.address}")
        try:
            async with asyncio.timeout(self.device.timeout):
                await connection.send_data(request)
                while True:
                    response: dict[str, object] = client.protocol.parse_response(
                        await connection.receive_data()
                    )
                    if response.get("sequence") == expected:
                        return response
                    # An answer to an earlier request that timed out: not this one's.
        except S7ProtocolError as exc:
            raise Refused(str(exc)) from exc
        except (S7ConnectionError, S7TimeoutError, OSError, TimeoutError) as exc:
            # Mid-answer, the stream's framing is lost: only a new connection is safe.
            await self.close()
            raise ConnectorError(f"{self.device.address}: {_reason(exc)}") from exc


def _variables(raw: object, count: int) -> list[bytes | Refused]:
    """Each variable of a read's answer: return code, transport size, length, data, and a
    fill byte after an odd length (except after the last)."""
    if not isinstance(raw, bytes | bytearray):
        raise Refused("an answer without data")
    results: list[bytes | Refused] = []
    offset = 0
    for index in range(count):
        if offset + 4 > len(raw):
            raise Refused(f"the answer ends before variable {index + 1} of {count}")
        code, transport, length = (
            raw[offset],
            raw[offset + 1],
            (raw[offset + 2] << 8) | raw[offset + 3],
        )
        offset += 4
        if code != _OK:
            results.append(Refused(f"{get_return_code_description(code)} (0x{code:02X})"))
            continue
        size = length // 8 if transport == _BIT_LENGTH else length
        if offset + size > len(raw):
            raise Refused(f"variable {index + 1} of {count} is cut short")
        results.append(bytes(raw[offset : offset + size]))
        offset += size + (size & 1 if index < count - 1 else 0)
    return results


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | S7TimeoutError):
        return "no answer in time"
    return str(exc) or type(exc).__name__


async def _quietly_disconnect(client: AsyncClient) -> None:
    try:
        async with asyncio.timeout(1.0):
            await client.disconnect()
    except (S7Error, OSError, TimeoutError):
        pass  # closing a connection that is already gone
