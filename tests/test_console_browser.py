"""``/console`` in a real browser: Debian's headless Chromium, driven by Playwright (issue #17).

The gateway runs as ``dcc-gateway serve`` on a fresh world whose clock stands at the
test's start; the test sends the SoLR directives and the SRP's requests over HTTP,
signed as any harness would, and checks what a person looking at the page would
check. The page's screenshot is left in the test's tmp directory (its path is printed).

Chromium comes from Debian (``scripts/run-tests`` installs package ``chromium``);
Playwright's own browser download cannot work here and is not used. Without it the
test skips locally and fails under CI, as the PostgreSQL tests do.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import shlex
import shutil
import subprocess
import sys
import tomllib
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway.config import render_config
from gateway.policy import directives as d
from gateway.world import init_world
from tests.scenario import START, Scenario, make_scenario
from tests.test_crash import free_port, start_gateway, stop_gateway

CHROMIUM = Path(os.environ.get("DCC_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",  # as root, which CI is
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # the machine's closed network refuses Chromium's own connections
    "--disable-component-update",
    "--disable-sync",
]
UNTIL = START + dt.timedelta(days=30)
WAIT_MS = 20_000


def _chromium() -> Path:
    if CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    message = f"Chromium not found at {CHROMIUM} (Debian package chromium; scripts/run-tests installs it)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def world(tmp_path: Path) -> Path:
    """A fresh world whose clock stands still at START, one request per window for the SRP over 1.6."""
    directory = tmp_path / "world"
    init_world(directory, devices=20, seed="console-browser")
    tables = tomllib.loads((directory / "gateway.toml").read_text())
    tables["clock"].update(mode="fixed", start=START.isoformat())
    (directory / "gateway.toml").write_text(render_config(tables))
    return directory


@pytest.fixture
def gateway(world: Path, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    process = start_gateway(world, port, log=tmp_path / "gateway.log")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_gateway(process)


def post(url: str, body: bytes) -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/xml"}, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - the test's own loopback gateway
        return response.status, response.read(), dict(response.headers)


async def direct(base: str, scenario: Scenario, actor: str, directive: d.Directive) -> None:
    status, body, _ = await asyncio.to_thread(post, f"{base}/api/v1/admin", scenario.signed_directive(actor, directive))
    answer = json.loads(body)
    assert status == 200 and answer["accepted"], answer


async def send(base: str, scenario: Scenario, actor: str, target: object) -> str:
    status, _, headers = await asyncio.to_thread(
        post, f"{base}/api/v1/serviceS", scenario.signed_request(actor, target)  # type: ignore[arg-type]
    )
    assert status == 200
    return headers["DUIS-Reason"]


@pytest.fixture
async def page(gateway: str) -> AsyncIterator[object]:
    executable = _chromium()
    playwright_api = pytest.importorskip("playwright.async_api")
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(executable), args=CHROMIUM_FLAGS, headless=True)
        context = await browser.new_context(viewport={"width": 1400, "height": 1000})
        # Playwright gives each launch a fresh, empty --user-data-dir of its own.
        try:
            yield await context.new_page()
        finally:
            await context.close()
            await browser.close()


async def test_a_person_sees_the_solr_story_on_the_console(world: Path, gateway: str, page, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    scenario = make_scenario(world)
    failed_meters = [m for m in scenario.devices(mpid_of="failed-supplier", smets=1) if m.payment_mode == "Prepayment"]
    switched, quarantined = failed_meters[0], failed_meters[1]
    sc_user = scenario.actor("srp_sc").user_id

    await page.goto(f"{gateway}/console")
    await page.get_by_text("No supplier has failed").wait_for(timeout=WAIT_MS)
    row = page.locator(f'#fleet-table tr[data-device-id="{switched.device_id}"]')
    await row.wait_for(timeout=WAIT_MS)

    await direct(gateway, scenario, "authority", d.RevokeLicence("failed-supplier"))
    await direct(gateway, scenario, "authority", d.AppointSolr("failed-supplier", "solr-supplier"))
    await direct(gateway, scenario, "authority", d.EnableContingency("failed-supplier", sc_user, UNTIL))
    await direct(gateway, scenario, "srp_aro", d.SubmitAdt("failed-supplier", 3600, {"1.6": 1}))
    assert "accepted" in await send(gateway, scenario, "srp_sc", switched.device_id)
    assert "quarantined" in await send(gateway, scenario, "srp_sc", quarantined.device_id)

    # The meter the SRP switched shows Credit (once the executor has run the command).
    await page.locator(f'#fleet-table tr[data-device-id="{switched.device_id}"] td.payment-mode', has_text="Credit").wait_for(timeout=WAIT_MS)
    # The quarantined request appears, with the command that would release it.
    held = page.locator("#quarantine tr[data-event-ref]", has_text=str(quarantined.device_id))
    await held.wait_for(timeout=WAIT_MS)
    assert "release-quarantine" in await held.inner_text()
    assert "held" in await held.inner_text()
    # The contingency's expiry date is shown on its enablement.
    enablement = page.locator('#solr-events li[data-directive="enable-contingency"]')
    await enablement.wait_for(timeout=WAIT_MS)
    assert "2026-04-01 09:00 UTC" in await enablement.locator("time.until").inner_text()
    assert "in force" in await enablement.inner_text()
    # And the SoLR event is at its stage, the exchange that was quarantined answered E43.
    assert "solr-appointed" in await page.locator("#solr-events .stages li.current").inner_text()
    await page.locator("#exchanges tr", has_text="E43").first.wait_for(timeout=WAIT_MS)

    # The command the page shows, run as a person would paste it, releases the request.
    command = shlex.split(await held.locator("code.command", has_text="release-quarantine").inner_text())
    assert command[0] == "dcc-gateway"
    executable = str(Path(sys.executable).with_name("dcc-gateway"))
    released = await asyncio.to_thread(subprocess.run, [executable, *command[1:]], capture_output=True, timeout=60)
    assert released.returncode == 0, released.stderr
    await page.locator("#quarantine tr[data-event-ref]", has_text="released").wait_for(timeout=WAIT_MS)

    screenshot = tmp_path / "console.png"
    await page.screenshot(path=str(screenshot), full_page=True)
    print(f"console screenshot: {screenshot}")
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if artefacts := os.environ.get("DCC_TEST_ARTEFACTS"):
        Path(artefacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, Path(artefacts) / "console.png")
