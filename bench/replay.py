"""Replay: memory while a gateway replays a large outbox, and the age of live data after an
outage.

1. A backlog of ``--backlog-mb`` MB is written into an outbox (as a gateway that lost its
   broker for a long time would have left it), a gateway is started on it with a broker, and
   its RSS is sampled for ``--duration`` s of replay, against the same gateway on an empty
   data dir (steady state).
2. A gateway under the same live load loses its broker for ``--outage`` s; once the broker is
   back, the age of live readings (poll to receipt) is measured over the next 10 s.

    python -m bench.replay --backlog-mb 1024 --outage 60

Reuses the integration tests' process helpers (tests/support): run it from the repository.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import orjson
import psutil
from paho.mqtt import client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.measure import percentile
from gateway.outbox import Outbox, OutboxConfig
from gateway.reading import Batch, good_readings
from tests.support.gateway import GatewayProcess
from tests.support.mosquitto import Mosquitto
from tests.support.processes import wait_until
from tests.support.simulator import ModbusSimulator

DEVICES, TAGS, BULK = 10, 1000, 1000


def config(broker: Mosquitto, sim: ModbusSimulator, data_dir: Path) -> dict[str, Any]:
    tags = [{"name": f"r{i}", "address": BULK + i} for i in range(TAGS)]
    return {
        "gateway": {"id": "replay-gw", "log_level": "WARNING", "data_dir": str(data_dir)},
        "sinks": {
            "mqtt": {"type": "mqtt", "host": broker.host, "port": broker.port, "qos": 1,
                     "reconnect_min": 0.1, "reconnect_max": 0.5},
        },
        "runtime": {"outbox": {"max_mb": 4096, "min_free_mb": 0}},
        "devices": [
            {"id": f"dev-{n}", "type": "modbus", "host": "127.0.0.1", "port": port,
             "groups": [{"interval": 1.0, "tags": tags}]}
            for n, port in enumerate(sim.ports)
        ],
    }  # fmt: skip


async def write_backlog(path: Path, megabytes: int) -> int:
    """An outbox holding ``megabytes`` MB of unconfirmed 1000-tag batches; their readings."""
    outbox = Outbox(path, ["mqtt"], OutboxConfig(max_mb=4096))
    names = [f"r{i}" for i in range(TAGS)]
    start = time.time_ns() - 3600 * 10**9
    readings = 0
    cycle = 0
    while outbox.size < megabytes * 1024 * 1024:
        batches = []
        for _ in range(100):
            ts = start + cycle * 10**7
            device = f"dev-{cycle % DEVICES}"
            values = [(cycle + i) & 0xFFFF for i in range(TAGS)]
            batches.append(Batch(device, good_readings(device, names, values, ts, ts), ts))
            cycle += 1
        await outbox.store(batches)
        readings += 100 * TAGS
    outbox.close()
    return readings


class Ages:
    """Ages of the telemetry readings whose poll time is after ``since_ms``."""

    def __init__(self, broker: Mosquitto) -> None:
        self.since_ms = float("inf")
        self.ages: list[float] = []
        self.values = 0
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-replay")
        self._client.on_message = self._on_message
        self._client.connect(broker.host, broker.port)
        self._client.subscribe("gateway/+/+/telemetry", qos=1)
        self._client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        now = time.time() * 1000
        body = orjson.loads(msg.payload)
        self.values += len(body["values"])
        if body["ts"] >= self.since_ms:
            self.ages.append(now - body["ts"])

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def sample_rss(gateway: GatewayProcess, seconds: float) -> float:
    """Peak RSS (MiB) over ``seconds``, sampled every 0.25 s."""
    process = psutil.Process(gateway.process.pid)
    peak = 0.0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        peak = max(peak, process.memory_info().rss / 2**20)
        time.sleep(0.25)  # a sampling period, not a wait for an effect
    return peak


def run(args: argparse.Namespace) -> str:
    with TemporaryDirectory(prefix="bench-replay-", dir=args.workdir) as tmp:
        work = Path(tmp)
        broker = Mosquitto(work / "mosquitto").start()
        sim = ModbusSimulator(
            work / "sim", "--ports", str(DEVICES), "--bulk-registers", str(TAGS),
            "--log-level", "WARNING", port=0,
        ).start()  # fmt: skip
        try:
            steady_gw = GatewayProcess(work / "steady", config(broker, sim, work / "steady-data"))
            steady_gw.start().wait_api()
            steady = sample_rss(steady_gw, args.duration)
            steady_gw.stop()

            backlog_dir = work / "backlog-data"
            backlog_dir.mkdir()
            began = time.monotonic()
            readings = asyncio.run(write_backlog(backlog_dir / "gateway.db", args.backlog_mb))
            written_s = time.monotonic() - began
            ages = Ages(broker)
            replaying = GatewayProcess(work / "replay", config(broker, sim, backlog_dir))
            replaying.start().wait_api()
            ages.since_ms = time.time() * 1000
            replay_peak = sample_rss(replaying, args.duration)
            delivered = ages.values
            live_replay = percentile(ages.ages, 0.99) if ages.ages else float("nan")
            replaying.stop()
            ages.close()

            outage_gw = GatewayProcess(work / "outage", config(broker, sim, work / "outage-data"))
            outage_gw.start().wait_api()
            broker.stop()
            time.sleep(args.outage)  # the outage itself
            broker.start()
            ages = Ages(broker)
            ages.since_ms = time.time() * 1000
            wait_until(lambda: len(ages.ages) >= DEVICES * 10, 60, "10 s of live data")
            after = sorted(ages.ages)
            outage_gw.stop()
            ages.close()
        finally:
            sim.stop()
            broker.close()
    return (
        f"backlog {args.backlog_mb} MB ({readings:,} readings, written in {written_s:.0f} s): "
        f"RSS steady {steady:.0f} MiB, replaying {replay_peak:.0f} MiB "
        f"({replay_peak / steady:.2f}x) over {args.duration:g} s with {delivered:,} readings "
        f"delivered, live age p99 during the replay {live_replay:.0f} ms; "
        f"after a {args.outage:g} s outage: live age p50 {percentile(after, 0.5):.0f} ms, "
        f"p99 {percentile(after, 0.99):.0f} ms over the first {len(after)} live messages"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog-mb", type=int, default=1024)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of sampling")
    parser.add_argument("--outage", type=float, default=60.0)
    parser.add_argument("--workdir", type=Path, default=None, help="where the data dirs go")
    print(run(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
