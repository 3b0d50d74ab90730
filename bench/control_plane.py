"""Control plane at plant scale: 10,000 devices registered in bulk, then a restart.

A gateway (one file device polling the Modbus simulator every 0.1 s, so that a held event loop
shows as skipped cycles) gets ``--devices`` devices registered through the API as CSV in a few
bulk calls: most disabled, ``--enabled`` of them enabled against a closed port (connecting and
failing all the time). Then, at that size: p50/p99 of list (a page of 100, filtered by state and
by label), status, counts, register (one device) and patch, the longest event-loop lag
(``gateway_event_loop_lag_max_seconds``, the loop-lag monitor), RSS; then a restart (SIGTERM,
start again): time to /healthz and to the first page of devices.

    python -m bench.control_plane --devices 10000

Reuses the integration tests' process helpers (tests/support): run it from the repository.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import httpx
import psutil

from bench.measure import percentile
from tests.support.gateway import ADMIN_TOKEN, GatewayProcess
from tests.support.processes import free_port, wait_until
from tests.support.simulator import ModbusSimulator

TAGS = [{"name": f"r{i}", "address": i} for i in range(10)]
CHUNK = 5000
"""Devices per bulk call (a CSV of 5,000 rows is ~300 KB, well under the 1 MB body limit)."""


def config(sim: ModbusSimulator) -> dict[str, Any]:
    profile = {"id": "meter", "type": "modbus", "groups": [{"interval": 0.1, "tags": TAGS}]}
    file_device = {"id": "file-plc", "type": "modbus", "host": "127.0.0.1", "port": sim.port,
                   "profile": "meter"}  # fmt: skip
    return {
        "gateway": {"id": "cp-gw", "log_level": "INFO"},
        "runtime": {"reconnect_min": 1, "reconnect_max": 30},
        "profiles": [profile],
        "devices": [file_device],
    }


def csv_rows(first: int, count: int, enabled: int, closed_port: int) -> str:
    lines = ["id,host,port,unit,enabled,labels"]
    for n in range(first, first + count):
        on = "true" if n < enabled else "false"
        lines.append(f"m-{n:05d},127.0.0.1,{closed_port},1,{on},line={n % 20};cell=c{n % 7}")
    return "\n".join(lines) + "\n"


def timed(call: Callable[[], httpx.Response], times: int, expect: int = 200) -> list[float]:
    """Milliseconds per call."""
    took = []
    for _ in range(times):
        start = time.perf_counter()
        response = call()
        took.append((time.perf_counter() - start) * 1000)
        if response.status_code != expect:
            raise RuntimeError(f"{response.request.url}: {response.status_code} {response.text}")
    return took


def row(name: str, samples: list[float]) -> str:
    p50, p99 = statistics.median(samples), percentile(samples, 0.99)
    return f"| {name} | {len(samples)} | {p50:.1f} | {p99:.1f} | {max(samples):.1f} |"


def metric(api: httpx.Client, name: str, text: str | None = None, **labels: str) -> float:
    """A sample of /metrics (of ``text``, a scrape already made, if given)."""
    text = api.get("/metrics").text if text is None else text
    wanted = name + (
        "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else ""
    )
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.split()[-1])
    raise LookupError(f"{wanted} not in /metrics")


def lags_over_50ms(api: httpx.Client) -> int:
    """Loop-lag samples above 50 ms since the start (from the histogram, in one scrape)."""
    text = api.get("/metrics").text
    within = metric(api, "gateway_event_loop_lag_seconds_bucket", text, le="0.05")
    return int(metric(api, "gateway_event_loop_lag_seconds_count", text) - within)


def measure(api: httpx.Client, devices: int, new_prefix: str) -> list[str]:
    rows = []
    total = api.get("/api/v1/devices", params={"limit": 1}).json()["total"]
    assert total == devices + 1, total
    rows.append(row("list, page of 100", timed(lambda: api.get("/api/v1/devices"), 200)))
    rows.append(
        row(
            "list, page of 1,000",
            timed(lambda: api.get("/api/v1/devices", params={"limit": 1000}), 30),
        )
    )
    rows.append(
        row(
            "list ?state=offline",
            timed(lambda: api.get("/api/v1/devices", params={"state": "offline"}), 100),
        )
    )
    rows.append(
        row(
            "list ?label=line=3&label=cell=c2",
            timed(
                lambda: api.get(
                    "/api/v1/devices", params=[("label", "line=3"), ("label", "cell=c2")]
                ),
                100,
            ),
        )
    )
    rows.append(row("counts by state", timed(lambda: api.get("/api/v1/devices/counts"), 100)))
    rows.append(row("/metrics scrape", timed(lambda: api.get("/metrics"), 30)))
    ids = iter(range(10**6))
    rows.append(
        row(
            "status of one device",
            timed(lambda: api.get(f"/api/v1/devices/m-{next(ids) % devices:05d}/status"), 200),
        )
    )
    new = iter(range(10**6))

    def register() -> httpx.Response:
        body = {"id": f"{new_prefix}-{next(new)}", "type": "modbus", "host": "127.0.0.1", "port": 9,
                "profile": "meter", "enabled": False}  # fmt: skip
        return api.post("/api/v1/devices", json=body)

    rows.append(row("register one device", timed(register, 200, expect=201)))
    patched = iter(range(10**6))

    def patch() -> httpx.Response:
        n = next(patched)
        body = {"labels": {"line": str(n % 20), "note": f"n{n}"}}
        return api.patch(f"/api/v1/devices/m-{n % devices:05d}", json=body)

    rows.append(row("patch labels", timed(patch, 200)))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--enabled", type=int, default=1000, help="of them enabled (closed port)")
    args = parser.parse_args(argv)
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with TemporaryDirectory(prefix="bench-cp-") as workdir:
        sim = ModbusSimulator(Path(workdir) / "sim")
        sim.start()
        gateway = GatewayProcess(Path(workdir) / "gw", config(sim))
        try:
            gateway.start()
            gateway.wait_api(60)
            api = httpx.Client(base_url=gateway.api_url, headers=headers, timeout=120)
            at_start = lags_over_50ms(api)
            closed = free_port()
            bulk = []
            for first in range(0, args.devices, CHUNK):
                count = min(CHUNK, args.devices - first)
                body = csv_rows(first, count, args.enabled, closed)
                start = time.perf_counter()
                answer = api.post(
                    "/api/v1/devices/bulk?profile=meter",
                    content=body,
                    headers={"content-type": "text/csv"},
                )
                bulk.append(time.perf_counter() - start)
                if answer.status_code != 201:
                    raise RuntimeError(f"bulk: {answer.status_code} {answer.text[:500]}")
            print(
                f"registered {args.devices:,} devices ({args.enabled:,} enabled, closed port) in"
                f" {len(bulk)} CSV calls: {sum(bulk):.2f} s",
                flush=True,
            )
            skipped_before = metric(api, "gateway_device_skipped_cycles_total", device="file-plc")
            print("\n| call | n | p50 ms | p99 ms | max ms |\n| --- | ---: | ---: | ---: | ---: |")
            lag_bulk = metric(api, "gateway_event_loop_lag_max_seconds")
            in_bulk = lags_over_50ms(api) - at_start
            for line in measure(api, args.devices, "new"):
                print(line, flush=True)
            lag = metric(api, "gateway_event_loop_lag_max_seconds")
            in_calls = lags_over_50ms(api) - at_start - in_bulk
            skipped = metric(api, "gateway_device_skipped_cycles_total", device="file-plc")
            rss = psutil.Process(gateway.process.pid).memory_info().rss / 2**20
            print(
                f"\nlongest event-loop lag: {lag_bulk * 1000:.0f} ms up to the end of the bulk"
                f" registration, {lag * 1000:.0f} ms by the end of the calls; lags over 50 ms:"
                f" {at_start} at the start, {in_bulk} during the bulk, {in_calls} during the calls;"
                f" the file device's skipped cycles during the calls: {skipped - skipped_before:g};"
                f" RSS {rss:.0f} MiB",
                flush=True,
            )
            assert gateway.stop() == 0
            start = time.perf_counter()
            gateway.start()

            def healthy() -> bool:
                try:
                    return httpx.get(f"{gateway.api_url}/healthz", timeout=1).status_code == 200
                except httpx.TransportError:
                    return False

            wait_until(healthy, 300, "/healthz after the restart", interval=0.02)
            to_health = time.perf_counter() - start
            after_start = lags_over_50ms(api)
            first_page = api.get("/api/v1/devices")
            to_list = time.perf_counter() - start
            assert first_page.json()["total"] == args.devices + 201, first_page.text[:300]
            restored = [line for line in gateway.log().splitlines() if "restored" in line]
            wait_until(
                lambda: metric(api, "gateway_devices", state="offline") >= args.enabled,
                120,
                "the enabled devices polled (and failing) after the restart",
            )
            settled = measure(api, args.devices + 200, "newer")
            rss = psutil.Process(gateway.process.pid).memory_info().rss / 2**20
            lag = metric(api, "gateway_event_loop_lag_max_seconds")
            told = restored[-1].split("] ")[-1] if restored else "no restore line"
            print(
                f"\nrestart with {args.devices + 200:,} API devices: /healthz after"
                f" {to_health:.2f} s, first page after {to_list:.2f} s ({told})"
            )
            print("\n| after the restart | n | p50 ms | p99 ms | max ms |")
            print("| --- | ---: | ---: | ---: | ---: |")
            for line in settled:
                print(line)
            later = lags_over_50ms(api) - after_start
            print(
                f"\nafter the restart: longest event-loop lag {lag * 1000:.0f} ms (start"
                f" included); lags over 50 ms: {after_start} by /healthz, {later} after;"
                f" RSS {rss:.0f} MiB"
            )
        finally:
            gateway.stop()
            sim.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
