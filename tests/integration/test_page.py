"""The page at ``/`` in headless Chromium against a real gateway, simulator and broker.

Screenshots at laptop and tablet sizes land in the test's tmp dir and in build/screenshots/;
their paths are printed for people to look at.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, ViewportSize, expect

from tests.support.browser import PageLog, chromium
from tests.support.gateway import ADMIN_TOKEN, VIEWER_TOKEN, GatewayProcess, example_profile
from tests.support.mosquitto import Mosquitto
from tests.support.processes import free_port
from tests.support.simulator import ModbusSimulator

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "build" / "screenshots"
LAPTOP = ViewportSize(width=1366, height=768)
TABLET = ViewportSize(width=768, height=1024)
WAIT = 15_000
"""ms: the longest any effect may take (a status refresh is 5 s, a sparkline bucket 5 s)."""

Shoot = Callable[[Page, str], Path]


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
    process = GatewayProcess(tmp_path_factory.mktemp("gateway"), gateway_config(broker, sim))
    process.start()
    try:
        process.wait_api()
        yield process
    finally:
        process.stop()


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
    hole), offline (nothing listens on its port) and disabled."""
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


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=LAPTOP)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def shoot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Shoot:
    """Screenshot the viewport into tmp_path and build/screenshots/, and say where."""

    def take(page: Page, name: str) -> Path:
        path = tmp_path / f"{name}.png"
        page.screenshot(path=path)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        copy = Path(shutil.copy(path, SCREENSHOTS / path.name))
        with capsys.disabled():
            print(f"\nscreenshot {name}: {copy} (also {path})")
        return copy

    return take


def card(page: Page, device_id: str) -> Locator:
    return page.locator(f'.card[data-device="{device_id}"]')


def no_horizontal_scroll(page: Page) -> bool:
    fits: bool = page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    return fits


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
    expect(page.get_by_role("button", name="Register device")).to_be_disabled()
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

    page.get_by_role("button", name="Register device").click()
    dialog = page.get_by_role("dialog", name="Register a device")
    dialog.get_by_label("Device id").fill("viewer-try")
    dialog.get_by_label("Host").fill("127.0.0.1")
    dialog.get_by_role("button", name="Register").click()
    expect(page.locator("#form-problem")).to_contain_text("needs an admin token")
    log.assert_clean(["GET /api/v1/profiles 401", "POST /api/v1/devices 403"])


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
