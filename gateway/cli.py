"""The ``gateway`` command: run, check-config, demo, watch, fleet, browse."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from gateway.assembly import Gateway
from gateway.config import GatewayConfig, load_config
from gateway.errors import ConfigError, GatewayError
from gateway.plugins import Plugins, installed
from gateway.watch import watch

__all__ = ["main"]

log = logging.getLogger("gateway")


def _parser(plugins: Plugins) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the gateway")
    run.add_argument("--config", "-c", type=Path, required=True, help="YAML configuration file")
    run.add_argument("--log-level", help="override gateway.log_level (DEBUG, INFO, ...)")
    run.add_argument("--api-host", help="override api.host (default 127.0.0.1)")
    run.add_argument("--api-port", type=int, help="override api.port (default 8000)")
    check = commands.add_parser("check-config", help="validate configuration files")
    check.add_argument("files", type=Path, nargs="+")
    demo = commands.add_parser("demo", help="run the simulator, a broker and the gateway")
    demo.add_argument("--config", "-c", type=Path, default=Path("config/gateway.yaml"))
    demo.add_argument("--workdir", type=Path, default=Path("demo-data"), help="logs and state")
    demo.add_argument("--api-port", type=int, default=8000, help="page and API (default 8000)")
    watch = commands.add_parser("watch", help="print the messages on MQTT topics")
    watch.add_argument("topics", nargs="*", default=["#"], help="topic filters (default #)")
    watch.add_argument("--host", default="127.0.0.1")
    watch.add_argument("--port", type=int, default=1883)
    watch.add_argument("--count", type=int, help="stop after this many messages")
    fleet = commands.add_parser(
        "fleet", help="list the gateways on a broker; push a desired configuration"
    )
    fleet.add_argument("--broker", default="127.0.0.1:1883", help="host:port (default %(default)s)")
    fleet.add_argument("--prefix", default="gateway", help="the sinks' topic_prefix")
    fleet.add_argument("--json", action="store_true", help="JSON for scripts")
    fleet.add_argument("--wait", type=float, default=10.0, help="seconds to wait (default 10)")
    fleet.add_argument("--username", help="MQTT user (password: FLEET_MQTT_PASSWORD)")
    actions = fleet.add_subparsers(dest="fleet_command")
    push = actions.add_parser("push", help="publish (retained) and wait for the reports")
    push.add_argument("gateways", nargs="+", metavar="GATEWAY", help="gateway id(s)")
    push.add_argument("file", type=Path, help="YAML or JSON: version, profiles, devices")
    for name, provider in plugins.commands().items():
        provider.add_arguments(commands.add_parser(name, help=provider.command_help))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        plugins = installed()
    except GatewayError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    args = _parser(plugins).parse_args(argv)
    if args.command == "check-config":
        return _check_config(args.files)
    if args.command == "fleet":
        return _fleet(args)
    if args.command == "watch":
        return watch(args.host, args.port, args.topics, args.count)
    provider = plugins.commands().get(args.command)
    if provider is not None:
        _setup_logging("WARNING")
        return provider.run_command(args)
    if args.command == "demo":
        from gateway.demo import run_demo  # its process tools are only for the demo

        _setup_logging("INFO")
        args.workdir.mkdir(parents=True, exist_ok=True)
        try:
            return asyncio.run(run_demo(args.config, args.workdir, _serve, args.api_port))
        except GatewayError as exc:
            print(f"demo: {exc}", file=sys.stderr)
            return 1
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    _setup_logging(args.log_level or config.gateway.log_level)
    overrides = {"host": args.api_host, "port": args.api_port}
    if any(v is not None for v in overrides.values()):
        api = config.api.model_copy(update={k: v for k, v in overrides.items() if v is not None})
        config = config.model_copy(update={"api": api})
    try:
        return asyncio.run(_run(config))
    except GatewayError as exc:
        log.error("%s", exc)
        return 1


def _fleet(args: argparse.Namespace) -> int:
    import os

    from gateway.fleet import view
    from gateway.sinks.mqtt_config import parse_address

    try:
        broker = parse_address(args.broker)
    except ValueError as exc:
        print(f"fleet: --broker {args.broker!r}: {exc}", file=sys.stderr)
        return 2
    password = os.environ.get("FLEET_MQTT_PASSWORD")
    try:
        if args.fleet_command == "push":
            try:
                document = view.load_desired(args.file)
            except (OSError, ValueError, yaml.YAMLError) as exc:
                print(f"fleet push: {exc}", file=sys.stderr)
                return 2
            reports = view.push_desired(
                broker, args.prefix, args.gateways, document, args.wait, args.username, password
            )
            return view.print_pushed(reports, args.json)
        seen = view.fleet_view(broker, args.prefix, args.wait, args.username, password)
    except ConnectionError as exc:
        print(f"fleet: {exc}", file=sys.stderr)
        return 1
    view.print_fleet(seen, args.json)
    return 0


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
    sinks = [f"{name} ({sink.type})" for name, sink in config.sinks.items()]
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


async def _run(config: GatewayConfig) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await _serve(config, stop)
    return 0


async def _serve(config: GatewayConfig, stop: asyncio.Event) -> None:
    """Run the gateway until ``stop`` is set, with its control plane unless that is off. If
    either fails, the other is stopped and the error raised."""
    log.info("gateway %s: starting: %s", config.gateway.id, _summary(config))
    gateway = Gateway(config)
    app = None
    if config.api.enabled:
        from gateway.api.app import create_app
        from gateway.api.server import serve_api

        # Built before polling starts: building the routes of every plugin's models holds the
        # loop for tens of ms.
        try:
            app = create_app(gateway)
        except BaseException:
            gateway.close()
            raise
    running = asyncio.create_task(gateway.run(stop), name="gateway")
    running.add_done_callback(lambda _: stop.set())  # a gateway that fails stops the API too
    if app is not None:
        started = asyncio.create_task(gateway.runtime.started.wait())
        await asyncio.wait({running, started}, return_when=asyncio.FIRST_COMPLETED)
        if running.done():
            started.cancel()
            running.result()
            raise GatewayError("the gateway stopped while starting")
        try:
            await serve_api(app, config.api, stop)
        finally:
            stop.set()
            await running
    else:
        await running
    log.info("gateway %s: stopped", config.gateway.id)


if __name__ == "__main__":
    sys.exit(main())
