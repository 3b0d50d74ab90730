"""The MQTT sink against a real Mosquitto: payloads, retained status, last will, outages, auth."""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import RetryableSinkError
from gateway.reading import Batch, Quality, Reading
from gateway.sinks import mqtt_session
from gateway.sinks.mqtt import MqttSink
from gateway.sinks.mqtt_config import MqttConfig, MqttTlsConfig
from gateway.sinks.mqtt_payload import encode_telemetry
from gateway.status import DeviceState, DeviceStatus
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt_watch import MqttWatch, Received
from tests.support.processes import ManagedProcess, async_wait_until, free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
FAST: dict[str, Any] = {"reconnect_min": 0.05, "reconnect_max": 0.2, "publish_timeout": 5.0}


def config_for(broker: Mosquitto, **overrides: Any) -> MqttConfig:
    return MqttConfig(host=broker.host, port=broker.port, **{**FAST, **overrides})


def new_gateway_id() -> str:
    return f"gw-{uuid.uuid4().hex[:8]}"


def make_batch(device: str, cycle: int, tags: int = 3) -> Batch:
    now = time.time_ns()
    readings = [
        Reading(device, f"hr{i}", cycle * 1000 + i, Quality.GOOD, now, now) for i in range(tags)
    ]
    readings.append(Reading(device, "flaky", None, Quality.BAD, now, now, "exception code 2"))
    return Batch(device=device, readings=readings, cycle_ns=now)


@asynccontextmanager
async def running(
    config: MqttConfig, gateway_id: str, connect: bool = True
) -> AsyncIterator[MqttSink]:
    sink = MqttSink(config, gateway_id)
    await sink.start()
    try:
        if connect:
            assert await sink.wait_connected(10), "sink did not connect"
        yield sink
    finally:
        await sink.stop()


def watch(broker: Mosquitto, topic_filter: str, **options: Any) -> MqttWatch:
    return MqttWatch(broker.host, broker.port, topic_filter, **options)


def state_is(state: str, retained: bool | None = None) -> Callable[[Received], bool]:
    def matches(message: Received) -> bool:
        body = message.json()
        return (
            isinstance(body, dict)
            and body.get("state") == state
            and (retained is None or message.retain is retained)
        )

    return matches


async def test_telemetry_arrives_as_encoded_with_qos_1(mosquitto: Mosquitto) -> None:
    gw = new_gateway_id()
    batches = [make_batch("press-1", 1), make_batch("press-2", 1), make_batch("press-1", 2)]
    with watch(mosquitto, f"gateway/{gw}/+/telemetry") as watcher:
        async with running(config_for(mosquitto), gw) as sink:
            await sink.write(batches)
            received = watcher.wait_for_count(f"gateway/{gw}/+/telemetry", 3)
    assert [(m.topic, m.payload, m.qos, m.retain) for m in received] == [
        (f"gateway/{gw}/{b.device}/telemetry", encode_telemetry(b), 1, False) for b in batches
    ]
    assert received[0].json()["bad"] == {"flaky": "exception code 2"}


@pytest.mark.parametrize("qos", [0, 1, 2])
async def test_a_burst_arrives_complete_and_in_order(mosquitto: Mosquitto, qos: int) -> None:
    gw = new_gateway_id()
    batches = [make_batch(f"d{i % 10}", i, tags=125) for i in range(1000)]
    with watch(mosquitto, f"gateway/{gw}/+/telemetry", qos=qos) as watcher:
        async with running(config_for(mosquitto, qos=qos), gw) as sink:
            await sink.write(batches)
            received = watcher.wait_for_count("#", len(batches), timeout=30)
    assert [m.payload for m in received] == [encode_telemetry(b) for b in batches]


async def test_a_full_socket_is_drained_by_the_one_shot_writer(
    mosquitto: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    """QoS 0 writes return once the socket took everything; nothing waits for the 1 s tick."""
    monkeypatch.setattr(mqtt_session, "_TICK", 3600.0)  # only the writer can drain the socket
    async with running(config_for(mosquitto, qos=0), new_gateway_id()) as sink:
        mosquitto.process.suspend()  # the broker stops reading: the socket buffers fill up
        batches = [make_batch("d", i, tags=125) for i in range(6000)]  # ~14 MB
        write = asyncio.create_task(sink.write(batches))
        await asyncio.sleep(0)  # the write publishes everything it can, then waits
        assert not write.done(), "the burst fitted into the socket buffers"
        mosquitto.process.resume()
        await asyncio.wait_for(write, 10)


async def test_status_is_retained_for_late_subscribers(mosquitto: Mosquitto) -> None:
    gw = new_gateway_id()
    status = DeviceStatus(device="press-1", state=DeviceState.ONLINE, polls=3, connects=1)
    async with running(config_for(mosquitto), gw) as sink:
        await sink.publish_device_statuses([status, DeviceStatus(device="press-2")])

        with watch(mosquitto, f"gateway/{gw}/#") as late:
            gateway = await late.wait_for_async(lambda m: m.topic == f"gateway/{gw}/status")
            device = await late.wait_for_async(lambda m: m.topic == f"gateway/{gw}/press-1/status")
        assert gateway.retain and device.retain
        assert gateway.json()["state"] == "online"
        body = device.json()
        assert body.pop("ts") <= time.time() * 1000
        assert body == status.public()

        await sink.clear_device_status("press-1")
        with watch(mosquitto, f"gateway/{gw}/#") as later:
            later.barrier()  # every retained message has arrived by now
            topics = sorted(m.topic for m in later.messages())
        assert topics == [f"gateway/{gw}/press-2/status", f"gateway/{gw}/status"]


async def test_clean_stop_publishes_offline_and_the_will_is_not_used(
    mosquitto: Mosquitto,
) -> None:
    gw = new_gateway_id()
    topic = f"gateway/{gw}/status"
    with watch(mosquitto, topic) as watcher:
        async with running(config_for(mosquitto), gw) as sink:
            await watcher.wait_for_async(state_is("online"))
            stopped_ms = time.time() * 1000
        mosquitto.process.wait_for_line(rf"Client {gw}\.mqtt disconnected\.$")  # clean: no will
        await sink.stop()  # idempotent: nothing more is sent
        assert not sink.connected
        watcher.barrier()
        states = [(body["state"], body["ts"]) for body in watcher.payloads(topic)]
    assert [state for state, _ in states] == ["online", "offline"]
    assert states[1][1] >= stopped_ms - 1  # our "offline", stamped at stop, not the will


async def test_a_dead_gateway_gets_its_last_will(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """The sink runs in a child process that is SIGKILLed: the broker publishes the will."""
    gw = new_gateway_id()
    script = (
        "import asyncio, sys\n"
        "from gateway.sinks.mqtt import MqttSink\n"
        "from gateway.sinks.mqtt_config import MqttConfig\n"
        "async def main():\n"
        "    sink = MqttSink(MqttConfig(host=sys.argv[1], port=int(sys.argv[2])), sys.argv[3])\n"
        "    await sink.start()\n"
        "    if not await sink.wait_connected(10):\n"
        "        sys.exit('not connected')\n"
        "    print('connected')\n"
        "    await asyncio.Event().wait()\n"
        "asyncio.run(main())\n"
    )
    gateway = ManagedProcess(
        [sys.executable, "-c", script, mosquitto.host, str(mosquitto.port), gw],
        tmp_path,
        name="gateway",
        env={"PYTHONPATH": str(REPO)},
        cwd=REPO,
    )
    topic = f"gateway/{gw}/status"
    with watch(mosquitto, topic) as watcher, gateway:
        gateway.wait_for_line("^connected$")
        await watcher.wait_for_async(state_is("online"))
        gateway.kill()
        await watcher.wait_for_async(state_is("offline"))
    with watch(mosquitto, topic) as late:
        retained = await late.wait_for_async(state_is("offline", retained=True))
    assert retained.qos == 1


async def test_a_late_will_is_undone_by_the_next_status_refresh(mosquitto: Mosquitto) -> None:
    """On a broker cluster, the will of a connection lost with one node can be published after
    the gateway said "online" on another (seen with NATS): the device statuses' periodic
    refresh says "online" again, retained, with the connection's own time."""
    gw = new_gateway_id()
    topic = f"gateway/{gw}/status"
    async with running(config_for(mosquitto), gw) as sink:
        with watch(mosquitto, topic) as watcher:
            first = await watcher.wait_for_async(state_is("online"))
            watcher.publish(topic, b'{"state":"offline","ts":1}', retain=True)
            await watcher.wait_for_async(state_is("offline"))
            watcher.clear()
            await sink.publish_device_statuses([DeviceStatus(device="press-1")])
            again = await watcher.wait_for_async(state_is("online"))
        assert again.json() == first.json()
        with watch(mosquitto, topic) as late:
            await late.wait_for_async(state_is("online", retained=True))


async def test_broker_outage_fails_fast_then_recovers_by_itself(
    mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.sinks")
    gw = new_gateway_id()
    async with running(config_for(mosquitto), gw) as sink:
        await sink.write([make_batch("d", 1)])

        mosquitto.stop()
        await async_wait_until(lambda: not sink.connected, 5, message="sink sees the outage")
        started = time.monotonic()
        for _ in range(3):
            with pytest.raises(
                RetryableSinkError, match=f"not connected to broker .+:{mosquitto.port}"
            ):
                await sink.write([make_batch("d", 2)])
        assert time.monotonic() - started < 0.5  # at once, not after publish_timeout

        # Several reconnect attempts fail while the broker is down...
        await async_wait_until(lambda: "Connection refused" in caplog.text, 5)
        mosquitto.start()
        with watch(mosquitto, f"gateway/{gw}/#") as watcher:
            assert await sink.wait_connected(10)
            await sink.write([make_batch("d", 3)])
            await watcher.wait_for_async(lambda m: m.topic.endswith("/d/telemetry"))
            await watcher.wait_for_async(state_is("online"))

    # ...yet the outage is one warning, its reason one line, its end one line.
    logged = [(r.levelname, r.getMessage()) for r in caplog.records if r.levelno >= logging.INFO]
    assert [level for level, _ in logged] == ["INFO", "WARNING", "INFO", "INFO"], logged
    assert "lost the connection" in logged[1][1]
    assert "still unavailable: [Errno 111] Connection refused" in logged[2][1]
    assert "reachable again" in logged[3][1]


async def test_a_write_waiting_for_acks_fails_when_the_connection_drops(
    mosquitto: Mosquitto,
) -> None:
    gw = new_gateway_id()
    async with running(config_for(mosquitto, publish_timeout=30), gw) as sink:
        mosquitto.process.suspend()  # the broker stops acknowledging
        write = asyncio.create_task(sink.write([make_batch("d", i) for i in range(5)]))
        await asyncio.sleep(0)  # let the write publish and start waiting
        assert not write.done()
        started = time.monotonic()
        mosquitto.kill()  # the kernel closes the broker's sockets
        with pytest.raises(RetryableSinkError, match=r"connection to broker .* lost"):
            await asyncio.wait_for(write, 10)
        assert time.monotonic() - started < 2
        assert not sink.connected


async def test_a_write_times_out_when_the_broker_hangs(mosquitto: Mosquitto) -> None:
    gw = new_gateway_id()
    async with running(config_for(mosquitto, publish_timeout=0.3), gw) as sink:
        mosquitto.process.suspend()
        try:
            with pytest.raises(RetryableSinkError, match=r"did not acknowledge 1 message\(s\)"):
                await sink.write([make_batch("d", 1)])
        finally:
            mosquitto.process.resume()
        await sink.write([make_batch("d", 2)])  # the connection survived


async def test_start_does_not_wait_for_a_missing_broker(tmp_path: Path) -> None:
    config = MqttConfig(port=free_port(), **FAST)
    started = time.monotonic()
    async with running(config, new_gateway_id(), connect=False) as sink:
        assert time.monotonic() - started < 1
        assert not sink.connected
        with pytest.raises(RetryableSinkError, match="not connected"):
            await sink.publish_device_statuses([DeviceStatus(device="d")])
        with pytest.raises(RetryableSinkError, match="not connected"):
            await sink.clear_device_status("d")
    assert time.monotonic() - started < 2  # stop() is bounded even mid-reconnect


async def test_username_and_password(
    mosquitto_factory: Callable[..., Mosquitto], caplog: pytest.LogCaptureFixture
) -> None:
    broker = mosquitto_factory(users={"gateway": "s3cret", "watcher": "w"})
    gw = new_gateway_id()
    config = config_for(broker, username="gateway", password="s3cret")
    with watch(broker, f"gateway/{gw}/#", username="watcher", password="w") as watcher:
        async with running(config, gw) as sink:
            await sink.write([make_batch("d", 1)])
            await watcher.wait_for_async(lambda m: m.topic.endswith("/telemetry"))

    caplog.set_level(logging.INFO, logger="gateway.sinks")
    wrong = config_for(broker, username="gateway", password="wrong")
    async with running(wrong, new_gateway_id(), connect=False) as sink:
        await async_wait_until(lambda: "refused the connection" in caplog.text, 10)
        broker.process.wait_for_line("not authorised")
        assert not sink.connected
    assert "Not authorized" in caplog.text or "Bad user name or password" in caplog.text


async def test_mqtt_5(mosquitto: Mosquitto) -> None:
    gw = new_gateway_id()
    batch = make_batch("press-1", 1)
    with watch(mosquitto, f"gateway/{gw}/#", protocol="5") as watcher:
        async with running(config_for(mosquitto, protocol="5"), gw) as sink:
            await sink.write([batch])
            await sink.publish_device_statuses([DeviceStatus(device="press-1")])
            telemetry = await watcher.wait_for_async(lambda m: m.topic.endswith("/telemetry"))
            await watcher.wait_for_async(lambda m: m.topic.endswith("/press-1/status"))
        await watcher.wait_for_async(state_is("offline"))
    assert telemetry.payload == encode_telemetry(batch)
    mosquitto.process.wait_for_line(rf"Client {gw}\.mqtt disconnected\.$")


@pytest.fixture
def certificates(tmp_path: Path) -> dict[str, Path]:
    """A throwaway CA and a broker certificate for 127.0.0.1, made with the openssl CLI."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    d = tmp_path / "certs"
    d.mkdir()

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test-ca",
        "-keyout", "ca.key", "-out", "ca.crt")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", "server.key", "-out", "server.csr")  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "1", "-extfile", "san.ext", "-out", "server.crt")  # fmt: skip
    return {name: d / name for name in ("ca.crt", "server.crt", "server.key")}


async def test_tls(certificates: dict[str, Path], tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "mosquitto-tls")
    ca, cert, key = (
        broker.readable_copy(certificates[n]) for n in ("ca.crt", "server.crt", "server.key")
    )
    broker.extra_config = f"cafile {ca}\ncertfile {cert}\nkeyfile {key}"
    gw = new_gateway_id()
    config = config_for(broker, tls=MqttTlsConfig(ca_file=certificates["ca.crt"]))
    batches = [make_batch("d", i, tags=125) for i in range(500)]
    with broker, watch(broker, f"gateway/{gw}/#", tls_ca=certificates["ca.crt"]) as watcher:
        async with running(config, gw) as sink:
            await sink.write(batches)  # every PUBACK is read through the SSL socket
        received = watcher.wait_for_count(f"gateway/{gw}/d/telemetry", len(batches))
        assert [m.payload for m in received] == [encode_telemetry(b) for b in batches]
        broker.process.wait_for_line(rf"Client {gw}\.mqtt disconnected\.$")


async def test_tls_refuses_a_broker_it_cannot_verify(
    certificates: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broker = Mosquitto(tmp_path / "mosquitto-tls")
    cert, key = (broker.readable_copy(certificates[n]) for n in ("server.crt", "server.key"))
    broker.extra_config = f"certfile {cert}\nkeyfile {key}"
    config = config_for(broker, tls=MqttTlsConfig())  # system CAs: the test CA is unknown
    with broker:
        async with running(config, new_gateway_id(), connect=False) as sink:
            await async_wait_until(lambda: "CERTIFICATE_VERIFY_FAILED" in caplog.text, 10)
            assert not sink.connected


@pytest.mark.parametrize(
    ("protocol", "configured", "expected"),
    [("3.1.1", None, 20), ("3.1.1", 64, 64), ("5", None, 5), ("5", 256, 5), ("5", 3, 3)],
)
async def test_the_in_flight_window_is_configured_and_bounded_by_the_brokers_receive_maximum(
    mosquitto_factory: Callable[..., Mosquitto],
    protocol: str,
    configured: int | None,
    expected: int,
) -> None:
    # Mosquitto tells MQTT 5 clients its max_inflight_messages as the CONNACK's Receive
    # Maximum; sending more than that unacknowledged is refused (3.1.1 has no way to say it:
    # the default stays at what brokers accept by default).
    broker = mosquitto_factory(extra_config="max_inflight_messages 5")
    config = config_for(broker, protocol=protocol, max_inflight=configured)
    gw = new_gateway_id()
    async with running(config, gw) as sink:
        conn = sink._conn
        assert conn is not None
        assert conn.client.max_inflight_messages == expected
        with watch(broker, f"gateway/{gw}/+/telemetry") as watcher:
            await sink.write([make_batch("d", i) for i in range(50)])  # more than the window
            await watcher.wait_for_async(lambda m: m.json()["values"]["hr0"] == 49_000)
