"""How long ``/console`` takes to load for a large world (issue #17).

    python bench/console.py [--devices 10000] [--rounds 5] [--json]

``dcc-gateway init DIR --devices N`` in a temporary directory; the SoLR story up to
an enabled SoLR Contingency user (so every panel has something to draw); then
``dcc-gateway serve`` as a process. Measured:

* page load, in Debian's headless Chromium driven by Playwright: from ``goto``
  until every panel has drawn its first answer (the fleet table holds its first
  page of rows and the status reads "live"), in a fresh browser context each
  round, so nothing is cached. Median and max of ``--rounds``;
* the fleet endpoint on its own (``GET /console/api/fleet``, the first page and a
  "within 3 days" filter over the whole fleet): wall-clock, and the gateway
  process's CPU seconds per call (utime+stime from /proc), the figure the
  machine's other load moves least. The first call after start is reported apart
  (it fills the forecast cache);
* how busy the machine was meanwhile (``bench/cpu.py``).

Loopback only; stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import enable_contingency, free_port  # noqa: E402
from cpu import process_seconds, snapshot  # noqa: E402

from gateway.manifest import load_manifest  # noqa: E402

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=120) as response:  # noqa: S310 - our own loopback gateway
        return response.read()


def _wait_until_up(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the gateway exited with {process.returncode}")
        try:
            _get(url + "/healthz")
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the gateway did not start")


def _endpoint(url: str, pid: int, rounds: int) -> dict[str, float]:
    """Wall-clock and gateway CPU seconds of one fleet call, median over ``rounds``."""
    walls, cpus = [], []
    for _ in range(rounds):
        cpu_before, started = process_seconds(pid), time.perf_counter()
        _get(url)
        walls.append(time.perf_counter() - started)
        cpus.append(process_seconds(pid) - cpu_before)
    return {"wall_ms_median": round(statistics.median(walls) * 1000, 1),
            "gateway_cpu_ms_median": round(statistics.median(cpus) * 1000, 1)}


async def _page_loads(base: str, rounds: int, chromium: str) -> list[float]:
    from playwright.async_api import async_playwright

    seconds = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS, headless=True)
        try:
            for _ in range(rounds):
                context = await browser.new_context(viewport={"width": 1400, "height": 1000})
                page = await context.new_page()
                started = time.perf_counter()
                await page.goto(f"{base}/console")
                await page.locator("#fleet-table tr[data-device-id]").first.wait_for(timeout=120_000)
                await page.locator("#freshness", has_text="live").wait_for(timeout=120_000)
                await page.locator("#solr-events article.event").first.wait_for(timeout=120_000)
                seconds.append(time.perf_counter() - started)
                await context.close()
        finally:
            await browser.close()
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    executable = Path(sys.executable).with_name("dcc-gateway")
    with tempfile.TemporaryDirectory() as scratch:
        world = Path(scratch) / "world"
        subprocess.run([str(executable), "init", str(world), "--devices", str(args.devices)], check=True,
                       stdout=subprocess.DEVNULL)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        process = subprocess.Popen([str(executable), "serve", str(world), "--port", str(port)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_until_up(base, process)
            enable_contingency(load_manifest(world), base)
            machine_before = snapshot(process.pid)
            first = _endpoint(f"{base}/console/api/fleet", process.pid, 1)
            fleet = _endpoint(f"{base}/console/api/fleet", process.pid, args.rounds)
            within = _endpoint(f"{base}/console/api/fleet?within_days=3", process.pid, args.rounds)
            loads = asyncio.run(_page_loads(base, args.rounds, args.chromium))
            machine_after = snapshot(process.pid)
        finally:
            process.terminate()
            process.wait(timeout=60)
    busy = (machine_after.machine_busy - machine_before.machine_busy) / max(
        1e-9, machine_after.machine_total - machine_before.machine_total)
    report = {
        "devices": args.devices,
        "page_load_s_median": round(statistics.median(loads), 3),
        "page_load_s_max": round(max(loads), 3),
        "fleet_first_call": first,
        "fleet_page": fleet,
        "fleet_within_3_days": within,
        "machine_busy_fraction": round(busy, 2),
        "rounds": args.rounds,
    }
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:<24} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
