"""What each sink is promised: QoS 1 and 2 at-least-once behind the outbox; QoS 0 at-most-once,
outside it, said at start and in /readyz."""

from __future__ import annotations

import logging
from pathlib import Path

import orjson
import pytest

from gateway.api.routes.system import readyz
from gateway.config import parse_config
from gateway.runtime import Runtime
from gateway.sinks.mqtt import MqttSink
from gateway.sinks.mqtt_config import MqttConfig
from tests.unit.test_runtime import Factory


@pytest.mark.parametrize(("qos", "durable"), [(0, False), (1, True), (2, True)])
def test_only_acknowledged_qos_is_durable(qos: int, durable: bool) -> None:
    assert MqttSink(MqttConfig.model_validate({"qos": qos}), "gw", "plant").durable is durable


async def test_a_qos_0_sink_skips_the_outbox_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = parse_config({"gateway": {"id": "gw", "data_dir": str(tmp_path)}})
    fast = MqttSink(MqttConfig(qos=0, port=9), "gw", "fast")
    safe = MqttSink(MqttConfig(qos=1, port=9), "gw", "safe")
    runtime = Runtime(config, [fast, safe], {"modbus": Factory()})
    assert runtime.outbox is not None
    assert set(runtime.outbox.pending_readings) == {"safe"}
    with caplog.at_level(logging.WARNING, logger="gateway.sinks.mqtt"):
        await fast.start()
        await safe.start()
    assert [r.getMessage().split(":")[0] for r in caplog.records if "QoS 0" in r.getMessage()] == [
        "sink fast"
    ]
    answer = await readyz(runtime)
    assert orjson.loads(answer.body)["delivery"] == {
        "fast": "at-most-once",
        "safe": "at-least-once",
    }
    await fast.stop()
    await safe.stop()
    runtime.outbox.close()
