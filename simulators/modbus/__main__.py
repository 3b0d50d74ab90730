"""Command line of the Modbus PLC simulator: ``python -m simulators.modbus --port 0 --units 3``.

Prints ``READY port=<port>`` on stdout once listening (with ``--ports N``, followed by
`` ports=<p1>,<p2>,...``; with ``--serial PATH``, ``READY serial=PATH``; the only stdout
output), logs to stderr, and exits 0 on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from simulators.cli import add_log_level, bounded_int, positive_float, stop_on_signals
from simulators.modbus.machine import MAX_BULK_REGISTERS
from simulators.modbus.server import Simulator, SimulatorConfig

logger = logging.getLogger("simulators.modbus")

MAX_UNIT = 247


def parse_units(text: str) -> tuple[int, ...]:
    """``N`` means units 1..N; a comma list (``1,5,9`` or ``7,``) means exactly those."""
    try:
        if "," in text:
            units = tuple(int(part) for part in text.split(",") if part.strip())
        else:
            units = tuple(range(1, int(text) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a unit count or list: {text!r}") from None
    if not units or len(set(units)) != len(units) or not all(1 <= u <= MAX_UNIT for u in units):
        raise argparse.ArgumentTypeError(f"units must be distinct and within 1..{MAX_UNIT}")
    return units


def build_parser() -> argparse.ArgumentParser:
    """The CLI."""
    parser = argparse.ArgumentParser(
        prog="python -m simulators.modbus",
        description="Modbus TCP PLC simulator: one moving machine per unit id.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default %(default)s)")
    parser.add_argument(
        "--port",
        type=bounded_int(0, 65535),
        default=5020,
        help="TCP port (default %(default)s); 0 picks a free one",
    )
    parser.add_argument(
        "--units", type=parse_units, default=(1,), help="N for units 1..N, or a list: 1,5,9"
    )
    parser.add_argument(
        "--bulk-registers",
        type=bounded_int(0, MAX_BULK_REGISTERS),
        default=0,
        metavar="M",
        help="holding and input registers 1000..1000+M-1 (default 0)",
    )
    parser.add_argument(
        "--framer",
        choices=("socket", "rtu"),
        default="socket",
        help="socket: Modbus TCP (default); rtu: RTU frames over TCP",
    )
    parser.add_argument(
        "--record", type=Path, metavar="FILE", help="append one JSON line per served read"
    )
    parser.add_argument(
        "--period", type=positive_float, default=0.1, help="seconds per tick (default 0.1)"
    )
    parser.add_argument(
        "--ports",
        type=bounded_int(1, 1000),
        default=1,
        metavar="N",
        help="listen on N ports serving the same units: port, port+1, ... (default 1)",
    )
    parser.add_argument(
        "--busy-every",
        type=bounded_int(0, 1_000_000),
        default=0,
        metavar="N",
        help="answer every Nth read of a unit with exception 6, server busy (default 0: never)",
    )
    parser.add_argument(
        "--busy-units",
        type=parse_units,
        default=(),
        metavar="UNITS",
        help="the units --busy-every applies to: N for 1..N, or a list (default: all)",
    )
    parser.add_argument(
        "--no-mask-write",
        action="store_true",
        help="answer fc 22 (mask write register) with exception 1, as devices without it do",
    )
    serial = parser.add_argument_group("serial line (Modbus RTU on a serial device, no TCP)")
    serial.add_argument(
        "--serial", metavar="PATH", help="serve RTU on this device, e.g. one end of a socat pair"
    )
    serial.add_argument("--baudrate", type=bounded_int(300, 4_000_000), default=19200)
    serial.add_argument("--parity", choices=("N", "E", "O"), default="N")
    serial.add_argument("--stopbits", type=int, choices=(1, 2), default=1)
    serial.add_argument(
        "--garble-every",
        type=bounded_int(0, 1_000_000),
        default=0,
        metavar="N",
        help="flip a CRC byte of every Nth answer of a faulty unit (default 0: never)",
    )
    serial.add_argument(
        "--truncate-every",
        type=bounded_int(0, 1_000_000),
        default=0,
        metavar="N",
        help="cut every Nth answer of a faulty unit short (default 0: never)",
    )
    serial.add_argument(
        "--fault-units",
        type=parse_units,
        default=(),
        metavar="UNITS",
        help="the units the faults apply to: N for 1..N, or a list (default: all)",
    )
    add_log_level(parser, "INFO")
    return parser


async def serve(config: SimulatorConfig) -> int:
    """Run until SIGTERM/SIGINT; 0 on a clean stop, 1 when the server cannot start."""
    stop = stop_on_signals()
    simulator = Simulator(config)
    try:
        try:
            ports = await simulator.start()
        except (OSError, RuntimeError) as exc:
            where = config.serial or f"{config.host}:{config.port}"
            logger.error("cannot serve on %s: %s", where, exc)
            return 1
        if config.serial is not None:
            print(f"READY serial={config.serial}", flush=True)
        else:
            extra = f" ports={','.join(map(str, ports))}" if len(ports) > 1 else ""
            print(f"READY port={ports[0]}{extra}", flush=True)
        await stop.wait()
        logger.info("stopping")
        return 0
    finally:
        await simulator.stop()


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, serve, return the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    config = SimulatorConfig(
        host=args.host,
        port=args.port,
        units=args.units,
        bulk_registers=args.bulk_registers,
        framer=args.framer,
        record=args.record,
        period=args.period,
        ports=args.ports,
        busy_every=args.busy_every,
        busy_units=args.busy_units,
        mask_write=not args.no_mask_write,
        serial=args.serial,
        baudrate=args.baudrate,
        parity=args.parity,
        stopbits=args.stopbits,
        garble_every=args.garble_every,
        truncate_every=args.truncate_every,
        fault_units=args.fault_units,
    )
    return asyncio.run(serve(config))


if __name__ == "__main__":
    sys.exit(main())
