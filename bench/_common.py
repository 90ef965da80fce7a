"""What the bench programs share: a spawned world pointed at a local receiver, the receiver,
the SoLR set-up directives, the gateway process and its CPU until idle, and reading a DUIS
answer's code."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Final, TypeVar

from aiohttp import web

from bench import cpu

from gateway.admin import post as post_directive
from gateway.admin import signed_directive
from gateway.manifest import MANIFEST_FILE_NAME, Manifest, parse_manifest
from gateway.policy import directives as d

DEVICES_KEY: Final = '"devices": ['
"""``dcc-gateway init`` writes the fleet as the manifest's last key; everything before it is small."""
IDLE_CPU_SHARE: Final = 0.03
"""The gateway counts as idle (its queued work done) below this share of one core."""
STARTUP_TIMEOUT_S: Final = 900.0
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def configure_world(world: Path, receiver_port: int, elsewhere: Mapping[str, str] | None = None) -> Manifest:
    """Lifts the ADT defaults, points response URLs at the receiver (the actors in ``elsewhere`` at the
    URL it gives them); returns the manifest without its devices.

    Only the manifest's head (before ``"devices"``) is decoded and rewritten: the
    fleet part, hundreds of MB at a million meters, is copied through untouched.
    """
    # A bench run, not an anomaly-detection test: lift the default ADT thresholds.
    toml = world / "gateway.toml"
    toml.write_text(toml.read_text().replace('default_thresholds = { "1.6" = 100 }',
                                             'default_thresholds = { "1.6" = 10000000 }'))
    path = world / MANIFEST_FILE_NAME
    text = path.read_text(encoding="utf-8")
    split = text.index(DEVICES_KEY)
    head_text, fleet_text = text[:split].rstrip().removesuffix(","), text[split:]
    head = json.loads(head_text + "}")
    for name, actor in head["actors"].items():
        if actor.get("response_url"):
            actor["response_url"] = (elsewhere or {}).get(name, f"http://127.0.0.1:{receiver_port}/receive/{name}")
    rewritten = json.dumps(head, indent=2)
    path.write_text(rewritten[: -len("\n}")] + ",\n  " + fleet_text, encoding="utf-8")
    return parse_manifest({**head, "devices": []}, path=path)


async def start_receiver(port: int, on_delivery: Callable[[str, bytes], None] | None = None) -> web.AppRunner:
    """The users' Receive Response Service: accepts every delivery (and hands it, with the name of
    the actor it was for, to ``on_delivery``)."""

    async def accept(request: web.Request) -> web.Response:
        body = await request.read()
        if on_delivery is not None:
            on_delivery(request.match_info["actor"], body)
        return web.Response()

    app = web.Application()
    app.router.add_post("/receive/{actor}", accept)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


def enable_contingency(manifest: Manifest, url: str) -> None:
    """The SoLR story up to an enabled SoLR Contingency user with a lifted ADT (signed directives)."""
    now = dt.datetime.now(dt.timezone.utc)
    counter = itertools.count(int(now.timestamp() * 1_000_000))
    steps = [
        ("authority", d.RevokeLicence("failed-supplier")),
        ("authority", d.AppointSolr("failed-supplier", "solr-supplier")),
        ("authority", d.EnableContingency("failed-supplier", manifest.actor("srp_sc").user_id,
                                          now + dt.timedelta(days=30))),
        ("srp_aro", d.SubmitAdt("failed-supplier", 3600, {"1.6": 10_000_000})),
    ]
    for actor, directive in steps:
        status, answer = post_directive(url + "/api/v1/admin", signed_directive(manifest, actor, directive, next(counter)))
        if status != 200 or not json.loads(answer)["accepted"]:
            raise SystemExit(f"setup directive {d.command_name(directive)} failed: {answer!r}")


def percentile_ms(sorted_values: Sequence[float], percent: int) -> float:
    """The ``percent`` percentile of latencies in seconds, sorted ascending, in milliseconds (0 when none)."""
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, int(len(sorted_values) * percent / 100))
    return round(sorted_values[index] * 1000, 2)


def duis_outcome(status: int, body: bytes) -> str:
    """The DUIS response code of a 200 answer, or ``HTTP <status>``."""
    if status != 200:
        return f"HTTP {status}"
    start = body.find(b"<sr:ResponseCode>")
    return body[start + 17 : body.find(b"<", start + 17)].decode() if start >= 0 else "HTTP 200"


# --- the gateway process ------------------------------------------------------------------


def gateway_exe(name: str = "dcc-gateway") -> str:
    return str(Path(sys.executable).with_name(name))


def create_world(directory: Path, devices: int) -> float:
    """``dcc-gateway init``; returns its wall-clock seconds."""
    started = time.perf_counter()
    subprocess.run([gateway_exe(), "init", str(directory), "--devices", str(devices)], check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def spawn_gateway(world: Path, port: int, log: Path) -> tuple[subprocess.Popen[bytes], float]:
    """Starts ``dcc-gateway serve``; returns it and the seconds until ``/healthz`` answered."""
    started = time.perf_counter()
    with log.open("wb") as output:
        process = subprocess.Popen([gateway_exe(), "serve", str(world), "--port", str(port)],
                                   stdout=output, stderr=subprocess.STDOUT)
    deadline = started + STARTUP_TIMEOUT_S
    while time.perf_counter() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the gateway exited with {process.returncode}; its log: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:  # noqa: S310
                if response.status == 200:
                    return process, time.perf_counter() - started
        except (OSError, urllib.error.URLError):
            time.sleep(0.05)
    process.kill()
    raise SystemExit("the gateway did not start")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def idle_rate(pid: int, seconds: float) -> float:
    """The process's CPU share of one core over ``seconds``."""
    before = cpu.process_seconds(pid)
    await asyncio.sleep(seconds)
    return (cpu.process_seconds(pid) - before) / seconds


async def settle(pid: int, timeout: float = 60.0) -> None:
    """Waits until the gateway has finished what the requests queued (command executions, deliveries)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await idle_rate(pid, 0.5) < IDLE_CPU_SHARE:
            return


async def measured_cpu(pid: int, send: Awaitable[T]) -> tuple[T, float]:
    """``send``'s result and the gateway's CPU seconds from before it until the gateway is idle again."""
    before = cpu.process_seconds(pid)
    result = await send
    await settle(pid)
    return result, cpu.process_seconds(pid) - before
