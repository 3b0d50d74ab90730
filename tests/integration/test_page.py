"""The page at ``/`` in headless Chromium against a real gateway, simulators and broker.

Screenshots at laptop, tablet and phone sizes land in the test's tmp dir and in
build/screenshots/, those of the documentation (the device chart, the edit form, the OPC UA
picker, setting a value) in docs/screenshots/; their paths are printed for people to look at.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import math
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, Request, Route, ViewportSize, expect

from gateway.api.routes.page import CSP
from gateway.history import HISTORY_FILE, History, HistoryConfig
from gateway.reading import Batch, good_readings
from simulators.opcua.plant import NAMESPACE
from tests.support.browser import PageLog, chromium
from tests.support.gateway import ADMIN_TOKEN, VIEWER_TOKEN, GatewayProcess, example_profile
from tests.support.mosquitto import Mosquitto
from tests.support.opcua import OpcUaSimulator
from tests.support.processes import free_port
from tests.support.simulator import ModbusSimulator

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "build" / "screenshots"
DOCS = ROOT / "docs" / "screenshots"
LAPTOP = ViewportSize(width=1366, height=768)
TABLET = ViewportSize(width=768, height=1024)
PHONE = ViewportSize(width=390, height=844)
WAIT = 15_000
"""ms: the longest any effect may take (a status refresh is 5 s, a sparkline bucket 5 s)."""
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
OPERATOR_TOKEN = "test-operator-token-0123456789"
OPCUA_LOGIN = {"username": "operator", "password": "s3cret-0123"}


class Shoot(Protocol):
    def __call__(self, page: Page, name: str, *, docs: bool = False) -> Path: ...


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    expect.set_options(timeout=WAIT)
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModbusSimulator]:
    # The default period (0.1 s): counters and temperatures move between two polls.
    simulator = ModbusSimulator(tmp_path_factory.mktemp("sim"), "--units", "3").start()
    yield simulator
    simulator.stop()


@pytest.fixture(scope="module")
def broker(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    # After the browser: without chromium the tests skip before any process starts.
    mosquitto = Mosquitto(tmp_path_factory.mktemp("broker")).start()
    yield mosquitto
    mosquitto.close()


@pytest.fixture(scope="module")
def gateway(
    broker: Mosquitto, tmp_path_factory: pytest.TempPathFactory, sim: ModbusSimulator
) -> Iterator[GatewayProcess]:
    workdir = tmp_path_factory.mktemp("gateway")
    seed_history(workdir / "data" / HISTORY_FILE)
    process = GatewayProcess(workdir, gateway_config(broker, sim))
    process.start()
    try:
        process.wait_api()
        yield process
    finally:
        process.stop()


def seed_history(path: Path, hours: float = 3, every: float = 10) -> None:
    """The past few hours of filler-1's temperature, as if the gateway had been running, so
    its chart has a past at every range (the live samples join them)."""
    history = History(path, HistoryConfig(min_interval=0))
    now = time.time()
    for step in range(int(hours * 3600 / every), 0, -1):
        at = now - step * every
        value = 61 + 3 * math.sin(at / 600) + 0.6 * math.sin(at / 37)
        ns = int(at * 1e9)
        history.add(
            Batch("filler-1", good_readings("filler-1", ["temperature"], [value], ns, ns), ns)
        )
    # Playwright's sync API keeps an event loop running in this thread: flush on another.
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, history.flush()).result()
    history.close()


def sim_plc(device_id: str, sim: ModbusSimulator, **extra: Any) -> dict[str, Any]:
    """A device of the example's sim-plc profile on the simulator."""
    return {
        "id": device_id,
        "type": "modbus",
        "host": sim.host,
        "port": sim.port,
        "profile": "sim-plc",
        **extra,
    }


def gateway_config(broker: Mosquitto, sim: ModbusSimulator) -> dict[str, Any]:
    """Every state a device can be in: online, degraded (a tag in the simulator's address
    hole), offline (nothing listens on its port) and disabled; writes on, an operator token."""
    profile = example_profile()
    profile["groups"][0]["interval"] = 0.25

    def plc(device_id: str, unit: int, cell: str, **extra: Any) -> dict[str, Any]:
        labels = {"site": "plant1", "line": "line1", "cell": cell}
        return sim_plc(device_id, sim, unit=unit, labels=labels, **extra)

    mixer_tags = [
        {"name": "temperature", "address": 4, "data_type": "float32", "unit": "degC"},
        {
            "name": "pressure",
            "table": "input_register",
            "address": 0,
            "data_type": "float32",
            "unit": "bar",
        },
        {"name": "speed", "table": "input_register", "address": 2, "unit": "rpm"},
        {"name": "agitator", "address": 55},
        {"name": "run_command", "table": "coil", "address": 0, "data_type": "bool"},
    ]
    return {
        "gateway": {"id": "gw-page"},
        "sinks": {
            "mqtt": {
                "type": "mqtt",
                "host": broker.host,
                "port": broker.port,
                "topic_prefix": "page",
            },
            "local": {"type": "local", "history": {"min_interval": 1, "flush_interval": 0.2}},
        },
        "runtime": {"reconnect_min": 0.1, "reconnect_max": 0.5, "status_interval": 1},
        "writes": {"enabled": True},
        "api": {
            "tokens": [
                {"name": "test-admin", "token": ADMIN_TOKEN, "role": "admin"},
                {"name": "shift", "token": OPERATOR_TOKEN, "role": "operator"},
                {"name": "test-viewer", "token": VIEWER_TOKEN, "role": "viewer"},
            ]
        },
        "profiles": [profile],
        "devices": [
            plc("filler-1", 1, "filling"),
            plc("filler-2", 2, "filling"),
            plc("capper-1", 3, "capping"),
            {
                **plc("mixer-4", 1, "mixing", profile=None),
                "groups": [{"name": "mix", "interval": 0.5, "tags": mixer_tags}],
            },
            plc("labeler-5", 1, "labeling", port=free_port()),
            plc("palletizer-6", 1, "palletizing", enabled=False),
        ],
    }


@pytest.fixture(scope="module")
def opcua_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpcUaSimulator]:
    """Anonymous sessions, as the registration form's picker browses with the endpoint only."""
    simulator = OpcUaSimulator(tmp_path_factory.mktemp("opcua"))
    try:
        yield simulator.start()
    finally:
        simulator.stop()


@pytest.fixture(scope="module")
def opcua_login_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpcUaSimulator]:
    """Refuses anonymous sessions: a device of it stays online only with its stored password."""
    login = ["--username", OPCUA_LOGIN["username"], "--password", OPCUA_LOGIN["password"]]
    simulator = OpcUaSimulator(tmp_path_factory.mktemp("opcua-login"), *login)
    try:
        yield simulator.start()
    finally:
        simulator.stop()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=LAPTOP)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def shoot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Shoot:
    """Screenshot the viewport into tmp_path and build/screenshots/ (docs/screenshots/ for the
    documentation's), and say where."""

    def take(page: Page, name: str, *, docs: bool = False) -> Path:
        path = tmp_path / f"{name}.png"
        page.screenshot(path=path)
        folder = DOCS if docs else SCREENSHOTS
        folder.mkdir(parents=True, exist_ok=True)
        copy = Path(shutil.copy(path, folder / path.name))
        with capsys.disabled():
            print(f"\nscreenshot {name}: {copy} (also {path})")
        return copy

    return take


def card(page: Page, device_id: str) -> Locator:
    return page.locator(f'.card[data-device="{device_id}"]')


def no_horizontal_scroll(page: Page) -> bool:
    fits: bool = page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    return fits


def register(gateway: GatewayProcess, device: dict[str, Any]) -> None:
    response = httpx.post(f"{gateway.api_url}/api/v1/devices", json=device, headers=ADMIN)
    assert response.status_code == 201, response.text


def forget(gateway: GatewayProcess, device_id: str) -> None:
    """Delete a device a test registered, so the module's gateway keeps its six."""
    httpx.delete(f"{gateway.api_url}/api/v1/devices/{device_id}", headers=ADMIN)


def fetch(gateway: GatewayProcess, device_id: str) -> httpx.Response:
    return httpx.get(f"{gateway.api_url}/api/v1/devices/{device_id}", headers=ADMIN)


def open_view(page: Page, device_id: str) -> Locator:
    """The device view of ``device_id``, opened from its card's title."""
    # Off-screen cards skip rendering (content-visibility): their buttons have no role yet.
    card(page, device_id).scroll_into_view_if_needed()
    card(page, device_id).get_by_role("button", name=device_id, exact=True).click()
    view = page.get_by_role("dialog", name=device_id, exact=True)
    expect(view).to_be_visible()
    return view


def fits_viewport(page: Page, selector: str) -> None:
    """Wait until the element has been laid out again within the (resized) viewport."""
    page.wait_for_function(
        "s => { const r = document.querySelector(s).getBoundingClientRect();"
        " return r.width > 0 && r.right <= window.innerWidth + 0.5; }",
        arg=selector,
    )


def test_devices_states_live_values_and_sparklines(page: Page, gateway: GatewayProcess) -> None:
    log = PageLog.attach(page, gateway.api_url)
    page.goto(f"{gateway.api_url}/#token={ADMIN_TOKEN}")
    expect(page).to_have_url(f"{gateway.api_url}/")  # the token left the address bar
    expect(page.locator("#link")).to_have_text("Live")

    for device_id, state in [
        ("filler-1", "online"),
        ("filler-2", "online"),
        ("capper-1", "online"),
        ("mixer-4", "degraded"),
        ("labeler-5", "offline"),
        ("palletizer-6", "disabled"),
    ]:
        expect(card(page, device_id).locator(".badge")).to_have_text(state)
    expect(card(page, "labeler-5").locator(".badge")).to_have_attribute(
        "title", re.compile("offline: .")
    )
    expect(card(page, "mixer-4").locator('[data-tag="agitator"] .value')).to_have_text("bad")
    expect(card(page, "mixer-4").locator('[data-tag="agitator"] .value')).to_have_attribute(
        "title", re.compile("exception 2")
    )

    filler = card(page, "filler-1")
    count = filler.locator('[data-tag="part_count"] .value')
    expect(count).to_have_text(re.compile(r"^\d{1,3}(,\d{3})+$"))
    expect(count).not_to_have_text(count.inner_text())  # it moves
    expect(filler.locator('[data-tag="temperature"] .value')).to_have_text(
        re.compile(r"^\d+(\.\d{1,2})?$")
    )
    expect(filler.locator('[data-tag="temperature"] .unit')).to_have_text("degC")
    expect(filler.locator('[data-tag="temperature"] path.line')).to_have_attribute(
        "d", re.compile(r"^M[\d. ]+L")
    )
    filler.get_by_role("button", name="Show all 24 tags").click()
    heartbeat = filler.locator('[data-tag="plc_heartbeat"] .chip')
    expect(heartbeat).to_have_text(re.compile("^(on|off)$"))
    expect(heartbeat).not_to_have_text(heartbeat.inner_text())  # it toggles
    expect(filler.locator('[data-tag="model"] .value')).to_have_text("SIM-PLC-1")
    filler.get_by_role("button", name="Show fewer").click()

    page.get_by_label("Filter devices").fill("cell=capping")
    expect(page.locator(".card:visible")).to_have_count(1)
    expect(page.locator(".card:visible")).to_have_attribute("data-device", "capper-1")
    page.get_by_label("Filter devices").fill("")
    page.locator('#states [data-filter="offline"]').click()
    expect(page.locator(".card:visible")).to_have_count(1)
    expect(page.locator(".card:visible")).to_have_attribute("data-device", "labeler-5")
    page.locator('#states [data-filter=""]').click()
    expect(page.locator(".card:visible")).to_have_count(6)

    log.assert_clean()


def test_register_a_device_through_the_form(
    page: Page, gateway: GatewayProcess, sim: ModbusSimulator, shoot: Shoot
) -> None:
    log = PageLog.attach(page, gateway.api_url)
    page.goto(f"{gateway.api_url}/#token={ADMIN_TOKEN}")
    expect(card(page, "filler-1")).to_be_visible()

    page.get_by_role("button", name="Register device").click()
    dialog = page.get_by_role("dialog", name="Register a device")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Profile").select_option("sim-plc")
    dialog.get_by_label("Device id").fill("press-7")
    dialog.get_by_label("Host").fill(sim.host)
    dialog.get_by_label("Port").fill(str(sim.port))
    dialog.get_by_label("Unit").fill("999")
    dialog.get_by_label("Labels").fill("line=line2, cell=press")
    dialog.get_by_role("button", name="Register").click()
    expect(page.locator("#err-unit")).to_contain_text("255")
    expect(dialog.get_by_label("Unit")).to_have_attribute("aria-invalid", "true")
    expect(dialog.get_by_label("Unit")).to_be_focused()
    expect(page.locator("#err-id")).to_be_empty()
    shoot(page, "page-register-error-laptop")
    page.set_viewport_size(TABLET)
    shoot(page, "page-register-error-tablet")

    dialog.get_by_label("Unit").fill("2")
    dialog.get_by_role("button", name="Register").click()
    expect(dialog).to_be_hidden()
    press = card(page, "press-7")
    expect(press.locator(".labels")).to_contain_text("cell=press")
    expect(press.locator(".badge")).to_have_text("online")
    expect(press.locator('[data-tag="part_count"] .value')).to_have_text(re.compile(r"^\d[\d,]+$"))
    expect(press.locator('[data-tag="model"] .value')).to_have_text("SIM-PLC-2")
    registered = httpx.get(
        f"{gateway.api_url}/api/v1/devices/press-7",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    ).json()
    assert registered["labels"] == {"line": "line2", "cell": "press"}
    assert (registered["config"]["port"], registered["config"]["unit"]) == (sim.port, 2)
    log.assert_clean(["POST /api/v1/devices 422"])


def test_token_prompt_when_missing_or_rejected(page: Page, gateway: GatewayProcess) -> None:
    log = PageLog.attach(page, gateway.api_url)
    page.goto(gateway.api_url)
    expect(page.locator("#token-why")).to_contain_text("An API token is needed")
    expect(page.get_by_role("button", name="Register device")).to_be_hidden()
    expect(page.locator(".card")).to_have_count(0)

    page.get_by_label("API token").fill("not-a-token")
    page.get_by_role("button", name="Connect").click()
    expect(page.locator("#token-why")).to_contain_text("rejected")
    expect(page.locator("#link")).to_have_text("Token rejected")

    page.get_by_label("API token").fill(VIEWER_TOKEN)
    page.get_by_role("button", name="Connect").click()
    expect(card(page, "filler-1").locator(".badge")).to_have_text("online")
    expect(page.locator("#token-panel")).to_be_hidden()
    log.reload(page)  # the token is kept for this tab
    expect(card(page, "filler-1").locator(".badge")).to_have_text("online")
    assert page.evaluate("sessionStorage.getItem('gateway.token')") == VIEWER_TOKEN

    # Only admins change the configuration: a viewer is not offered to.
    expect(page.get_by_role("button", name="Register device")).to_be_hidden()
    log.assert_clean(["GET /api/v1/me 401", "GET /api/v1/protocols 401"])


def test_screenshots_at_laptop_and_tablet_sizes(
    page: Page, gateway: GatewayProcess, shoot: Shoot
) -> None:
    log = PageLog.attach(page, gateway.api_url)
    page.goto(f"{gateway.api_url}/#token={ADMIN_TOKEN}")
    trend = card(page, "filler-1").locator('[data-tag="temperature"] path.line')
    expect(trend).to_have_attribute("d", re.compile(r"^M[^L]+(L[^L]+){3,}$"))
    expect(card(page, "mixer-4").locator(".badge")).to_have_text("degraded")
    assert no_horizontal_scroll(page)
    shoot(page, "page-laptop")
    page.set_viewport_size(TABLET)
    expect(card(page, "capper-1")).to_be_in_viewport()
    assert no_horizontal_scroll(page)
    shoot(page, "page-tablet")
    log.assert_clean()


def test_hundreds_of_devices_one_stream_and_only_cards_on_screen_loaded(
    page: Page, tmp_path: Path, broker: Mosquitto, sim: ModbusSimulator
) -> None:
    profile = example_profile()
    profile["groups"][0]["interval"] = 1.0
    spare = [sim_plc(f"spare-{n:03}", sim, enabled=False) for n in range(200)]
    live = [
        sim_plc(f"line-{n:03}", sim, unit=n % 3 + 1, labels={"line": f"line{n % 4}"})
        for n in range(100)
    ]
    config = {
        "gateway": {"id": "gw-fleet"},
        "sinks": {
            "mqtt": {
                "type": "mqtt",
                "host": broker.host,
                "port": broker.port,
                "topic_prefix": "fleet",
            }
        },
        "profiles": [profile],
        "devices": spare + live,
    }
    process = GatewayProcess(tmp_path / "fleet", config).start()
    try:
        process.wait_api()
        log = PageLog.attach(page, process.api_url)
        page.goto(f"{process.api_url}/#token={ADMIN_TOKEN}")
        expect(page.locator(".card")).to_have_count(300)
        expect(page.locator('#states [data-filter="disabled"] b')).to_have_text("200")
        expect(page.locator('#states [data-filter="online"] b')).to_have_text("100")

        last = card(page, "line-099")
        last.scroll_into_view_if_needed()
        count = last.locator('[data-tag="part_count"] .value')
        expect(count).to_have_text(re.compile(r"^\d{1,3}(,\d{3})+$"))
        expect(count).not_to_have_text(count.inner_text())

        page.get_by_label("Filter devices").fill("line-042")
        expect(page.locator(".card:visible")).to_have_count(1)
        expect(page.locator("#count")).to_have_text("1 of 300")

        streams = [url for url in log.requests if "/api/v1/stream" in url]
        assert len(streams) == 1, streams
        latest = {url.split("/")[-2] for url in log.requests if url.endswith("/latest")}
        assert "line-099" in latest and len(latest) < 40, sorted(latest)
        log.assert_clean()
    finally:
        page.close()  # an open live stream holds up the gateway's graceful stop
        process.stop()


def test_the_live_stream_reconnects_when_the_gateway_comes_back(
    page: Page, tmp_path: Path, broker: Mosquitto, sim: ModbusSimulator
) -> None:
    process = GatewayProcess(tmp_path / "gateway", gateway_config(broker, sim)).start()
    try:
        process.wait_api()
        log = PageLog.attach(page, process.api_url)
        page.goto(f"{process.api_url}/#token={ADMIN_TOKEN}")
        count = card(page, "filler-1").locator('[data-tag="part_count"] .value')
        expect(count).to_have_text(re.compile(r"^\d{1,3}(,\d{3})+$"))
        log.assert_clean()
        failures, errors = len(log.failures), len(log.console_errors)

        process.process.kill()  # a crash: the stream breaks without a goodbye
        expect(page.locator("#link")).to_have_text("Reconnecting…")
        before = count.inner_text()
        process.start().wait_api()
        expect(page.locator("#link")).to_have_text("Live")
        expect(count).not_to_have_text(before)  # values flow again, on the same page

        outage = log.failures[failures:]
        assert outage and all(re.match(r"GET /api/v1/\S+ failed: net::ERR_", f) for f in outage), (
            outage
        )
        assert all("net::ERR_" in e for e in log.console_errors[errors:]), log.console_errors
        assert not log.page_errors and not log.foreign_requests()
    finally:
        page.close()
        process.stop()


def test_the_gateway_serves_the_page_under_its_own_policy(gateway: GatewayProcess) -> None:
    # The app's security headers fill in a default policy; the page's own must win.
    response = httpx.get(f"{gateway.api_url}/")
    assert response.headers["content-security-policy"] == CSP


def test_exact_big_integers_on_the_card_and_in_the_device_view(
    page: Page, gateway: GatewayProcess
) -> None:
    log = PageLog.attach(page, gateway.api_url)
    page.goto(f"{gateway.api_url}/#token={ADMIN_TOKEN}")
    filler = card(page, "filler-1")
    filler.get_by_role("button", name="Show all 24 tags").click()
    # uint64 18000000000000000001 (2^64 > it > 2^53): every digit, not 1.800e19.
    serial = filler.locator('[data-tag="serial_total"] .value')
    expect(serial).to_have_text("18,000,000,000,000,000,001")
    expect(serial).to_have_attribute("title", "18000000000000000001")
    expect(filler.locator('[data-tag="offset_total"] .value')).to_have_text("-1,234,567,890,124")

    filler.locator('[data-tag="serial_total"]').get_by_role("button").click()
    view = page.get_by_role("dialog", name="filler-1", exact=True)
    expect(view.get_by_label("Tag", exact=True)).to_have_value("serial_total")
    expect(view.locator(".chart-stats .now dd")).to_have_text("18,000,000,000,000,000,001")

    # Both ways of keeping them: the reviver's source text (this Chromium), and quoting them
    # first (browsers without it).
    both = page.evaluate(
        """async () => {
            const lib = await import("/static/lib.js");
            const text = '{"a":18446744073709551615,"s":"12345678901234567890","f":1.5e300,'
                + '"n":[-9223372036854775808,9007199254740991]}';
            return [lib.parseJson(text), lib.parseQuoted(text)].map((v) => lib.toJson(v));
        }"""
    )
    expected = (
        '{"a":18446744073709551615,"s":"12345678901234567890","f":1.5e+300,'
        '"n":[-9223372036854775808,9007199254740991]}'
    )
    assert both == [expected, expected]
    log.assert_clean()


def test_the_device_chart_draws_each_range_from_the_history(
    page: Page, gateway: GatewayProcess, shoot: Shoot
) -> None:
    log = PageLog.attach(page, gateway.api_url)
    page.goto(f"{gateway.api_url}/#token={ADMIN_TOKEN}")
    filler = card(page, "filler-1")
    expect(filler.locator('[data-tag="temperature"] path.line')).to_have_attribute(
        "d", re.compile(r"^M[^L]+(L[^L]+){3,}$")
    )
    with page.expect_response(re.compile(r"/tags/temperature/history\?")) as first:
        filler.locator('[data-tag="temperature"]').get_by_role("button").click()
    view = page.get_by_role("dialog", name="filler-1", exact=True)
    expect(view.get_by_label("Tag", exact=True)).to_have_value("temperature")
    assert "bucket=5" in first.value.url

    chart = view.locator("#chart")
    for label, span, bucket in [("1 h", 3600, 15), ("24 h", 86400, 300), ("15 min", 900, 5)]:
        with page.expect_response(
            re.compile(rf"/tags/temperature/history\?.*bucket={bucket}$")
        ) as answer:
            view.get_by_role("button", name=label, exact=True).click()
        query = dict(pair.split("=") for pair in answer.value.url.split("?")[1].split("&"))
        assert int(query["end"]) - int(query["start"]) == span * 1000
        assert answer.value.json()["points"], label
        expect(chart).to_have_attribute("data-range", label)
        expect(chart).to_have_attribute("data-points", re.compile(r"^[1-9]\d*$"))
        expect(chart.locator("canvas")).to_be_visible()
        expect(view.get_by_role("button", name=label, exact=True)).to_have_attribute(
            "aria-pressed", "true"
        )
    expect(view.locator(".chart-stats .now dd")).to_have_text(re.compile(r"^\d+\.\d+ degC$"))
    expect(view.get_by_role("button", name="Edit")).to_be_hidden()  # a file device
    expect(view.locator("#device-readonly")).to_contain_text("configuration file")
    shoot(page, "device-chart-laptop", docs=True)
    page.set_viewport_size(PHONE)
    fits_viewport(page, "#chart canvas")
    shoot(page, "device-chart-phone", docs=True)
    log.assert_clean()


def test_edit_a_device_without_sending_its_secret_back(
    page: Page, gateway: GatewayProcess, opcua_login_sim: OpcUaSimulator, shoot: Shoot
) -> None:
    speed = f"nsu={NAMESPACE};s=Line1.Filler.Speed"
    tags = [{"name": "speed", "node": speed, "unit": "rpm"}]
    register(
        gateway,
        {
            "id": "line-ua",
            "type": "opcua",
            "endpoint": opcua_login_sim.endpoint,
            **OPCUA_LOGIN,
            "labels": {"line": "line2", "cell": "filling"},
            "groups": [{"name": "line", "interval": 0.5, "tags": tags}],
        },
    )
    try:
        log = PageLog.attach(page, gateway.api_url)
        page.goto(f"{gateway.api_url}/#token={ADMIN_TOKEN}")
        expect(card(page, "line-ua").locator(".badge")).to_have_text("online")
        view = open_view(page, "line-ua")
        view.get_by_role("button", name="Edit").click()
        form = page.get_by_role("dialog", name="Edit line-ua")
        password = form.get_by_label("Password")
        expect(password).to_have_value("")  # the stored one is never shown, not even masked
        expect(password).to_have_attribute("placeholder", re.compile("stored, hidden"))
        expect(form.get_by_label("Labels")).to_have_value("line=line2, cell=filling")
        shoot(page, "edit-form-laptop", docs=True)
        page.set_viewport_size(PHONE)
        fits_viewport(page, "#edit")
        shoot(page, "edit-form-phone", docs=True)
        page.set_viewport_size(LAPTOP)

        # A field the API refuses is named next to its input, and nothing is saved.
        form.get_by_text("More settings").click()
        form.get_by_label("Timeout", exact=True).fill("0")
        form.get_by_role("button", name="Review changes").click()
        form.get_by_role("button", name="Save changes").click()
        timeout = form.get_by_label("Timeout", exact=True)
        expect(timeout).to_have_attribute("aria-invalid", "true")
        expect(form.locator("#e-timeout-error")).to_contain_text("greater than 0")

        form.get_by_label("Timeout", exact=True).fill("7")
        form.get_by_label("Labels").fill("line=line9")
        form.get_by_role("button", name="Review changes").click()
        review = form.locator("#review-list")
        expect(review).to_contain_text("line=line2, cell=filling → line=line9")
        expect(review).to_contain_text("5 → 7")
        with page.expect_request(lambda r: r.method == "PATCH") as sent:
            form.get_by_role("button", name="Save changes").click()
        expect(form).to_be_hidden()
        body = json.loads(sent.value.post_data or "")
        assert body == {"labels": {"line": "line9", "cell": None}, "timeout": 7}, body

        expect(card(page, "line-ua").locator(".labels")).to_have_text("line=line9")
        expect(view.locator("#device-where")).to_contain_text(opcua_login_sim.endpoint)
        # Still logged in after its connector restarted: the stored password was kept.
        expect(card(page, "line-ua").locator('[data-tag="speed"] .value')).to_have_text(
            re.compile(r"^\d+\.\d+$")
        )
        expect(card(page, "line-ua").locator(".badge")).to_have_text("online")
        config = fetch(gateway, "line-ua").json()["config"]
        assert (config["timeout"], config["password"]) == (7, "**********")
        log.assert_clean(["PATCH /api/v1/devices/line-ua 422"])
    finally:
        forget(gateway, "line-ua")


def test_disable_enable_and_delete_each_confirmed_first(
    page: Page, gateway: GatewayProcess, sim: ModbusSimulator
) -> None:
    register(gateway, sim_plc("spare-9", sim, unit=3))
    log = PageLog.attach(page, gateway.api_url)
    page.goto(f"{gateway.api_url}/#token={ADMIN_TOKEN}")
    badge = card(page, "spare-9").locator(".badge")
    expect(badge).to_have_text("online")
    view = open_view(page, "spare-9")
    confirm = page.get_by_role("dialog", name="Disable spare-9?")

    view.get_by_role("button", name="Disable").click()
    expect(confirm).to_contain_text("stops polling it")
    confirm.get_by_role("button", name="Cancel").click()
    expect(confirm).to_be_hidden()
    assert fetch(gateway, "spare-9").json()["enabled"] is True

    view.get_by_role("button", name="Disable").click()
    confirm.get_by_role("button", name="Disable").click()
    expect(badge).to_have_text("disabled")
    expect(view.locator("#device-badge")).to_have_text("disabled")
    view.get_by_role("button", name="Enable").click()
    page.get_by_role("dialog", name="Enable spare-9?").get_by_role("button", name="Enable").click()
    expect(badge).to_have_text("online")

    # A refusal (here: the token behind the page has become a viewer's) says so plainly.
    def as_viewer(route: Route) -> None:
        route.continue_(
            headers={**route.request.headers, "authorization": f"Bearer {VIEWER_TOKEN}"}
        )

    page.route("**/api/v1/devices/spare-9/disable", as_viewer)
    view.get_by_role("button", name="Disable").click()
    confirm.get_by_role("button", name="Disable").click()
    expect(view.locator("#device-problem")).to_have_text(
        "This token may only read: disabling a device needs an admin token."
    )
    expect(badge).to_have_text("online")

    view.get_by_role("button", name="Delete").click()
    delete = page.get_by_role("dialog", name="Delete spare-9?")
    expect(delete).to_contain_text("cannot be undone")
    delete.get_by_role("button", name="Cancel").click()
    expect(card(page, "spare-9")).to_be_visible()
    view.get_by_role("button", name="Delete").click()
    delete.get_by_role("button", name="Delete").click()
    expect(view).to_be_hidden()
    expect(card(page, "spare-9")).to_have_count(0)
    assert fetch(gateway, "spare-9").status_code == 404
    log.assert_clean(["POST /api/v1/devices/spare-9/disable 403"])


def test_viewers_see_no_action_that_changes_the_configuration(
    page: Page, gateway: GatewayProcess, sim: ModbusSimulator
) -> None:
    register(gateway, sim_plc("shown-7", sim, unit=2))
    try:
        log = PageLog.attach(page, gateway.api_url)
        page.goto(f"{gateway.api_url}/#token={VIEWER_TOKEN}")
        expect(card(page, "shown-7").locator(".badge")).to_have_text("online")
        expect(page.get_by_role("button", name="Register device")).to_be_hidden()
        view = open_view(page, "shown-7")
        expect(view.locator("#chart canvas")).to_be_visible()  # the history is for everyone
        for action in ("Edit", "Disable", "Delete"):
            expect(view.get_by_role("button", name=action)).to_have_count(0)
        expect(view.locator("#device-readonly")).to_have_text(
            "This token may only read: changes need an admin token."
        )
        # Its setpoint is writable (the sim-plc profile), but not by a viewer: no input at all.
        expect(view.locator("#write-panel")).to_be_hidden()
        expect(view.locator(".w-row")).to_have_count(0)
        expect(view.get_by_role("button", name=re.compile(r"^Set "))).to_have_count(0)
        expect(page.locator("body.can-write")).to_have_count(0)  # no pencil on the cards
        log.assert_clean()
    finally:
        forget(gateway, "shown-7")


def test_register_an_opcua_device_with_tags_picked_from_the_server(
    page: Page, gateway: GatewayProcess, opcua_sim: OpcUaSimulator, shoot: Shoot
) -> None:
    log = PageLog.attach(page, gateway.api_url)
    page.goto(f"{gateway.api_url}/#token={ADMIN_TOKEN}")
    expect(card(page, "filler-1")).to_be_visible()
    page.get_by_role("button", name="Register device").click()
    form = page.get_by_role("dialog", name="Register a device")
    form.get_by_label("Profile or own tags").select_option("own:opcua")
    form.get_by_label("Device id").fill("filler-ua")
    picker = page.get_by_role("dialog", name="Pick tags from the server")

    # A server that is not there: the picker says which and why.
    closed = f"opc.tcp://127.0.0.1:{free_port()}"
    form.get_by_label("Endpoint").fill(closed)
    form.get_by_role("button", name="Browse the server…").click()
    expect(picker.get_by_role("alert")).to_have_text(
        f"cannot connect to {closed}: connection refused"
    )
    picker.get_by_role("button", name="Cancel").click()

    form.get_by_label("Endpoint").fill(opcua_sim.endpoint)
    form.get_by_role("button", name="Browse the server…").click()
    rows = picker.locator(".b-row")
    expect(rows.first).to_be_visible()
    expect(picker.locator("#b-count")).to_have_text(re.compile(r"^0 of \d+ readable"))

    picker.get_by_label("Filter variables").fill("Line1/Filler")
    filler = picker.locator(".b-parent", has_text="Plant/Line1/Filler")
    filler.get_by_role("checkbox").check()
    picker.locator(".b-row", has_text="Levels").get_by_role("checkbox").uncheck()
    expect(filler.get_by_role("checkbox")).to_have_js_property("indeterminate", True)
    use = picker.get_by_role("button", name=re.compile(r"^Use \d+ tags$"))
    picked = int(use.inner_text().split()[1])
    assert picked >= 10
    picker.locator("#b-list").evaluate("list => { list.scrollTop = 0; }")  # its head in view
    shoot(page, "browse-picker-laptop", docs=True)
    page.set_viewport_size(PHONE)
    fits_viewport(page, "#browse")
    shoot(page, "browse-picker-phone", docs=True)
    page.set_viewport_size(LAPTOP)
    use.click()
    expect(picker).to_be_hidden()
    expect(form.locator("#picked-summary")).to_contain_text(f"{picked} tags: State, Running")

    form.get_by_role("button", name="Register").click()
    expect(form).to_be_hidden()
    try:
        registered = card(page, "filler-ua")
        expect(registered.locator(".badge")).to_have_text("online")
        # 10**15 + tick, exactly.
        expect(registered.locator('[data-tag="TotalCount"] .value')).to_have_text(
            re.compile(r"^1,000,000,000,000,\d{3}$")
        )
        expect(registered.locator('[data-tag="Speed"] .value')).to_have_text(
            re.compile(r"^\d+\.\d+$")
        )
        group = fetch(gateway, "filler-ua").json()["config"]["groups"][0]
        assert len(group["tags"]) == picked
        setpoint = next(t for t in group["tags"] if t["name"] == "Setpoint")
        node = f"nsu={NAMESPACE};s=Line1.Filler.Setpoint"
        assert (setpoint["node"], setpoint["writable"]) == (node, True)
        log.assert_clean(["POST /api/v1/protocols/opcua/discover 502"])
    finally:
        forget(gateway, "filler-ua")


# -- setting values (write-back) ---------------------------------------------------------------
WINDER = "winder-3"


@pytest.fixture
def winder(gateway: GatewayProcess, sim: ModbusSimulator) -> Iterator[str]:
    """A device with a tag of every kind the page sets (the simulator's unit 3: its setpoint,
    its scratch registers 60-69, coil 0), and one the device refuses to write (a read-only
    register)."""
    tags = [
        {"name": "setpoint", "address": 1, "data_type": "int16", "unit": "rpm",
         "writable": True, "min": 0, "max": 1500},
        {"name": "mode", "address": 61, "writable": True, "allowed": [1, 2, 3]},
        {"name": "run_command", "table": "coil", "address": 0, "data_type": "bool",
         "writable": True},
        {"name": "batch", "address": 62, "data_type": "uint64", "writable": True},
        {"name": "recipe", "address": 66, "data_type": "string", "length": 4, "writable": True},
        {"name": "trim", "address": 60, "data_type": "int16", "writable": True},
        {"name": "tension", "address": 60, "data_type": "int16", "scale": 0.1, "unit": "N",
         "writable": True, "min": -50, "max": 50},
        {"name": "part_count", "address": 2, "data_type": "uint32", "writable": True},
        {"name": "temperature", "address": 4, "data_type": "float32", "unit": "degC"},
    ]  # fmt: skip
    device = {
        "id": WINDER,
        "type": "modbus",
        "host": sim.host,
        "port": sim.port,
        "unit": 3,
        "labels": {"line": "line3", "cell": "winding"},
        "groups": [{"name": "control", "interval": 0.25, "tags": tags}],
    }
    register(gateway, device)
    try:
        yield WINDER
    finally:
        forget(gateway, WINDER)


def is_write(device_id: str) -> Callable[[Request], bool]:
    return lambda r: r.method == "POST" and r.url.endswith(f"/devices/{device_id}/write")


def writes_of(log: PageLog, device_id: str) -> list[str]:
    return [url for url in log.requests if url.endswith(f"/devices/{device_id}/write")]


def set_confirmed(page: Page, row: Locator, device_id: str) -> str:
    """Click the row's Set, confirm, and return the body the page sent."""
    tag = row.get_attribute("data-tag")
    row.get_by_role("button", name=f"Set {tag}…").click()
    confirm = page.get_by_role("dialog", name=f"Set {tag} on {device_id}?")
    with page.expect_request(is_write(device_id)) as sent:
        confirm.get_by_role("button", name="Set", exact=True).click()
    expect(confirm).to_be_hidden()
    assert sent.value.headers["x-gateway-page"] == "1"
    return sent.value.post_data or ""


def test_an_operator_sets_a_set_point_after_confirming_it(
    page: Page, gateway: GatewayProcess, winder: str, shoot: Shoot
) -> None:
    log = PageLog.attach(page, gateway.api_url)
    page.goto(f"{gateway.api_url}/#token={OPERATOR_TOKEN}")
    expect(card(page, winder).locator(".badge")).to_have_text("online")
    expect(page.get_by_role("button", name="Register device")).to_be_hidden()
    view = open_view(page, winder)
    for action in ("Edit", "Disable", "Delete"):  # the configuration stays an admin's
        expect(view.get_by_role("button", name=action)).to_have_count(0)
    expect(view.locator("#device-readonly")).to_have_text(
        "This token may set values: changes to the device need an admin token."
    )
    rows = view.locator(".w-row")
    expect(rows).to_have_count(8)  # the writable tags, not temperature
    row = view.locator('.w-row[data-tag="setpoint"]')
    expect(row.locator(".w-now")).to_have_text("now 503 rpm")  # 500 + unit, initially
    setpoint = row.get_by_label("setpoint", exact=True)
    expect(setpoint).to_have_attribute("type", "number")
    for name, value in [("min", "0"), ("max", "1500"), ("step", "1")]:
        expect(setpoint).to_have_attribute(name, value)
    note = row.locator(".w-note")
    expect(note).to_have_text("int16 · 0 to 1,500")

    # Enter opens the confirmation with the focus on Cancel: a second Enter sends nothing.
    setpoint.fill("750")
    setpoint.press("Enter")
    confirm = page.get_by_role("dialog", name=f"Set setpoint on {winder}?")
    expect(confirm).to_be_visible()
    details = confirm.locator("#confirm-details")
    for term, text in [("Device", winder), ("Tag", "setpoint"), ("Now", "503 rpm"),
                       ("New", "750 rpm")]:  # fmt: skip
        expect(details.locator("div", has_text=term)).to_have_text(f"{term}{text}")
    cancel = confirm.get_by_role("button", name="Cancel")
    expect(cancel).to_be_focused()
    shoot(page, "write-setpoint-confirm-laptop", docs=True)
    page.keyboard.press("Enter")
    expect(confirm).to_be_hidden()
    expect(setpoint).to_be_focused()
    # Cancel and Escape too.
    row.get_by_role("button", name="Set setpoint…").click()
    cancel.click()
    expect(confirm).to_be_hidden()
    row.get_by_role("button", name="Set setpoint…").click()
    page.keyboard.press("Escape")
    expect(confirm).to_be_hidden()
    assert writes_of(log, winder) == []
    expect(note).to_have_text("int16 · 0 to 1,500")

    assert set_confirmed(page, row, winder) == '{"values":{"setpoint":750}}'
    expect(note).to_have_text(re.compile(r"^Written at \d\d:\d\d:\d\d; read back 750 rpm\.$"))
    expect(note).to_have_attribute("data-result", "written")
    expect(row.locator(".w-now")).to_have_text("now 750 rpm")  # the next poll
    expect(card(page, winder).locator('[data-tag="setpoint"] .value')).to_have_text("750")
    shoot(page, "write-setpoint-result-laptop", docs=True)

    page.set_viewport_size(PHONE)
    fits_viewport(page, "#device")
    setpoint.fill("760")
    row.get_by_role("button", name="Set setpoint…").click()
    expect(details.locator("div", has_text="New")).to_have_text("New760 rpm")
    fits_viewport(page, "#confirm")
    shoot(page, "write-setpoint-confirm-phone", docs=True)
    with page.expect_request(is_write(winder)):
        confirm.get_by_role("button", name="Set", exact=True).click()
    expect(note).to_have_text(re.compile(r"read back 760 rpm\.$"))
    expect(row.locator(".w-now")).to_have_text("now 760 rpm")
    row.scroll_into_view_if_needed()
    page.mouse.move(0, 0)  # no hover left on the button under the confirmation's
    shoot(page, "write-setpoint-result-phone", docs=True)
    assert no_horizontal_scroll(page)

    assert len(writes_of(log, winder)) == 2  # the confirmed ones only
    audit = httpx.get(f"{gateway.api_url}/api/v1/audit?device={winder}", headers=ADMIN).json()
    entries = [(e["tag"], e["requested"], e["result"], e["path"], e["who"])
               for e in audit["items"]]  # fmt: skip
    assert entries == [
        ("setpoint", 760, "written", "page", "token:shift"),
        ("setpoint", 750, "written", "page", "token:shift"),
    ], entries
    log.assert_clean()


def test_big_integers_choices_bools_and_text_are_sent_as_entered(
    page: Page, gateway: GatewayProcess, winder: str
) -> None:
    log = PageLog.attach(page, gateway.api_url)
    page.goto(f"{gateway.api_url}/#token={OPERATOR_TOKEN}")
    expect(card(page, winder).locator(".badge")).to_have_text("online")
    view = open_view(page, winder)
    confirm = page.locator("#confirm-details")

    # 2^64 - 1: beyond 2^53, so never through a JS Number (it would become ...552000).
    row = view.locator('.w-row[data-tag="batch"]')
    row.get_by_label("batch", exact=True).fill("18446744073709551615")
    row.get_by_role("button", name="Set batch…").click()
    expect(confirm.locator("div", has_text="New")).to_have_text("New18,446,744,073,709,551,615")
    page.get_by_role("button", name="Cancel").click()
    body = set_confirmed(page, row, winder)
    assert body == '{"values":{"batch":18446744073709551615}}', body
    expect(row.locator(".w-note")).to_have_text(
        re.compile(r"read back 18,446,744,073,709,551,615\.$")
    )

    row = view.locator('.w-row[data-tag="mode"]')
    expect(row.locator(".w-note")).to_have_text("uint16 · one of 1, 2, 3")
    row.get_by_label("mode", exact=True).select_option("2")
    assert set_confirmed(page, row, winder) == '{"values":{"mode":2}}'
    expect(row.locator(".w-note")).to_have_text(re.compile(r"read back 2\.$"))

    row = view.locator('.w-row[data-tag="run_command"]')
    toggle = row.get_by_role("radiogroup", name="run_command")
    toggle.get_by_role("radio", name="off").check()
    assert set_confirmed(page, row, winder) == '{"values":{"run_command":false}}'
    expect(row.locator(".w-note")).to_have_text(re.compile(r"read back off\.$"))
    expect(card(page, winder).locator('[data-tag="run_command"] .chip')).to_have_text("off")
    toggle.get_by_role("radio", name="on").check()
    assert set_confirmed(page, row, winder) == '{"values":{"run_command":true}}'
    expect(row.locator(".w-note")).to_have_text(re.compile(r"read back on\.$"))

    row = view.locator('.w-row[data-tag="recipe"]')
    recipe = row.get_by_label("recipe", exact=True)
    expect(recipe).to_have_attribute("maxlength", "8")
    recipe.fill("AB-12")
    assert set_confirmed(page, row, winder) == '{"values":{"recipe":"AB-12"}}'
    expect(row.locator(".w-note")).to_have_text(re.compile(r'read back "AB-12"\.$'))

    # Scaled: in engineering units, by steps of the scale.
    row = view.locator('.w-row[data-tag="tension"]')
    tension = row.get_by_label("tension", exact=True)
    expect(tension).to_have_attribute("step", "0.1")
    expect(row.locator(".w-note")).to_have_text("int16 · -50 to 50 · steps of 0.1")
    tension.fill("-12.5")
    assert set_confirmed(page, row, winder) == '{"values":{"tension":-12.5}}'
    expect(row.locator(".w-note")).to_have_text(re.compile(r"read back -12\.5 N\.$"))
    log.assert_clean()


def test_an_opcua_tag_takes_the_kind_of_its_value(
    page: Page, gateway: GatewayProcess, opcua_sim: OpcUaSimulator
) -> None:
    # OPC UA tags name no data type: the node's own (a Double here) decides; the page goes by
    # the value it shows.
    tags = [{"name": "Setpoint", "node": f"nsu={NAMESPACE};s=Line1.Filler.Setpoint",
             "writable": True}]  # fmt: skip
    register(
        gateway,
        {"id": "filler-ua9", "type": "opcua", "endpoint": opcua_sim.endpoint,
         "groups": [{"name": "sp", "interval": 0.5, "tags": tags}]},
    )  # fmt: skip
    try:
        log = PageLog.attach(page, gateway.api_url)
        page.goto(f"{gateway.api_url}/#token={OPERATOR_TOKEN}")
        value = card(page, "filler-ua9").locator('[data-tag="Setpoint"] .value')
        expect(value).to_have_text(re.compile(r"^\d+\.\d+$"))
        view = open_view(page, "filler-ua9")
        row = view.locator('.w-row[data-tag="Setpoint"]')
        expect(row).to_have_attribute("data-kind", "number")
        expect(row.locator(".w-note")).to_have_text("the device's own type · any number")
        row.get_by_label("Setpoint", exact=True).fill("61.25")
        assert set_confirmed(page, row, "filler-ua9") == '{"values":{"Setpoint":61.25}}'
        expect(row.locator(".w-note")).to_have_text(re.compile(r"read back 61\.25\.$"))
        expect(value).to_have_text("61.25")
        log.assert_clean()
    finally:
        forget(gateway, "filler-ua9")


def test_a_refused_write_says_why_next_to_the_input(
    page: Page, gateway: GatewayProcess, winder: str, shoot: Shoot
) -> None:
    log = PageLog.attach(page, gateway.api_url)
    page.goto(f"{gateway.api_url}/#token={OPERATOR_TOKEN}")
    expect(card(page, winder).locator(".badge")).to_have_text("online")
    view = open_view(page, winder)
    confirm = page.locator("#confirm")

    # Beyond the tag's bounds or not a whole number: said at once, nothing to confirm or send.
    row = view.locator('.w-row[data-tag="setpoint"]')
    setpoint = row.get_by_label("setpoint", exact=True)
    for typed, why in [("2000", "2000 is above the maximum 1,500 rpm."),
                       ("-5", "-5 is below the minimum 0 rpm."),
                       ("12.5", "setpoint takes whole numbers (int16).")]:  # fmt: skip
        setpoint.fill(typed)
        setpoint.press("Enter")
        expect(row.locator(".w-note")).to_have_text(why)
        expect(setpoint).to_have_attribute("aria-invalid", "true")
        expect(setpoint).to_be_focused()
        expect(confirm).to_be_hidden()
    setpoint.fill("12")
    expect(setpoint).not_to_have_attribute("aria-invalid", "true")
    assert writes_of(log, winder) == []

    # Refused by the gateway: beyond what an int16 holds.
    row = view.locator('.w-row[data-tag="trim"]')
    row.get_by_label("trim", exact=True).fill("40000")
    set_confirmed(page, row, winder)
    expect(row.locator(".w-note")).to_have_text(
        f"Not written: {winder}.trim: 40000 is out of the range of a int16: -32768..32767"
    )
    expect(row.get_by_label("trim", exact=True)).to_have_attribute("aria-invalid", "true")

    # Refused by the device (a read-only register): it failed there, it is not retried.
    row = view.locator('.w-row[data-tag="part_count"]')
    row.get_by_label("part_count", exact=True).fill("7")
    set_confirmed(page, row, winder)
    expect(row.locator(".w-note")).to_have_text(re.compile(rf"^Failed: {winder}\.part_count: "))
    expect(row.locator(".w-note")).to_have_attribute("data-result", "failed")
    shoot(page, "write-refused-laptop")
    view.get_by_role("button", name="Close").click()

    # An offline device: never queued.
    offline = open_view(page, "labeler-5")
    row = offline.locator('.w-row[data-tag="setpoint"]')
    row.get_by_label("setpoint", exact=True).fill("510")
    set_confirmed(page, row, "labeler-5")
    expect(row.locator(".w-note")).to_have_text(
        "Not written: device 'labeler-5' is offline: a write is never queued (a set point must"
        " not arrive late); try again when it is online"
    )
    log.assert_clean(
        [
            f"POST /api/v1/devices/{winder}/write 422",
            f"POST /api/v1/devices/{winder}/write 502",
            "POST /api/v1/devices/labeler-5/write 409",
        ]
    )
