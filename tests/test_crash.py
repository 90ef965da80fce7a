"""kill -9 under load (issue #5): nothing acknowledged is lost, nothing runs twice.

The gateway runs as a real process on a SQLite store. A client drives signed
SR 1.6 requests at it over HTTP while a local receiver plays the users'
Receive Response Service; the gateway is killed with SIGKILL mid-run several
times and restarted. Requests whose answer was lost in a kill are sent again
after the restart (the same bytes): they must be either accepted then, or
refused as replays because the first copy was committed. At the end:

* every request answered I99 has its command in the store, executed;
* each command was executed once: one device result per RequestID, and no
  meter was asked to run a request it had already run;
* no replay counter ever went backwards across a kill;
* the audit chain verifies;
* every I99 request's result reached the receiver (at least once).

Bounded: a few seconds of load per run, four runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

from gateway import duis_request
from gateway.manifest import Manifest
from gateway.signing import SigningKey, sign_tree, to_bytes
from gateway.store.factory import verify_audit
from gateway.world import init_world
from tests.scenario import point_response_urls

KILLS = 3
CONNECTIONS = 16
LOAD_SECONDS = (0.6, 1.4)
"""How long each run is loaded before it is killed (drawn per run from a seeded generator)."""
START_TIMEOUT_SECONDS = 30.0
SETTLE_TIMEOUT_SECONDS = 60.0
_REQUEST_ID = re.compile(rb"<sr:RequestID>([^<]+)</sr:RequestID>")
_RESPONSE_CODE = re.compile(rb"<sr:ResponseCode>([^<]+)</sr:ResponseCode>")


@dataclass(frozen=True, slots=True)
class Prepared:
    request_id: str
    target: str
    body: bytes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prepare_world(directory: Path, receiver_port: int, *, adt_threshold: int = 10_000_000) -> Manifest:
    """A world whose users' response_url is the test's receiver; by default no request is quarantined."""
    manifest = init_world(directory, devices=60)
    toml = directory / "gateway.toml"
    toml.write_text(
        toml.read_text().replace('default_thresholds = { "1.6" = 100 }', f'default_thresholds = {{ "1.6" = {adt_threshold} }}')
    )
    point_response_urls(directory, receiver_port)
    return manifest


def prepare_requests(manifest: Manifest, count: int) -> list[Prepared]:
    """SR 1.6 from the SoLR supplier to its SMETS1 electricity meters, switching each between Credit and Prepayment."""
    actor = manifest.actor("solr_is")
    key = SigningKey.load(actor.xml_sign.key, actor.xml_sign.cert)
    meters = [d for d in manifest.devices if d.supplier_mpid in actor.mpids and d.type == "ESME" and d.smets == 1]
    assert meters, "the world has SMETS1 electricity meters of the SoLR supplier"
    counter = itertools.count(1)
    prepared = []
    for n in range(count):
        meter = meters[n % len(meters)]
        mode = "Credit" if (n // len(meters)) % 2 == 0 else "Prepayment"
        number = next(counter)
        tree = duis_request.request_tree(
            originator=actor.user_id,
            target=meter.device_id,
            counter=number,
            command_variant=1,
            service_reference="1.6",
            service_reference_variant="1.6",
            body=duis_request.payment_mode_element(mode),
        )
        request_id = f"{actor.user_id}:{meter.device_id}:{number}"
        prepared.append(Prepared(request_id, str(meter.device_id), to_bytes(sign_tree(tree, key))))
    return prepared


def start_gateway(world: Path, port: int, *options: str, log: Path | None = None) -> subprocess.Popen[bytes]:
    executable = Path(sys.executable).with_name("dcc-gateway")
    with contextlib.ExitStack() as files:
        output = subprocess.DEVNULL if log is None else files.enter_context(log.open("wb"))
        process = subprocess.Popen(
            [str(executable), "serve", str(world), "--port", str(port), *options], stdout=output, stderr=output
        )
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the gateway exited at start with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return process
        time.sleep(0.05)
    process.kill()
    raise AssertionError("the gateway did not start")


def stop_gateway(process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM (a clean stop), then SIGKILL if it has not stopped within ``timeout`` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Receiver:
    """The users' Receive Response Service: keeps the RequestID of every result it is sent."""

    def __init__(self) -> None:
        self.results: Counter[str] = Counter()

    async def accept(self, request: web.Request) -> web.Response:
        body = await request.read()
        match = _REQUEST_ID.search(body)
        if match is not None and b"<sr:ResponseCode>I0<" in body:
            self.results[match.group(1).decode()] += 1
        return web.Response()

    async def serve(self) -> tuple[web.AppRunner, int]:
        """Listens on a free loopback port; returns the runner (to clean up) and the port."""
        app = web.Application()
        app.router.add_post("/receive/{actor}", self.accept)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner, port


async def send_all(url: str, pending: list[Prepared], answers: dict[str, list[str]], stop: asyncio.Event) -> list[Prepared]:
    """Sends until ``stop`` or the list is done, one meter's requests in order (their counters rise),
    meters in parallel; returns what got no answer (the kill cut it off, or it was not sent), in order."""
    by_meter: dict[str, list[Prepared]] = {}
    for prepared in pending:
        by_meter.setdefault(prepared.target, []).append(prepared)
    unanswered: dict[str, list[Prepared]] = {}

    async def meter(session: aiohttp.ClientSession, queue: list[Prepared]) -> None:
        for position, prepared in enumerate(queue):
            if stop.is_set():
                unanswered[prepared.target] = queue[position:]
                return
            try:
                async with session.post(url, data=prepared.body, headers={"Content-Type": "application/xml"}) as reply:
                    body = await reply.read()
            except (aiohttp.ClientError, asyncio.TimeoutError):
                unanswered[prepared.target] = queue[position:]
                return
            match = _RESPONSE_CODE.search(body)
            answers.setdefault(prepared.request_id, []).append(match.group(1).decode() if match else f"HTTP {reply.status}")

    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=CONNECTIONS)) as session:
        await asyncio.gather(*(meter(session, queue) for queue in by_meter.values()))
    return [prepared for queue in unanswered.values() for prepared in queue]


def counters(store: Path) -> dict[tuple[str, str], int]:
    with contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as db:
        return {(o, t): int(c) for o, t, c in db.execute("SELECT originator, target, last_counter FROM replay_counters")}


def settled(store: Path) -> bool:
    with contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as db:
        queued = db.execute("SELECT count(*) FROM commands WHERE status = 'queued'").fetchone()[0]
        pending = db.execute("SELECT count(*) FROM deliveries WHERE status = 'pending'").fetchone()[0]
    return queued == 0 and pending == 0


async def test_kill_9_mid_run_loses_nothing_acknowledged_and_runs_nothing_twice(tmp_path: Path) -> None:
    rng = random.Random(5)
    receiver = Receiver()
    runner, receiver_port = await receiver.serve()
    world = tmp_path / "world"
    manifest = prepare_world(world, receiver_port)
    store = world / "store.db"
    pending = prepare_requests(manifest, 4000)
    answers: dict[str, list[str]] = {}
    seen_counters: dict[tuple[str, str], int] = {}
    port = free_port()
    url = f"http://127.0.0.1:{port}/api/v1/serviceS"
    try:
        for run in range(KILLS + 1):
            process = await asyncio.to_thread(start_gateway, world, port)
            stop = asyncio.Event()
            if run < KILLS:
                killer = asyncio.get_running_loop().call_later(rng.uniform(*LOAD_SECONDS), _kill, process, stop)
                pending = await send_all(url, pending, answers, stop)
                killer.cancel()
                await asyncio.to_thread(process.wait)
                assert process.returncode == -signal.SIGKILL
            else:  # the last run: send what the kills cut off and some more, let it settle, stop cleanly
                await send_all(url, _first_per_meter(pending, 20), answers, stop)
                await _wait_until(lambda: settled(store) and _all_delivered(answers, receiver))
                process.send_signal(signal.SIGTERM)
                assert await asyncio.to_thread(process.wait, 30) == 0
            now = counters(store)
            assert all(now.get(pair, -1) >= last for pair, last in seen_counters.items()), "a replay counter went back"
            seen_counters = now
    finally:
        await runner.cleanup()

    accepted = {request_id for request_id, codes in answers.items() if "I99" in codes}
    assert len(accepted) > 100, f"too little load to mean anything: {len(accepted)} accepted"
    for request_id, codes in answers.items():
        # a copy resent after a kill is accepted once at most: the second is a replay
        assert codes.count("I99") <= 1 and set(codes) <= {"I99", "E40"}, (request_id, codes)

    with contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as db:
        executed = dict(db.execute("SELECT request_id, status FROM commands").fetchall())
        results = Counter(
            subject
            for subject, in db.execute("SELECT subject FROM audit WHERE kind = 'device-result' AND outcome = 'I0'")
        )
        reruns = db.execute("SELECT count(*) FROM audit WHERE kind = 'device-result' AND reason LIKE '%already executed%'").fetchone()[0]
    assert all(executed.get(request_id) == "executed" for request_id in accepted)
    assert all(results[request_id] == 1 for request_id in accepted)
    assert max(results.values()) == 1 and reruns == 0
    for (originator, target), last in seen_counters.items():
        mine = [int(r.rsplit(":", 1)[1]) for r in accepted if r.startswith(f"{originator}:{target}:")]
        assert not mine or max(mine) <= last
    assert (await verify_audit(world)).ok
    assert all(receiver.results[request_id] >= 1 for request_id in accepted)


def _first_per_meter(pending: list[Prepared], count: int) -> list[Prepared]:
    taken: Counter[str] = Counter()
    kept = []
    for prepared in pending:
        if taken[prepared.target] < count:
            taken[prepared.target] += 1
            kept.append(prepared)
    return kept


def _kill(process: subprocess.Popen[bytes], stop: asyncio.Event) -> None:
    os.kill(process.pid, signal.SIGKILL)
    stop.set()


def _all_delivered(answers: dict[str, list[str]], receiver: Receiver) -> bool:
    return all(receiver.results[r] >= 1 for r, codes in answers.items() if "I99" in codes)


async def _wait_until(condition: object) -> None:
    deadline = time.monotonic() + SETTLE_TIMEOUT_SECONDS
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("the gateway did not settle (commands or deliveries still pending)")
        await asyncio.sleep(0.1)
