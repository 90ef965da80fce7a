"""What the bench programs share: a spawned world pointed at a local receiver, the receiver,
the SoLR set-up directives, and reading a DUIS answer's code."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from aiohttp import web

from gateway.admin import post as post_directive
from gateway.admin import signed_directive
from gateway.manifest import MANIFEST_FILE_NAME, Manifest, parse_manifest
from gateway.policy import directives as d

DEVICES_KEY: Final = '"devices": ['
"""``dcc-gateway init`` writes the fleet as the manifest's last key; everything before it is small."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def configure_world(world: Path, receiver_port: int) -> Manifest:
    """Lifts the ADT defaults, points response URLs at the receiver; returns the manifest without its devices.

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
            actor["response_url"] = f"http://127.0.0.1:{receiver_port}/receive/{name}"
    rewritten = json.dumps(head, indent=2)
    path.write_text(rewritten[: -len("\n}")] + ",\n  " + fleet_text, encoding="utf-8")
    return parse_manifest({**head, "devices": []}, path=path)


async def start_receiver(port: int) -> web.AppRunner:
    """The users' Receive Response Service: accepts every delivery."""

    async def accept(request: web.Request) -> web.Response:
        await request.read()
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
