"""The ``gateway`` command: run, check-config."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from gateway.config import GatewayConfig, load_config
from gateway.errors import ConfigError
from gateway.protocols import Sink
from gateway.runtime import Runtime
from gateway.sinks.mqtt import MqttSink

__all__ = ["main"]

log = logging.getLogger("gateway")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the gateway")
    run.add_argument("--config", "-c", type=Path, required=True, help="YAML configuration file")
    run.add_argument("--log-level", help="override gateway.log_level (DEBUG, INFO, ...)")
    check = commands.add_parser("check-config", help="validate configuration files")
    check.add_argument("files", type=Path, nargs="+")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check-config":
        return _check_config(args.files)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    _setup_logging(args.log_level or config.gateway.log_level)
    return asyncio.run(_run(config))


def _check_config(files: Sequence[Path]) -> int:
    failed = 0
    for path in files:
        try:
            config = load_config(path)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            failed += 1
            continue
        print(f"{path}: OK: {_summary(config)}")
    return 1 if failed else 0


def _summary(config: GatewayConfig) -> str:
    tags = sum(len(group.tags) for device in config.devices for group in config.groups_of(device))
    sinks = ["mqtt"] if config.mqtt else []
    return (
        f"gateway {config.gateway.id}, {len(config.devices)} device(s), "
        f"{len(config.profiles)} profile(s), {tags} tag(s), sinks: {', '.join(sinks) or 'none'}"
    )


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # pymodbus logs every timeout and reconnect; the supervisors report state changes once.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


def build_sinks(config: GatewayConfig) -> list[Sink]:
    sinks: list[Sink] = []
    if config.mqtt is not None:
        sinks.append(MqttSink(config.mqtt, config.gateway.id))
    return sinks


async def _run(config: GatewayConfig) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    runtime = Runtime(config, build_sinks(config))
    log.info("gateway %s: starting: %s", config.gateway.id, _summary(config))
    await runtime.run(stop)
    log.info("gateway %s: stopped", config.gateway.id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
