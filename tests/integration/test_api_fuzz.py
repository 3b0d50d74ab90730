"""Schemathesis against the live control plane's OpenAPI: no request may yield a 5xx.

Generated bodies may register devices; every address in them is pointed at a closed port on
this machine first, so the fuzzer never makes the gateway reach out anywhere else.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.support.gateway import ADMIN_TOKEN, GatewayProcess, example_profile
from tests.support.processes import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLOSED_PORT = free_port()


@pytest.fixture(scope="module")
def live_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    config = {
        "gateway": {"id": "fuzz"},
        "runtime": {"reconnect_min": 5, "reconnect_max": 30},
        "profiles": [example_profile()],
        "devices": [
            {
                "id": "file-plc",
                "type": "modbus",
                "host": "127.0.0.1",
                "port": CLOSED_PORT,
                "profile": "sim-plc",
            }
        ],
    }
    gateway = GatewayProcess(tmp_path_factory.mktemp("fuzz"), config).start()
    gateway.wait_api()
    yield gateway
    assert gateway.stop() == 0, gateway.process.describe()


def confine(body: Any) -> None:
    """Point every address in a generated body at a closed local port."""
    if isinstance(body, list):
        for item in body:
            confine(item)
    elif isinstance(body, dict):
        if "host" in body:
            body["host"] = "127.0.0.1"
            body["port"] = CLOSED_PORT
        if "endpoint" in body:
            body["endpoint"] = f"opc.tcp://127.0.0.1:{CLOSED_PORT}"
        if "serial_port" in body:
            body["serial_port"] = str(Path("/nonexistent/gateway-fuzz-tty"))
        for value in body.values():
            confine(value)


def test_no_request_yields_a_server_error(live_gateway: GatewayProcess) -> None:
    # Every check on. A schema-valid body may still break a rule JSON Schema cannot state (a
    # device names a profile or has groups; the profile must exist): 422, named, is right there.
    config = schemathesis.config.SchemathesisConfig.from_dict(
        {
            "checks": {
                "positive_data_acceptance": {
                    "expected-statuses": ["2xx", "401", "403", "404", "409", "422"]
                }
            }
        }
    )
    loaded = schemathesis.openapi.from_url(f"{live_gateway.api_url}/openapi.json", config=config)
    # The event stream never ends by design; test_control_plane covers it.
    # Discovery answers 502 by design for the unreachable servers generated bodies name
    # (tests/integration/test_discover.py covers it).
    schema = loaded.exclude(path="/api/v1/stream").exclude(
        path="/api/v1/protocols/{type}/discover", method="POST"
    )
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    tried = 0
    # Driven through hypothesis directly: schemathesis' pytest plugin does not load on pytest 9.
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # Err has no .ok(): a bad schema fails here

        @settings(
            max_examples=25,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def call(case: schemathesis.Case[Any]) -> None:
            confine(case.body)
            # Every built-in check: no 5xx, status codes, content types and bodies as the
            # document says, bad input refused, good input accepted, auth enforced.
            case.call_and_validate(headers=headers, timeout=10)

        call()
        tried += 1
    assert tried >= 15, "every operation of the API was exercised"
