"""The InfluxDB sink's HTTP side against a scripted server: requests, statuses, timeouts.

The real servers here (VictoriaMetrics, InfluxDB 1.6) never answer 429 or 503, and
VictoriaMetrics accepts any token, so these cases are played by an in-process aiohttp server
that answers what each test scripts, through the same influxdb-client and aiohttp code paths.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pydantic import SecretStr

from gateway.errors import RetryableSinkError, SinkError
from gateway.reading import Batch, Quality, Reading
from gateway.sinks.influx import InfluxSink
from gateway.sinks.influx_config import InfluxConfig
from tests.support.processes import free_port

pytestmark = pytest.mark.integration

T0 = 1_732_600_000_123_000_000


@dataclass
class Seen:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class ScriptedInflux:
    """Answers every write with ``status``/``body``/``headers``; ``hold`` stalls answers."""

    url: str
    status: int = 204
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    hold: asyncio.Event | None = None
    seen: list[Seen] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append(
            Seen(request.path, dict(request.query), dict(request.headers), await request.read())
        )
        if self.hold is not None:
            await self.hold.wait()
        return web.Response(status=self.status, text=self.body or None, headers=self.headers)


@pytest.fixture
async def server() -> AsyncIterator[ScriptedInflux]:
    port = free_port()
    scripted = ScriptedInflux(f"http://127.0.0.1:{port}")
    app = web.Application()
    app.router.add_post("/{tail:.*}", scripted.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield scripted
    finally:
        if scripted.hold is not None:
            scripted.hold.set()
        await runner.cleanup()


def v2(url: str, **options: Any) -> InfluxConfig:
    return InfluxConfig(url=url, org="plant", bucket="b1", token=SecretStr("t0k3n"), **options)


def v1(url: str, **options: Any) -> InfluxConfig:
    password = SecretStr("pw")
    return InfluxConfig(
        api="v1", url=url, database="db1", username="gw", password=password, **options
    )


def batch(device: str = "press-1", value: float = 61.5, ns: int = T0) -> Batch:
    return Batch(device, [Reading(device, "temp", value, Quality.GOOD, ns, ns)], ns, {"line": "1"})


async def started(config: InfluxConfig) -> InfluxSink:
    sink = InfluxSink(config, "gw1")
    await sink.start()
    return sink


@pytest.mark.parametrize("compress", [False, True])
async def test_v2_posts_line_protocol_with_token_org_bucket_precision(
    server: ScriptedInflux, compress: bool
) -> None:
    sink = await started(v2(server.url + "/", gzip=compress))
    try:
        await sink.write([batch(), batch("press-2", 1.0)])
    finally:
        await sink.stop()
    [request] = server.seen
    assert request.path == "/api/v2/write"
    assert request.query == {"org": "plant", "bucket": "b1", "precision": "ms"}
    assert request.headers["Authorization"] == "Token t0k3n"
    # aiohttp's server has already decompressed the body: the header says it was compressed.
    assert request.headers.get("Content-Encoding") == ("gzip" if compress else None)
    ms = T0 // 1_000_000
    assert request.body.decode().split("\n") == [
        f"telemetry,device=press-1,gateway=gw1,line=1 temp=61.5 {ms}",
        f"telemetry,device=press-2,gateway=gw1,line=1 temp=1.0 {ms}",
    ]
    assert sink.written_points == 2


@pytest.mark.parametrize("compress", [False, True])
async def test_v1_posts_to_write_with_database_policy_and_basic_auth(
    server: ScriptedInflux, compress: bool
) -> None:
    config = v1(server.url, retention_policy="week", precision="us", gzip=compress)
    sink = await started(config)
    try:
        await sink.write([batch()])
    finally:
        await sink.stop()
    [request] = server.seen
    assert request.path == "/write"
    assert request.query == {"db": "db1", "rp": "week", "precision": "u"}
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"gw:pw").decode()
    assert request.headers.get("Content-Encoding") == ("gzip" if compress else None)
    assert (
        request.body
        == f"telemetry,device=press-1,gateway=gw1,line=1 temp=61.5 {T0 // 1000}".encode()
    )


async def test_a_url_path_prefix_is_kept(server: ScriptedInflux) -> None:
    sink = await started(v1(server.url + "/influx/"))
    try:
        await sink.write([batch()])
    finally:
        await sink.stop()
    assert server.seen[0].path == "/influx/write"


async def test_nothing_to_write_sends_nothing(server: ScriptedInflux) -> None:
    sink = await started(v2(server.url))
    try:
        bad = Reading("d", "x", None, Quality.BAD, T0, T0, "timeout")
        await sink.write([Batch("d", [bad], T0)])
    finally:
        await sink.stop()
    assert server.seen == []


# (status, body, headers, expected error class or None for a partial write)
ANSWERS: list[tuple[int, str, dict[str, str], type[SinkError]]] = [
    (429, '{"code":"too many requests","message":"slow down"}', {"Retry-After": "3"},
     RetryableSinkError),
    (503, "", {}, RetryableSinkError),
    (500, '{"error":"timeout"}', {}, RetryableSinkError),
    # A misconfigured database holds the data: retried every 30 s until the config is fixed.
    (401, '{"code":"unauthorized","message":"unauthorized access"}', {}, RetryableSinkError),
    (403, '{"code":"forbidden","message":"insufficient permissions for write"}', {},
     RetryableSinkError),
    (404, '{"code":"not found","message":"bucket \\"b1\\" not found"}', {}, RetryableSinkError),
]  # fmt: skip


@pytest.mark.parametrize("api", ["v2", "v1"])
@pytest.mark.parametrize(
    ("status", "body", "headers", "kind"), ANSWERS, ids=[str(a[0]) for a in ANSWERS]
)
async def test_error_statuses_raise_retryable_or_final_errors(
    server: ScriptedInflux,
    api: str,
    status: int,
    body: str,
    headers: dict[str, str],
    kind: type[SinkError],
) -> None:
    server.status, server.body, server.headers = status, body, headers
    sink = await started(v2(server.url) if api == "v2" else v1(server.url))
    try:
        with pytest.raises(SinkError) as caught:
            await sink.write([batch()])
    finally:
        await sink.stop()
    assert type(caught.value) is kind
    assert f"HTTP {status}" in str(caught.value)
    if body:
        assert body.split('"')[-2].replace("\\", "") in str(caught.value)
    if "Retry-After" in headers:
        assert isinstance(caught.value, RetryableSinkError)
        assert caught.value.retry_after == 3.0


@pytest.mark.parametrize("api", ["v2", "v1"])
async def test_a_partial_write_counts_rejected_points_and_logs_once(
    server: ScriptedInflux, api: str, caplog: pytest.LogCaptureFixture
) -> None:
    server.status = 400
    server.body = (
        '{"error":"partial write: field type conflict: input field \\"temp\\" on measurement '
        '\\"telemetry\\" is type float, already exists as type integer dropped=1"}'
    )
    sink = await started(v2(server.url) if api == "v2" else v1(server.url))
    try:
        with caplog.at_level(logging.WARNING, logger="gateway.sinks.influx"):
            for _ in range(3):
                await sink.write([batch(), batch("press-2")])
    finally:
        await sink.stop()
    assert (sink.rejected_points, sink.written_points) == (3, 3)
    assert sink.last_rejection is not None and "field type conflict" in sink.last_rejection
    [warning] = [r for r in caplog.records if "rejected" in r.getMessage()]
    assert "field type conflict" in warning.getMessage()


async def test_a_400_that_does_not_count_rejects_the_whole_write(server: ScriptedInflux) -> None:
    server.status, server.body = 400, '{"code":"invalid","message":"failed to parse"}'
    sink = await started(v2(server.url))
    try:
        await sink.write([batch(), batch("press-2")])
    finally:
        await sink.stop()
    assert (sink.rejected_points, sink.written_points) == (2, 0)


@pytest.mark.parametrize("api", ["v2", "v1"])
async def test_a_server_that_does_not_answer_times_out_as_retryable(
    server: ScriptedInflux, api: str
) -> None:
    server.hold = asyncio.Event()
    config = v2(server.url, timeout=0.3) if api == "v2" else v1(server.url, timeout=0.3)
    sink = await started(config)
    try:
        with pytest.raises(RetryableSinkError, match=r"no answer within 0\.3 s"):
            await sink.write([batch()])
    finally:
        await sink.stop()


@pytest.mark.parametrize("api", ["v2", "v1"])
async def test_nothing_listening_is_retryable(api: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    sink = await started(v2(url) if api == "v2" else v1(url))
    try:
        with pytest.raises(RetryableSinkError, match="unreachable"):
            await sink.write([batch()])
    finally:
        await sink.stop()


async def test_writing_before_start_is_retryable_and_stop_is_idempotent() -> None:
    sink = InfluxSink(v2("http://127.0.0.1:9"), "gw1")
    with pytest.raises(RetryableSinkError, match="not started"):
        await sink.write([batch()])
    await sink.start()
    await sink.start()
    await sink.stop()
    await sink.stop()


@pytest.mark.parametrize("api", ["v2", "v1"])
async def test_an_unusable_ca_file_fails_at_start(api: str, tmp_path: Path) -> None:
    url, missing = "https://127.0.0.1:9", tmp_path / "missing-ca.pem"
    config = v2(url, ca_file=missing) if api == "v2" else v1(url, ca_file=missing)
    with pytest.raises(SinkError, match="TLS CA file"):
        await InfluxSink(config, "gw1").start()
