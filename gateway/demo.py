"""``gateway demo``: the PLC simulators, a broker and the gateway with its page, on one command.

Runs config/gateway.yaml against the Modbus, OPC UA and S7 simulators and a broker it starts
itself: Mosquitto when it is installed, else the embedded amqtt broker. Prefers the usual ports
(5020, 4840, 1102, 1883, 8000) and takes free ones when those are busy. Ctrl-C stops everything it
started, by PID; if the demo itself is killed, the kernel stops them (a parent-death signal).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import getpass
import importlib.util
import os
import secrets
import shutil
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from pydantic import SecretStr

from gateway.api.config import ApiToken
from gateway.config import GatewayConfig, load_config
from gateway.errors import GatewayError
from gateway.registry import DATABASE_FILE, registered_devices
from gateway.sinks.mqtt_config import MqttConfig

__all__ = ["run_demo"]

HOST = "127.0.0.1"
READY_TIMEOUT = 30.0
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _port(preferred: int) -> int:
    """``preferred`` if nothing listens there, else a free port the OS picks."""
    with socket.socket() as probe:
        try:
            probe.bind((HOST, preferred))
        except OSError:
            probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


async def _wait_port(port: int, process: asyncio.subprocess.Process, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_TIMEOUT
    while loop.time() < deadline:
        if process.returncode is not None:
            raise GatewayError(f"{what} exited with code {process.returncode} at start-up")
        try:
            _, writer = await asyncio.open_connection(HOST, port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return
    raise GatewayError(f"{what} did not listen on port {port} within {READY_TIMEOUT:g} s")


async def _start_broker(workdir: Path, port: int) -> tuple[asyncio.subprocess.Process, str]:
    log = (workdir / "broker.log").open("wb")
    mosquitto = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")
    if mosquitto:
        conf = workdir / "mosquitto.conf"
        # "user": the demo's own, so that Mosquitto started as root does not switch users,
        # which would clear its parent-death signal.
        conf.write_text(
            f"per_listener_settings true\npersistence false\nmax_queued_messages 0\n"
            f"listener {port} {HOST}\nallow_anonymous true\nuser {getpass.getuser()}\n"
        )
        argv, name = [mosquitto, "-c", str(conf)], "Mosquitto"
    elif importlib.util.find_spec("amqtt") is not None:
        conf = workdir / "amqtt.yaml"
        conf.write_text(
            f"listeners:\n  default:\n    type: tcp\n    bind: {HOST}:{port}\n"
            "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n"
            "    allow_anonymous: true\n"
        )
        amqtt = Path(sys.executable).with_name("amqtt")
        argv, name = [str(amqtt), "-c", str(conf)], "embedded amqtt broker"
    else:
        raise GatewayError(
            "no MQTT broker: install Mosquitto (apt-get install mosquitto) "
            "or the demo extra (pip install 'edge-gateway[demo]')"
        )
    # A session of its own: Ctrl-C reaches only the demo, which stops the broker last.
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=log, stderr=log, start_new_session=True, preexec_fn=_die_with_the_demo
    )
    await _wait_port(port, process, name)
    return process, name


def _die_with_the_demo() -> None:
    """In the child before exec: the kernel sends it SIGTERM when the demo dies, even by
    SIGKILL, so nothing the demo started outlives it (Linux; elsewhere Ctrl-C still works)."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() == 1:  # the demo died before prctl: do not linger
            os.kill(os.getpid(), signal.SIGTERM)


async def _start_simulator(module: str, port: int, *args: str) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", f"simulators.{module}", "--port", str(port), *args,
        "--log-level", "WARNING", stdout=asyncio.subprocess.PIPE, start_new_session=True,
        preexec_fn=_die_with_the_demo,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            line = await process.stdout.readline()
    except TimeoutError:
        line = b""
    if not line.startswith(b"READY"):
        raise GatewayError(f"the {module} simulator did not start on port {port}")
    return process


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            async with asyncio.timeout(5):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


def _registered(config: GatewayConfig) -> str:
    count = registered_devices(config.gateway.data_dir / DATABASE_FILE)
    return f", {count} registered over the API" if count else ""


def _demo_settings(config: GatewayConfig, workdir: Path, api_port: int) -> GatewayConfig:
    """The demo's own data directory, control plane port and a fresh admin token."""
    token = ApiToken(name="demo", token=SecretStr(secrets.token_urlsafe(18)), role="admin")
    api = config.api.model_copy(update={"enabled": True, "port": api_port, "tokens": [token]})
    section = config.gateway.model_copy(update={"data_dir": workdir / "data"})
    return config.model_copy(update={"api": api, "gateway": section})


async def run_demo(
    config_path: Path,
    workdir: Path,
    serve: Callable[[GatewayConfig, asyncio.Event], Awaitable[None]],
    api_port: int = 8000,
) -> int:
    """Start the simulator and a broker in ``workdir`` (which exists), then ``serve`` the
    gateway with config_path until Ctrl-C."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    started: list[asyncio.subprocess.Process] = []
    try:
        broker_port, sim_port, opcua_port = _port(1883), _port(5020), _port(4840)
        s7_port = _port(1102)
        api_port = _port(api_port)
        broker, broker_name = await _start_broker(workdir, broker_port)
        started.append(broker)
        started.append(await _start_simulator("modbus", sim_port, "--units", "3"))
        started.append(await _start_simulator("opcua", opcua_port))
        started.append(await _start_simulator("s7", s7_port))
        os.environ.update(
            MQTT_HOST=HOST,
            MQTT_PORT=str(broker_port),
            SIM_PORT=str(sim_port),
            OPCUA_SIM_PORT=str(opcua_port),
            S7_SIM_PORT=str(s7_port),
        )
        config = _demo_settings(load_config(config_path), workdir, api_port)
        mqtt = next(s for s in config.sinks.values() if isinstance(s, MqttConfig))
        token = config.api.tokens[0].token.get_secret_value()
        page = f"http://{HOST}:{config.api.port}"
        prefix = f"{mqtt.topic_prefix}/{config.gateway.id}"
        print(
            f"\n  Modbus PLC simulator  {HOST}:{sim_port} (units 1-3)\n"
            f"  OPC UA PLC simulator  opc.tcp://{HOST}:{opcua_port}\n"
            f"  S7 PLC simulator      {HOST}:{s7_port} (rack 0, slot 1)\n"
            f"  MQTT broker           {HOST}:{broker_port} ({broker_name})\n"
            f"  gateway               {config.gateway.id}: {len(config.devices)} devices "
            f"from {config_path}{_registered(config)}\n\n"
            f"  Page:       {page}/#token={token}\n"
            f"  API token:  {token}   (admin; API docs at {page}/docs)\n"
            f"    curl -H 'Authorization: Bearer {token}' {page}/api/v1/devices\n\n"
            f"  Watch the telemetry:\n"
            f"    mosquitto_sub -h {HOST} -p {broker_port} -t '{prefix}/#' -v\n"
            f"    {Path(sys.executable).with_name('gateway')} watch --port {broker_port} "
            f"'{prefix}/#'\n\n"
            f"  Ctrl-C stops everything.\n",
            flush=True,
        )
        await serve(config, stop)
        return 0
    finally:
        for process in reversed(started):
            with contextlib.suppress(ProcessLookupError):
                await _stop(process)
