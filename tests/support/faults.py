"""Fault-injection scenarios with real processes, counted end to end (the zero-loss promise).

Shared by ``tests/integration/test_reliability.py`` and ``python -m bench.reliability``, so the
README's reliability table comes from the very code the tests run.

The counting:

- **served**: what the Modbus simulator answered, from its ``--record`` file (one line per
  served read). Every device reads one block (holding registers 0..49) per cycle, so a record
  line is one cycle of ``len(TAGS)`` readings, and the part counter in it (registers 2-3)
  names the cycle: a reading's identity is (device, counter).
- **accepted**: the good values the gateway took from its devices, from its own /metrics
  (``gateway_device_readings_total``).
- **delivered**: distinct (device, ts) deliveries at the sink, counted in readings: telemetry
  seen by a persistent-session subscriber on a persistent Mosquitto, or samples in
  VictoriaMetrics. **duplicated**: deliveries beyond the first.
- **dropped**: what the gateway says it dropped (``gateway_sink_dropped_readings_total``).
- **lost** = accepted - delivered - dropped: readings the gateway took and neither delivered
  nor counted. The promise is that this is 0.

To count no poll that was in flight when something stopped, a scenario ends by stopping the
simulators first (then every served read was accepted), waits until the gateway reports every
device offline and nothing buffered, reads its metrics, and only then stops the gateway.
"""

from __future__ import annotations

import contextlib
import datetime
import math
import sqlite3
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.gateway import GatewayProcess
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt_watch import MqttWatch
from tests.support.processes import wait_until
from tests.support.simulator import ModbusSimulator
from tests.support.victoria import VictoriaMetrics

__all__ = [
    "DEVICES",
    "INTERVAL",
    "IN_FLIGHT_NS",
    "SCENARIOS",
    "TAGS",
    "Tally",
    "broker_outage",
    "core_task_killed",
    "damaged_database",
    "device_flapping",
    "disk_full",
    "gateway_crash",
    "history_locked",
    "markdown_table",
    "outbox_cap",
    "power_cut",
    "second_instance",
    "tsdb_outage",
]

PREFIX = "rel"
GW = "gw-rel"
MEASUREMENT = "reliab"
INTERVAL = 0.1
"""Seconds between polls of every device."""
DEVICES = 8
"""Devices polled in every scenario (one simulator unit each, each on its own connection)."""
WARMUP = 3.0
"""Seconds of normal running before a fault: the outbox saves confirmations and deletes
confirmed rows every second, so the fault finds it in its steady state."""
SIM_PERIOD = "0.001"
"""Simulator seconds per tick: the part counter moves every millisecond, so two polls of one
device never read the same counter."""

# One read of holding registers 0..49 per cycle (simulators/modbus/README.md).
TAGS: tuple[dict[str, Any], ...] = (
    {"name": "state", "address": 0},
    {"name": "setpoint", "address": 1, "data_type": "int16"},
    {"name": "counter", "address": 2, "data_type": "uint32"},
    {"name": "temperature", "address": 4, "data_type": "float32"},
    {"name": "temperature_cdab", "address": 6, "data_type": "float32", "byte_order": "CDAB"},
    {"name": "temperature_badc", "address": 8, "data_type": "float32", "byte_order": "BADC"},
    {"name": "temperature_dcba", "address": 10, "data_type": "float32", "byte_order": "DCBA"},
    {"name": "energy", "address": 12, "data_type": "float64"},
    {"name": "offset_total", "address": 16, "data_type": "int64"},
    {"name": "serial_total", "address": 20, "data_type": "uint64"},
    {"name": "trim", "address": 24, "data_type": "int16"},
    {"name": "position", "address": 25, "data_type": "int32"},
    {"name": "alarms", "address": 27},
    {"name": "model", "address": 30, "data_type": "string", "length": 10},
    *({"name": f"pattern{i}", "address": 40 + i} for i in range(10)),
)
_READ = (3, 0, 50)
"""fc, address, count of the one request per cycle."""


@dataclass(frozen=True, slots=True)
class Served:
    """One read the simulator answered: one cycle of one device."""

    device: str
    t_ns: int
    counter: int


@dataclass
class Deliveries:
    """What a sink holds, in readings, and each delivered cycle's identity."""

    delivered: int = 0
    duplicated: int = 0
    counters: Counter[tuple[str, int]] = field(default_factory=Counter)
    """(device, part counter) of every distinct delivered cycle."""
    redelivered: int = 0
    """Of ``duplicated``: copies the broker sent the subscriber again (MQTT DUP flag: its
    acknowledgement was in flight when the broker stopped), not sent twice by the gateway."""
    late: int = 0
    """Cycles that arrived after a newer one of the same device (MQTT arrival order)."""


@dataclass
class Tally:
    """One scenario's counts, in readings (a cycle of one device is ``len(TAGS)`` readings)."""

    fault: str
    served: int
    accepted: int
    delivered: int
    dropped: int
    duplicated: int
    in_flight: int = 0
    """Served in the last poll before a SIGKILL of the gateway and never delivered: the
    gateway may never have received them (at most one cycle per device)."""
    missing: dict[str, list[int]] = field(default_factory=dict)
    """Part counters of served cycles never delivered (and not in flight), by device."""
    notes: list[str] = field(default_factory=list)
    cycles: list[Served] = field(default_factory=list, repr=False)
    """What the simulators served, in order."""
    gateway_log: str = field(default="", repr=False)
    window_ns: tuple[int, int] = (0, 0)
    """When the fault was on (wall clock)."""
    accepted_seen: int = 0
    """Accepted as the gateway's /metrics showed it; after a SIGKILL, the last scrape before
    the kill plus the restarted process's count (a lower bound of ``accepted``)."""
    rates: dict[str, float] = field(default_factory=dict)
    """Steady devices' polls in the flapping window as a fraction of nominal."""

    @property
    def lost(self) -> int:
        return self.accepted - self.delivered - self.dropped


def markdown_table(tallies: Iterable[Tally]) -> str:
    """The README's reliability table."""
    lines = [
        "| fault | served | accepted | delivered | dropped (counted) | lost | duplicated | notes |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for t in tallies:
        numbers = (t.served, t.accepted, t.delivered, t.dropped, t.lost, t.duplicated)
        cells = " | ".join(f"{n:,}" for n in numbers)
        lines.append(f"| {t.fault} | {cells} | {'; '.join(t.notes)} |")
    return "\n".join(lines)


# --- the processes ----------------------------------------------------------------------------


class Lab:
    """The processes of one scenario; ``close()`` stops every one still running, by PID."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._stack = contextlib.ExitStack()

    def simulator(self, name: str, units: int) -> tuple[ModbusSimulator, Path]:
        """A simulator serving units 1..``units``, recording. Several units listen on ports
        of their own (free ones, so a restart is for single-unit simulators only, which keep
        their port)."""
        record = self.workdir / f"{name}.jsonl"
        args = ["--units", str(units), "--record", str(record), "--period", SIM_PERIOD]
        if units > 1:
            args += ["--ports", str(units)]
        sim = ModbusSimulator(self.workdir / name, *args, port=0 if units > 1 else None, name=name)
        self._stack.callback(sim.stop)
        return sim.start(), record

    def broker(self) -> Mosquitto:
        broker = Mosquitto(self.workdir / "mosquitto", persistent=True)
        self._stack.callback(broker.close)
        return broker.start()

    def watch(self, broker: Mosquitto) -> MqttWatch:
        """A persistent session: what the gateway sends while the watcher reconnects after a
        broker restart is queued for it."""
        topics = f"{PREFIX}/{GW}/+/telemetry"
        watch = MqttWatch(broker.host, broker.port, topics, session=f"rel-{uuid.uuid4().hex[:8]}")
        watch.start()
        self._stack.callback(watch.stop)
        return watch

    def victoria(self) -> VictoriaMetrics:
        server = VictoriaMetrics(self.workdir / "victoria")
        self._stack.callback(server.stop)
        return server.start()

    def small_disk(self, megabytes: int) -> Path:
        """A tmpfs of this size (root only), unmounted by ``close()``."""
        target = self.workdir / "small-disk"
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(target)], check=True
        )
        self._stack.callback(subprocess.run, ["umount", "-l", str(target)], check=False)
        return target

    def gateway(self, config: dict[str, Any], env: dict[str, str] | None = None) -> Gateway:
        gateway = Gateway(GatewayProcess(self.workdir / "gateway", config, env))
        self._stack.callback(gateway.process.stop)
        gateway.process.start()
        gateway.process.wait_api()
        return gateway

    def close(self) -> None:
        self._stack.close()


class Metrics:
    """One scrape of the gateway's /metrics."""

    def __init__(self, text: str) -> None:
        self._samples: list[tuple[str, dict[str, str], float]] = [
            (sample.name, sample.labels, sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        ]

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples called ``name`` whose labels include ``labels``."""
        return sum(
            value
            for sample, have, value in self._samples
            if sample == name and labels.items() <= have.items()
        )


class Gateway:
    """``gateway run`` as a scenario drives it: its metrics, its log, its state."""

    def __init__(self, process: GatewayProcess) -> None:
        self.process = process
        self._log_mark = 0

    def metrics(self) -> Metrics:
        response = httpx.get(f"{self.process.api_url}/metrics", timeout=5)
        response.raise_for_status()
        return Metrics(response.text)

    def log(self) -> str:
        return self.process.log()

    def mark_log(self) -> None:
        """Let ``wait_log`` look only at what is logged from now on."""
        self._log_mark = len(self.log())

    def wait_log(self, text: str, timeout: float) -> None:
        wait_until(
            lambda: text in self.log()[self._log_mark :],
            timeout,
            lambda: f"the gateway logged {text!r}\n{self.process.process.describe()}",
        )

    def wait_online(self, devices: int, timeout: float = 20.0) -> None:
        """Until every device is online and the sinks have written something."""

        def ready() -> bool:
            if not self.process.process.running:
                raise RuntimeError(f"the gateway exited\n{self.process.process.describe()}")
            metrics = self.metrics()
            return (
                metrics.value("gateway_devices", state="online") == devices
                and metrics.value("gateway_sink_written_readings_total") > 0
            )

        wait_until(ready, timeout, "every device online and data written", interval=0.2)

    def settle(self, sink: str, timeout: float = 60.0) -> Metrics:
        """After the simulators stopped: wait until no device is polling any more and the sink
        has everything; the metrics then."""
        seen = {"polling": 0.0, "waiting": 0.0}

        def settled() -> Metrics | None:
            metrics = self.metrics()
            seen["polling"] = sum(
                metrics.value("gateway_devices", state=state)
                for state in ("starting", "online", "degraded")
            )
            seen["waiting"] = metrics.value("gateway_sink_buffer_readings", sink=sink)
            return None if any(seen.values()) else metrics

        return wait_until(
            settled, timeout, lambda: f"sink {sink} caught up (last seen: {seen})", interval=0.2
        )


def _profile() -> dict[str, Any]:
    group = {"name": "cycle", "interval": INTERVAL, "tags": [dict(tag) for tag in TAGS]}
    return {"id": "rel", "type": "modbus", "measurement": MEASUREMENT, "groups": [group]}


def _device(device_id: str, port: int, unit: int) -> dict[str, Any]:
    return {
        "id": device_id, "type": "modbus", "host": "127.0.0.1", "port": port, "unit": unit,
        "timeout": 0.5, "profile": "rel", "labels": {"line": "rel"},
    }  # fmt: skip


def _devices(sim: ModbusSimulator) -> list[dict[str, Any]]:
    return [_device(f"plc-{unit}", port, unit) for unit, port in enumerate(sim.ports, start=1)]


def _config(
    devices: list[dict[str, Any]],
    *,
    broker: Mosquitto | None = None,
    victoria: VictoriaMetrics | None = None,
    outbox: dict[str, Any] | None = None,
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "gateway": {"id": GW, "log_level": "INFO"},
        "runtime": {
            "reconnect_min": 0.1, "reconnect_max": 0.5, "retry_min": 0.05, "retry_max": 0.5,
            "status_interval": 1, "outbox": outbox or {},
        },
        "sinks": {},
        "profiles": [_profile()],
        "devices": devices,
    }  # fmt: skip
    if broker is not None:
        config["sinks"]["mqtt"] = {
            "type": "mqtt", "host": broker.host, "port": broker.port, "topic_prefix": PREFIX,
            "qos": 1, "reconnect_min": 0.1, "reconnect_max": 0.5,
        }  # fmt: skip
    if victoria is not None:
        config["sinks"]["influxdb"] = {
            "type": "influxdb", "url": victoria.url, "org": "plant", "bucket": "telemetry",
            "token": "x", "timeout": 2,
        }  # fmt: skip
    return config


# --- counting ---------------------------------------------------------------------------------


def read_record(path: Path, devices: dict[int, str]) -> list[Served]:
    """The cycles a simulator served, from its ``--record`` file (unit → device id)."""
    served = []
    for raw in path.read_bytes().splitlines():
        # A SIGKILL can cut the last line short (its read was never answered: the line is
        # flushed before the answer is sent); the next start appends right after it.
        line = raw[raw.rfind(b'{"t_ns"') :]
        if not line.endswith(b"}"):
            continue
        read = orjson.loads(line)
        if (read["fc"], read["address"], read["count"]) != _READ:
            raise AssertionError(f"{path}: a read the scenario does not make: {line!r}")
        values = read["values"]
        served.append(Served(devices[read["unit"]], read["t_ns"], values[2] << 16 | values[3]))
    return served


def mqtt_deliveries(watch: MqttWatch) -> Deliveries:
    """Telemetry at the broker: distinct (device, ts) messages, in readings."""
    watch.barrier()  # everything the broker had sent before is recorded now
    found = Deliveries()
    seen: set[tuple[str, int]] = set()
    newest: dict[str, int] = {}
    for message in watch.messages():
        device = message.topic.split("/")[2]
        payload = message.json()
        values = payload["values"]
        key = (device, payload["ts"])
        if key in seen:
            found.duplicated += len(values)
            found.redelivered += len(values) if message.dup else 0
            continue
        seen.add(key)
        found.delivered += len(values)
        if "counter" in values:
            found.counters[device, values["counter"]] += 1
        if payload["ts"] < newest.get(device, 0):
            found.late += 1
        newest[device] = max(newest.get(device, 0), payload["ts"])
    return found


def victoria_deliveries(
    server: VictoriaMetrics, expected: int, timeout: float = 30.0
) -> Deliveries:
    """Samples in VictoriaMetrics, distinct per (series, timestamp), in readings; polled until
    ``expected`` readings are visible or ``timeout`` passes (then what is there)."""
    match = f'{{__name__=~"{MEASUREMENT}_.+",gateway="{GW}"}}'
    found = Deliveries()

    def count() -> bool:
        nonlocal found
        server.flush()
        found = Deliveries()
        for series in server.export(match):
            distinct = set(series.timestamps)
            found.delivered += len(distinct)
            found.duplicated += len(series.timestamps) - len(distinct)
            if series.name == f"{MEASUREMENT}_counter":
                for value in set(series.samples().values()):
                    found.counters[series.labels["device"], int(value)] += 1
        return found.delivered >= expected

    with contextlib.suppress(TimeoutError):
        wait_until(count, timeout, interval=0.5)
    return found


def _missing(served: Sequence[Served], found: Deliveries) -> dict[str, list[int]]:
    left = Counter((s.device, s.counter) for s in served) - found.counters
    missing: dict[str, list[int]] = {}
    for device, counter in sorted(left.elements()):
        missing.setdefault(device, []).append(counter)
    return missing


@dataclass
class _Run:
    """What a scenario saw, before it is tallied."""

    fault: str
    served: list[Served]
    metrics: Metrics
    sink: str
    found: Deliveries
    window_ns: tuple[int, int]
    gateway_log: str

    def tally(self) -> Tally:
        found = self.found
        accepted = int(self.metrics.value("gateway_device_readings_total"))
        tally = Tally(
            self.fault,
            served=len(self.served) * len(TAGS),
            accepted=accepted,
            delivered=found.delivered,
            dropped=int(self.metrics.value("gateway_sink_dropped_readings_total", sink=self.sink)),
            duplicated=found.duplicated,
            missing=_missing(self.served, found),
            cycles=self.served,
            window_ns=self.window_ns,
            gateway_log=self.gateway_log,
            accepted_seen=accepted,
        )
        start, end = self.window_ns
        during = sum(1 for read in self.served if start <= read.t_ns < end) * len(TAGS)
        tally.notes.append(f"{during:,} readings served during the fault")
        if found.duplicated:
            again = found.duplicated - found.redelivered
            tally.notes.append(
                f"duplicated: {again:,} sent again by the gateway (acknowledgement lost), "
                f"{found.redelivered:,} redelivered by the broker to the subscriber"
            )
        if found.late:
            tally.notes.append(
                f"{found.late:,} cycles arrived after a newer one of their device (backlog "
                "after live data)"
            )
        return tally


def _hold(seconds: float) -> None:
    """A deliberate duration (an outage, a spell of normal running), not a wait for an
    effect."""
    time.sleep(seconds)


def _units(first: int, last: int) -> dict[int, str]:
    return {unit: f"plc-{unit}" for unit in range(first, last + 1)}


# --- the scenarios ----------------------------------------------------------------------------


def _broker_run(
    workdir: Path,
    fault: str,
    inject: Callable[[Gateway, Mosquitto, MqttWatch], None],
    outbox: dict[str, Any] | None = None,
    data_dir: Callable[[Lab], Path] | None = None,
    runtime: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> _Run:
    """Devices → gateway → persistent Mosquitto → persistent-session watcher, with ``inject``
    doing the fault after a spell of normal running; ``data_dir`` prepares the gateway's,
    ``runtime`` overrides runtime settings, ``env`` is added to the gateway's environment."""
    with contextlib.closing(Lab(workdir)) as lab:
        broker = lab.broker()
        watch = lab.watch(broker)
        sim, record = lab.simulator("sim", DEVICES)
        config = _config(_devices(sim), broker=broker, outbox=outbox)
        if data_dir is not None:
            config["gateway"]["data_dir"] = str(data_dir(lab))
        config["runtime"].update(runtime or {})
        gateway = lab.gateway(config, env)
        gateway.wait_online(DEVICES)
        _hold(WARMUP)
        start = time.time_ns()
        inject(gateway, broker, watch)
        end = time.time_ns()
        sim.stop()
        metrics = gateway.settle("mqtt")
        found = mqtt_deliveries(watch)
        gateway.process.stop()
        served = read_record(record, _units(1, DEVICES))
        return _Run(fault, served, metrics, "mqtt", found, (start, end), gateway.log())


def broker_outage(workdir: Path, outage: float = 30.0) -> Tally:
    """The broker is stopped for ``outage`` seconds under load, then started again."""

    def inject(gateway: Gateway, broker: Mosquitto, watch: MqttWatch) -> None:
        gateway.mark_log()
        broker.stop()
        gateway.wait_log("holding the data", 10)
        _hold(outage)
        broker.start()
        watch.wait_subscribed(15)

    return _broker_run(workdir, f"MQTT broker stopped {outage:g} s", inject).tally()


IN_FLIGHT_NS = 1_000_000_000
"""How long before a SIGKILL a served cycle may still be on its way into the outbox: polled,
waiting for the outbox's thread, which also saves confirmations every second and checks the
bounds every ten (300 ms proved too short once in a full run while the broker was down)."""


def gateway_crash(workdir: Path, outage: float = 30.0) -> Tally:
    """During a broker outage of ``outage`` s the gateway is SIGKILLed halfway and started
    again on the same data directory: the outbox replays what the dead process held."""
    fault = f"gateway SIGKILLed during a {outage:g} s broker outage, restarted"
    return _killed_run(workdir, fault, outage)


def power_cut(workdir: Path, outage: float = 30.0, sync: str = "full") -> Tally:
    """Like a crash, but the power goes: with ``sync: normal`` the WAL loses what was never
    synced (here: its newest half of frames); with ``sync: full`` every commit was synced
    before its batch was handed on, so the WAL stays as the kill left it."""
    fault = f"power cut during a {outage:g} s broker outage, outbox sync: {sync}"
    return _killed_run(workdir, fault, outage, sync=sync)


def tear_wal(path: Path) -> tuple[int, int]:
    """Cut a WAL after half of its valid frames, as a power cut loses what was never synced;
    (frames kept, frames cut). Frames are valid while they carry the header's salt."""
    data = path.read_bytes() if path.exists() else b""
    if len(data) < 32:
        return 0, 0
    page_size = int.from_bytes(data[8:12], "big")
    salt, frame = data[16:24], 24 + page_size
    valid = 0
    while 32 + (valid + 1) * frame <= len(data):
        header = 32 + valid * frame
        if data[header + 8 : header + 16] != salt:
            break
        valid += 1
    keep = valid // 2
    with path.open("r+b") as file:
        file.truncate(32 + keep * frame)
    return keep, valid - keep


def _killed_run(workdir: Path, fault: str, outage: float, sync: str | None = None) -> Tally:
    killed: list[tuple[int, int]] = []  # (time of the kill, readings accepted before it)
    torn: list[tuple[int, int]] = []

    def inject(gateway: Gateway, broker: Mosquitto, watch: MqttWatch) -> None:
        gateway.mark_log()
        broker.stop()
        gateway.wait_log("holding the data", 10)
        _hold(outage / 2)
        accepted = int(gateway.metrics().value("gateway_device_readings_total"))
        killed.append((time.time_ns(), accepted))
        gateway.process.process.kill()
        if sync == "normal":
            config = yaml.safe_load(gateway.process.config_path.read_text())
            torn.append(tear_wal(Path(config["gateway"]["data_dir"]) / "gateway.db-wal"))
        gateway.mark_log()
        gateway.process.start()
        gateway.process.wait_api()
        gateway.wait_log("holding the data", 10)
        _hold(outage / 2)
        broker.start()
        watch.wait_subscribed(15)

    run = _broker_run(workdir, fault, inject, outbox=None if sync is None else {"sync": sync})
    [(kill_ns, accepted_before)] = killed
    tally = run.tally()
    # What a device served just before the kill may not have been stored yet: polled, on its
    # way to the outbox (one write on its thread, an fsync), then lost with the process. After
    # a torn WAL only the last poll counts so: the newest commits are what the tear takes, and
    # that loss must show.
    window = int(INTERVAL * 1e9) if sync == "normal" else IN_FLIGHT_NS
    for read in run.served:
        if kill_ns - window <= read.t_ns < kill_ns:
            counters = tally.missing.get(read.device, [])
            if read.counter in counters:
                counters.remove(read.counter)
                tally.in_flight += len(TAGS)
    tally.missing = {device: counters for device, counters in tally.missing.items() if counters}
    tally.accepted_seen = accepted_before + tally.accepted  # the restarted process's count
    tally.accepted = tally.served - tally.in_flight
    if tally.in_flight:
        tally.notes.append(
            f"{tally.in_flight} readings ({tally.in_flight // len(TAGS)} cycles) served in the"
            f" last {window / 1e9:g} s before the SIGKILL never arrived: in flight at the"
            " kill (polled, not yet stored), not accepted"
        )
    if torn:
        kept, cut = torn[0]
        tally.notes.append(
            f"the WAL torn after the kill: {cut} of its {kept + cut} frames since the last"
            " checkpoint cut, as a power cut loses what sync: normal never synced; lost is"
            " what they held"
        )
    elif sync == "full":
        tally.notes.append(
            "every commit synced before its batch was handed on: a power cut leaves the WAL as"
            " the kill did"
        )
    return tally


def outbox_cap(workdir: Path, max_mb: int = 1) -> Tally:
    """The broker stays down until the outbox passes ``max_mb``: the oldest are dropped and
    counted, the gateway keeps running, and delivered + dropped == accepted."""

    def inject(gateway: Gateway, broker: Mosquitto, watch: MqttWatch) -> None:
        gateway.mark_log()
        broker.stop()
        gateway.wait_log("holding the data", 10)
        gateway.wait_log("dropping the oldest", 120)
        back_ms = time.time() * 1000
        broker.start()
        watch.wait_subscribed(15)
        # The gateway kept polling: what it polled after the broker came back arrives.
        watch.wait_for(lambda m: m.json()["ts"] > back_ms, 30, "live data after the outage")

    fault = f"outbox cap ({max_mb} MB) reached during a broker outage"
    tally = _broker_run(workdir, fault, inject, outbox={"max_mb": max_mb}).tally()
    tally.notes.append(
        "the oldest dropped, counted in gateway_sink_dropped_readings_total and logged; "
        "polling and publishing went on"
    )
    return tally


def disk_full(workdir: Path, outage: float = 30.0) -> Tally:
    """The data dir is on a 2 MB file system: during a broker outage the outbox fills it.
    What cannot be stored is still delivered from memory once the broker is back (or counted
    as dropped); polling never stops; storing resumes by itself once delivered rows go."""
    unstored: list[float] = []

    def inject(gateway: Gateway, broker: Mosquitto, watch: MqttWatch) -> None:
        gateway.mark_log()
        broker.stop()
        gateway.wait_log("holding the data", 10)
        gateway.wait_log("cannot store batches", 120)
        _hold(min(outage, 10.0))  # polling on a full disk
        broker.start()
        watch.wait_subscribed(15)
        gateway.wait_log("storing batches again", 60)
        metric = "gateway_outbox_unstored_readings_total"
        unstored.append(gateway.metrics().value(metric, reason="disk_full"))

    def small(lab: Lab) -> Path:
        return lab.small_disk(2) / "data"

    fault = "disk full (2 MB data dir) during a broker outage"
    run = _broker_run(workdir, fault, inject, outbox={"min_free_mb": 0}, data_dir=small)
    tally = run.tally()
    tally.notes.append(
        f"{int(unstored[0]):,} readings not stored (disk full): sent live from memory, counted"
        " in gateway_outbox_unstored_readings_total; polling went on; storing resumed by itself"
    )
    return tally


def second_instance(workdir: Path, outage: float = 30.0) -> Tally:
    """A second ``gateway run`` on the same data dir while the first runs under load."""
    refused: list[str] = []

    def inject(gateway: Gateway, broker: Mosquitto, watch: MqttWatch) -> None:
        config = yaml.safe_load(gateway.process.config_path.read_text())
        second = GatewayProcess(workdir / "second", config)
        second.start()
        code = second.process.wait_exit(20)
        pid = second.log().split("is in use by PID ")[1].split(":")[0]
        refused.append(f"exit code {code}, 'data dir … is in use by PID {pid}'")
        _hold(min(outage, 5.0))

    fault = "second gateway started on the same data dir"
    tally = _broker_run(workdir, fault, inject).tally()
    tally.notes.append(f"the second refused at once ({refused[0]})")
    return tally


def damaged_database(workdir: Path, outage: float = 30.0) -> Tally:
    """The gateway starts on a ``gateway.db`` that is junk: it sets it aside and runs."""
    lines: list[str] = []

    def junk(lab: Lab) -> Path:
        data = lab.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        (data / "gateway.db").write_bytes(b"not a database " * 10_000)
        return data

    def inject(gateway: Gateway, broker: Mosquitto, watch: MqttWatch) -> None:
        lines.extend(line for line in gateway.log().splitlines() if "is damaged" in line)
        _hold(min(outage, 5.0))

    fault = "damaged gateway.db at start"
    tally = _broker_run(workdir, fault, inject, data_dir=junk).tally()
    renamed = lines[0].split("moved to ")[1].split(" and")[0].rsplit("/", 1)[-1] if lines else "-"
    tally.notes.append(f"started with a new file; the damaged one set aside as {renamed}")
    return tally


def history_locked(workdir: Path, outage: float = 30.0) -> Tally:
    """Another connection holds the history's write lock for a while, as a long prune did when
    the history shared the outbox's file: the outbox, in a file of its own, never waits."""
    hold = min(outage, 15.0)

    def inject(gateway: Gateway, broker: Mosquitto, watch: MqttWatch) -> None:
        config = yaml.safe_load(gateway.process.config_path.read_text())
        path = Path(config["gateway"]["data_dir"]) / "history.db"
        with contextlib.closing(sqlite3.connect(path, timeout=5)) as db:
            db.execute("BEGIN EXCLUSIVE")
            _hold(hold)
            db.rollback()

    fault = f"history.db write-locked {hold:g} s by another connection (a long prune)"
    tally = _broker_run(workdir, fault, inject).tally()
    tally.notes.append(
        "the outbox (gateway.db) never waited; history samples that could not wait were"
        " counted and logged"
    )
    return tally


TASK_KILLER = Path(__file__).parent / "task_killer"
"""On PYTHONPATH, lets a scenario kill a gateway's core task (see its ``sitecustomize``)."""


def core_task_killed(workdir: Path, outage: float = 30.0, task: str = "sink:mqtt") -> Tally:
    """A core task dies under load, as a bug in it would: once (restarted after its backoff,
    /healthz 503 meanwhile), then again and again until the gateway gives up and exits
    non-zero; started again on the same data dir, as systemd would, it delivers the rest."""
    trigger = workdir / "kill-task"
    seen: dict[str, Any] = {}

    def healthz(gateway: Gateway) -> int:
        return httpx.get(f"{gateway.process.api_url}/healthz", timeout=5).status_code

    def inject(gateway: Gateway, broker: Mosquitto, watch: MqttWatch) -> None:
        gateway.mark_log()
        trigger.write_text("1")
        wait_until(lambda: healthz(gateway) == 503, 10, f"/healthz 503 after {task} died")
        wait_until(lambda: healthz(gateway) == 200, 30, f"/healthz 200 after {task} restarted")
        restarts = gateway.metrics().value("gateway_core_task_restarts_total", task=task)
        seen["restarts"] = int(restarts)
        seen["logged"] = f"core task {task} died; restarting it" in gateway.log()
        _hold(min(outage, 5.0))
        trigger.write_text("10")

        def exited() -> bool:
            with contextlib.suppress(httpx.HTTPError):
                accepted = gateway.metrics().value("gateway_device_readings_total")
                seen["accepted"] = int(accepted)
            return not gateway.process.process.running

        wait_until(exited, 60, f"the gateway gave up on {task}", interval=0.2)
        seen["exit_ns"] = time.time_ns()
        seen["exit"] = gateway.process.process.returncode
        line = next(
            line for line in gateway.log().splitlines() if f"core task {task} died " in line
        )
        seen["gave_up"] = line.split(f"core task {task} died ")[-1].split(" within")[0]
        # The log's local time, to the ms: when the devices' polls in flight were cancelled.
        stamp = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
        seen["gave_up_ns"] = int(stamp.timestamp() * 1e9)
        trigger.write_text("0")
        gateway.mark_log()
        gateway.process.start()
        gateway.process.wait_api()
        _hold(min(outage, 5.0))

    fault = f"core task {task} killed once, then at each restart"
    env = {"PYTHONPATH": str(TASK_KILLER), "GATEWAY_KILL_TASK": task}
    env["GATEWAY_KILL_FILE"] = str(trigger)
    workdir.mkdir(parents=True, exist_ok=True)
    run = _broker_run(workdir, fault, inject, runtime={"retry_min": 1.0, "retry_max": 4.0}, env=env)
    tally = run.tally()
    # The first process's last count cannot be read after its exit: accepted is what was
    # served but for polls in flight when it gave up (answered, not yet handed to the runtime,
    # then cancelled) up to its exit.
    for read in run.served:
        if seen["gave_up_ns"] - IN_FLIGHT_NS <= read.t_ns < seen["exit_ns"]:
            counters = tally.missing.get(read.device, [])
            if read.counter in counters:
                counters.remove(read.counter)
                tally.in_flight += len(TAGS)
    tally.missing = {device: counters for device, counters in tally.missing.items() if counters}
    tally.accepted_seen += seen["accepted"]
    tally.accepted = tally.served - tally.in_flight
    tally.notes.append(
        f"killed once: {'traceback logged, ' if seen['logged'] else 'NOT logged, '}/healthz"
        f" 503 until it was restarted ({seen['restarts']} restart counted)"
    )
    tally.notes.append(
        f"then killed at each restart: the gateway gave up (died {seen['gave_up']} within 60 s)"
        f" and exited with code {seen['exit']}; started again on the same data dir, as systemd"
        " would"
    )
    return tally


def tsdb_outage(workdir: Path, outage: float = 30.0) -> Tally:
    """VictoriaMetrics (written through the InfluxDB v2 API) is stopped for ``outage`` s."""
    with contextlib.closing(Lab(workdir)) as lab:
        victoria = lab.victoria()
        sim, record = lab.simulator("sim", DEVICES)
        gateway = lab.gateway(_config(_devices(sim), victoria=victoria))
        gateway.wait_online(DEVICES)
        _hold(WARMUP)
        start = time.time_ns()
        gateway.mark_log()
        victoria.stop()
        gateway.wait_log("holding the data", 10)
        _hold(outage)
        victoria.start()
        end = time.time_ns()
        sim.stop()
        metrics = gateway.settle("influxdb")
        expected = metrics.value("gateway_device_readings_total") - metrics.value(
            "gateway_sink_dropped_readings_total", sink="influxdb"
        )
        found = victoria_deliveries(victoria, int(expected))
        gateway.process.stop()
        served = read_record(record, _units(1, DEVICES))
        fault = f"TSDB (VictoriaMetrics) stopped {outage:g} s"
        return _Run(fault, served, metrics, "influxdb", found, (start, end), gateway.log()).tally()


def device_flapping(workdir: Path, flaps: int = 5, up: float = 2.0, down: float = 2.0) -> Tally:
    """One device's simulator is SIGKILLed and restarted ``flaps`` times (``down`` s away,
    ``up`` s back); the other devices must keep their nominal poll rate."""
    with contextlib.closing(Lab(workdir)) as lab:
        broker = lab.broker()
        watch = lab.watch(broker)
        steady, steady_record = lab.simulator("steady", DEVICES - 1)
        flappy, flappy_record = lab.simulator("flappy", 1)
        devices = [*_devices(steady), _device("flappy", flappy.port, 1)]
        gateway = lab.gateway(_config(devices, broker=broker))
        gateway.wait_online(DEVICES)
        _hold(WARMUP)
        start = time.time_ns()
        for _ in range(flaps):
            flappy.kill()
            _hold(down)
            flappy.start()
            wait_until(
                lambda: gateway.metrics().value("gateway_devices", state="online") == DEVICES,
                10, "the flapping device back online", interval=0.2,
            )  # fmt: skip
            _hold(up)
        end = time.time_ns()
        steady.stop()
        flappy.stop()
        metrics = gateway.settle("mqtt")
        found = mqtt_deliveries(watch)
        gateway.process.stop()
        served = read_record(steady_record, _units(1, DEVICES - 1))
        served += read_record(flappy_record, {1: "flappy"})
        fault = f"one of {DEVICES} devices flapping ({flaps} SIGKILLs of its simulator)"
        tally = _Run(fault, served, metrics, "mqtt", found, (start, end), gateway.log()).tally()
        tally.rates = _rates(watch, _units(1, DEVICES - 1).values(), start, end)
    if tally.served > tally.accepted:
        tally.notes.append(
            f"{tally.served - tally.accepted} readings served just before a simulator SIGKILL "
            "never reached the gateway"
        )
    slowest = math.floor(min(tally.rates.values()) * 1000) / 10
    tally.notes.append(f"the other devices polled at ≥ {slowest:.1f} % of their nominal rate")
    return tally


def _rates(
    watch: MqttWatch, devices: Iterable[str], start_ns: int, end_ns: int
) -> dict[str, float]:
    """Each device's distinct cycles within the window, as a fraction of nominal."""
    nominal = (end_ns - start_ns) / 1e9 / INTERVAL
    start_ms, end_ms = start_ns / 1e6, end_ns / 1e6
    rates = {}
    for device in devices:
        stamps = {m.json()["ts"] for m in watch.messages(f"{PREFIX}/{GW}/{device}/telemetry")}
        rates[device] = sum(1 for ts in stamps if start_ms <= ts < end_ms) / nominal
    return rates


SCENARIOS: dict[str, Callable[[Path, float], Tally]] = {
    "broker": broker_outage,
    "tsdb": tsdb_outage,
    "crash": gateway_crash,
    "cap": lambda workdir, _outage: outbox_cap(workdir),
    "flapping": lambda workdir, _outage: device_flapping(workdir),
    "disk_full": disk_full,
    "second": second_instance,
    "damaged": damaged_database,
    "history_lock": history_locked,
    "power_full": lambda workdir, outage: power_cut(workdir, outage, "full"),
    "power_normal": lambda workdir, outage: power_cut(workdir, outage, "normal"),
    "core_task": core_task_killed,
}
"""Every scenario by name, called with (workdir, outage seconds): what the script runs."""
