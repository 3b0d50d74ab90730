"""python-snap7's S7 server serving ``plc.Memory``, moved by a ticking thread, and optionally
recording every request it serves (one JSON line each) for the tests to count."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import IO, Any

from snap7.datatypes import S7Area
from snap7.server import Server
from snap7.type import SrvArea

from simulators.s7.plc import Memory

__all__ = ["RecordingServer", "SimulatedPlc"]


class RecordingServer(Server):
    """Appends ``{"read": [[area, db, start, count], ...]}`` or ``{"write": ...}`` per request
    (the server's own parsing of it) to ``record`` before serving it."""

    def __init__(self, record: IO[str] | None, lock: threading.Lock) -> None:
        super().__init__(log=False)
        self._record = record
        self._record_lock = lock

    def _handle_read_area(self, request: dict[str, Any], client_address: tuple[str, int]) -> bytes:
        params = request.get("parameters", {})
        specs = params.get("address_specs") or [params.get("address_spec", {})]
        self._write_record({"read": [_spec(s) for s in specs]})
        return super()._handle_read_area(request, client_address)

    def _handle_write_area(self, request: dict[str, Any], client_address: tuple[str, int]) -> bytes:
        spec = request.get("parameters", {}).get("address_spec", {})
        self._write_record({"write": _spec(spec)})
        return super()._handle_write_area(request, client_address)

    def _write_record(self, entry: dict[str, object]) -> None:
        if self._record is not None:
            with self._record_lock:
                self._record.write(json.dumps(entry) + "\n")
                self._record.flush()


def _spec(spec: dict[str, Any]) -> list[int]:
    return [int(spec.get(k, 0)) for k in ("area", "db_number", "start", "count")]


class SimulatedPlc:
    """One PLC: its memory, its server on ``host:port`` (0: a free one)."""

    def __init__(
        self, plc: int, record: IO[str] | None, lock: threading.Lock, bulk_bytes: int = 0
    ) -> None:
        self.memory = Memory(plc, bulk_bytes)
        self.server = RecordingServer(record, lock)
        memory = self.memory
        for area, index, data in (
            (SrvArea.DB, 1, memory.db1),
            (SrvArea.DB, 2, memory.db2),
            (SrvArea.MK, 0, memory.markers),
            (SrvArea.PE, 0, memory.inputs),
            (SrvArea.PA, 0, memory.outputs),
            *([(SrvArea.DB, 100, memory.bulk)] if memory.bulk else []),
        ):
            self.server.register_area(area, index, data)

    def start(self, host: str, port: int) -> int:
        self.server.host = host
        self.server.start(tcp_port=port)
        socket = self.server.server_socket
        assert socket is not None
        return int(socket.getsockname()[1])

    def tick(self, tick: int) -> None:
        # The server reads DB1 and the markers under their locks: never half an update.
        locks = self.server.area_locks
        with locks[S7Area.DB, 1], locks[S7Area.MK, 0], locks[S7Area.PE, 0]:
            self.memory.update(tick)
        if self.memory.bulk:
            with locks[S7Area.DB, 100]:
                self.memory.update_bulk(tick)

    def stop(self) -> None:
        self.server.stop()


def run_ticks(plcs: list[SimulatedPlc], period: float, stop: threading.Event) -> None:
    """Move every PLC's values once per ``period`` until ``stop`` is set."""
    started = time.monotonic()
    while not stop.wait(period):
        tick = int((time.monotonic() - started) / period)
        for plc in plcs:
            plc.tick(tick)


def open_record(path: Path | None) -> IO[str] | None:
    return None if path is None else path.open("a", encoding="utf-8")
