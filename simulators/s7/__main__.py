"""Command line of the S7 PLC simulator: ``python -m simulators.s7 --port 0``.

Prints ``READY port=<port>`` on stdout once listening (with ``--plcs N``, followed by
`` ports=<p1>,<p2>,...``: one PLC per port; the only stdout output), logs to stderr, and exits
0 on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import threading
from pathlib import Path

from simulators.cli import add_log_level, bounded_int, positive_float, stop_on_signals
from simulators.s7.server import SimulatedPlc, open_record, run_ticks

logger = logging.getLogger("simulators.s7")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m simulators.s7",
        description="Siemens S7 PLC simulator (S7comm on ISO-on-TCP, python-snap7's server).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default %(default)s)")
    parser.add_argument(
        "--port",
        type=bounded_int(0, 65535),
        default=1102,
        help="TCP port (default %(default)s; PLCs use 102); 0 picks a free one",
    )
    parser.add_argument(
        "--plcs",
        type=bounded_int(1, 200),
        default=1,
        metavar="N",
        help="N PLCs, one per port: port, port+1, ... (free ones with --port 0); PLC k has k"
        " in its values (default 1)",
    )
    parser.add_argument(
        "--bulk-bytes",
        type=bounded_int(0, 65535),
        default=0,
        metavar="M",
        help="DB100 of M bytes for load tests: byte i holds i mod 256, DBD0 the tick (default 0)",
    )
    parser.add_argument(
        "--record", type=Path, metavar="FILE", help="append one JSON line per served request"
    )
    parser.add_argument(
        "--period", type=positive_float, default=0.1, help="seconds per tick (default 0.1)"
    )
    add_log_level(parser, "INFO")
    return parser


async def serve(args: argparse.Namespace) -> int:
    stop = stop_on_signals()
    lock = threading.Lock()
    try:
        record = open_record(args.record)
    except OSError as exc:
        logger.error("cannot open the record file: %s", exc)
        return 1
    plcs = [SimulatedPlc(k + 1, record, lock, args.bulk_bytes) for k in range(args.plcs)]
    ports = []
    try:
        for k, plc in enumerate(plcs):
            ports.append(plc.start(args.host, 0 if args.port == 0 else args.port + k))
    except Exception as exc:  # the server says why it cannot listen
        logger.error("cannot listen on %s: %s", args.host, exc)
        for plc in plcs:
            plc.stop()
        return 1
    ticking = threading.Event()
    ticker = threading.Thread(target=run_ticks, args=(plcs, args.period, ticking), daemon=True)
    ticker.start()
    extra = f" ports={','.join(map(str, ports))}" if len(ports) > 1 else ""
    print(f"READY port={ports[0]}{extra}", flush=True)
    logger.info("S7 simulator: %d PLC(s) on %s port(s) %s", len(plcs), args.host, ports)
    await stop.wait()
    ticking.set()
    for plc in plcs:
        plc.stop()
    if record is not None:
        record.close()
    return 0


def main() -> None:
    args = build_parser().parse_args()
    logging.basicConfig(
        level=args.log_level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("snap7").setLevel(logging.WARNING)
    sys.exit(asyncio.run(serve(args)))


if __name__ == "__main__":
    main()
