"""Command line of the OPC UA PLC simulator: ``python -m simulators.opcua --port 0``.

Prints ``READY port=<port>`` on stdout once listening (the only stdout output), logs to
stderr, and exits 0 on SIGTERM or SIGINT (1 if it cannot start, 2 on invalid arguments).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from simulators.cli import add_log_level, bounded_int, positive_float, stop_on_signals
from simulators.opcua.server import MAX_CHANGES_PER_SECOND, PlantServer, SimulatorConfig

logger = logging.getLogger("simulators.opcua")


def build_parser() -> argparse.ArgumentParser:
    """The CLI."""
    parser = argparse.ArgumentParser(
        prog="python -m simulators.opcua",
        description="OPC UA PLC simulator: a filling line (Plant/Line1/Filler, Capper, Conveyor).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default %(default)s)")
    parser.add_argument(
        "--port",
        type=bounded_int(0, 65535),
        default=4840,
        help="TCP port (default %(default)s); 0 picks a free one",
    )
    parser.add_argument(
        "--nodes",
        type=bounded_int(0, 100_000),
        default=0,
        metavar="N",
        help="bulk Double variables Plant/Bulk/V00000.. for benchmarks (default 0)",
    )
    parser.add_argument(
        "--period",
        type=positive_float,
        default=0.5,
        metavar="P",
        help="seconds per tick: every moving value changes once per tick (default 0.5)",
    )
    parser.add_argument(
        "--secure",
        action="store_true",
        help="serve only Basic256Sha256 Sign and SignAndEncrypt endpoints (needs --pki-dir)",
    )
    parser.add_argument("--username", help="require this user (anonymous login is refused)")
    parser.add_argument("--password", help="the user's password")
    parser.add_argument(
        "--pki-dir",
        type=Path,
        help="where the server certificate and key are kept (made on first start)",
    )
    parser.add_argument(
        "--extra-namespaces",
        type=bounded_int(0, 100),
        default=0,
        metavar="K",
        help="register K namespaces before the line's, moving its index (default 0)",
    )
    parser.add_argument(
        "--max-nodes-per-read",
        type=bounded_int(1, 1_000_000),
        default=10000,
        metavar="M",
        help="the MaxNodesPerRead operation limit to advertise (default 10000)",
    )
    parser.add_argument(
        "--alarm-period",
        type=positive_float,
        default=15.0,
        metavar="S",
        help="seconds the Boiler1 temperature alarm stays active, then as long normal, and so"
        " on; active from the start (default 15)",
    )
    add_log_level(parser, "WARNING")
    return parser


async def serve(config: SimulatorConfig) -> int:
    """Run until SIGTERM/SIGINT; 0 on a clean stop, 1 when the server cannot start."""
    stop = stop_on_signals()
    plant = PlantServer(config)
    try:
        port = await plant.start()
    except (OSError, RuntimeError) as exc:
        logger.error("cannot serve on %s:%d: %s", config.host, config.port, exc)
        return 1
    try:
        print(f"READY port={port}", flush=True)
        await plant.run(stop)
        logger.info("stopping")
        return 0
    finally:
        await plant.stop()


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, serve, return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.username is None) != (args.password is None):
        parser.error("--username and --password go together")
    config = SimulatorConfig(
        host=args.host,
        port=args.port,
        nodes=args.nodes,
        period=args.period,
        secure=args.secure,
        username=args.username,
        password=args.password,
        pki_dir=args.pki_dir,
        extra_namespaces=args.extra_namespaces,
        max_nodes_per_read=args.max_nodes_per_read,
        alarm_period=args.alarm_period,
    )
    if args.secure and args.pki_dir is None:
        parser.error("--secure needs --pki-dir")
    if config.changes_per_second > MAX_CHANGES_PER_SECOND:
        parser.error(
            f"--nodes {args.nodes} every {args.period:g} s is {config.changes_per_second:,.0f}"
            f" changes/s; one process serves about {MAX_CHANGES_PER_SECOND}: use a longer"
            " --period or more simulator processes"
        )
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # asyncua logs every request at INFO and its own tracebacks for dropped clients.
    logging.getLogger("asyncua").setLevel(
        max(logging.WARNING, logging.getLevelName(args.log_level))
    )
    return asyncio.run(serve(config))


if __name__ == "__main__":
    sys.exit(main())
