"""Ingress under hostile clients (issue 16): connection limits, header/body/idle timeouts, shares.

A real gateway listens through its :class:`ConnectionGuard` on a free loopback port; slow
clients are raw sockets that trickle bytes. Timeouts are set to half a second: a test
asserts that the connection was closed (and counted) and not before its timeout, with
generous slack the other way, never how fast anything ran. Several peers are several
loopback addresses (127.0.0.2, 127.0.0.3: all of 127/8 is loopback on Linux).
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import aiohttp
import pytest
from aiohttp import web

from gateway.app import SERVICE
from gateway.server import create_app
from gateway.config import ConfigError, IngressConfig, load_config
from gateway.ingress.connections import CONNECTION_GUARD, start_guarded
from gateway.ingress.fairness import Busy, FairGate
from gateway.policy.access import AccessControl
from gateway.runtime import open_world
from gateway.service import VERIFY_ON_LOOP_BYTES, GatewayService
from gateway.stages import STAGES
from gateway.store.sqlite import SqliteStore
from gateway.verify.documents import VerifiedRequest
from gateway.verify.verifier import Verifier
from gateway.world import init_world
from tests.scenario import Scenario, make_scenario

T = TypeVar("T")

TIMEOUT = 0.5
"""The header, body and idle timeouts of the live gateway here."""
SLACK = 10.0
"""How much later than its timeout a cut may come on a loaded machine and still pass."""
PEER_A, PEER_B, PEER_C = "127.0.0.1", "127.0.0.2", "127.0.0.3"


# --- gateway.toml [ingress] -----------------------------------------------------------------


def test_ingress_defaults_are_in_the_written_config(tmp_path: Path) -> None:
    init_world(tmp_path / "w", devices=4, seed="ingress-config")
    assert load_config(tmp_path / "w").ingress == IngressConfig()
    assert "[ingress]\nheader_timeout_seconds = 10.0" in (tmp_path / "w" / "gateway.toml").read_text()


def test_ingress_values_are_read(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text("[ingress]\nheader_timeout_seconds = 2\nbody_timeout_seconds = 0.5\nmax_connections = 10\n"
                    "max_connections_per_peer = 3\noriginator_in_flight = 2\n")
    ingress = load_config(path).ingress
    assert (ingress.header_timeout_seconds, ingress.body_timeout_seconds) == (2.0, 0.5)
    assert (ingress.max_connections, ingress.max_connections_per_peer, ingress.originator_in_flight) == (10, 3, 2)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("header_timeout_seconds = 0", "ingress.header_timeout_seconds", id="zero-timeout"),
        pytest.param("body_timeout_seconds = -1", "ingress.body_timeout_seconds", id="negative-timeout"),
        pytest.param("idle_timeout_seconds = inf", "ingress.idle_timeout_seconds", id="infinite-timeout"),
        pytest.param('header_timeout_seconds = "10"', "ingress.header_timeout_seconds", id="timeout-as-string"),
        pytest.param("max_connections = 0", "ingress.max_connections", id="no-connections"),
        pytest.param("originator_in_flight = 1.5", "ingress.originator_in_flight", id="fractional-count"),
        pytest.param("max_connections = 4\nmax_connections_per_peer = 5", "per_peer cannot exceed", id="peer-over-all"),
        pytest.param("verify_queue = 4\nverify_queue_per_peer = 5", "per_peer cannot exceed", id="queue-over-all"),
        pytest.param("header_timeout = 1", "header_timeout", id="unknown-key"),
    ],
)
def test_ingress_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(f"[ingress]\n{text}\n")
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(path)


# --- the fair gate, alone -------------------------------------------------------------------


async def take_turns(gate: FairGate, key: str, order: list[str], release: asyncio.Event) -> None:
    async with gate.turn(key):
        order.append(key)
        await release.wait()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_freed_turn_goes_to_the_waiting_keys_in_rotation() -> None:
    """One slot; "flood" queues four before "honest" queues two: they alternate, not arrive in order."""
    gate = FairGate(slots=1, per_key=1, queue_per_key=8, queue=16)
    order: list[str] = []
    releases = [asyncio.Event() for _ in range(7)]
    tasks = [asyncio.create_task(take_turns(gate, "flood", order, releases[0]))]
    await settle()
    tasks += [asyncio.create_task(take_turns(gate, "flood", order, releases[n])) for n in range(1, 5)]
    await settle()
    tasks += [asyncio.create_task(take_turns(gate, "honest", order, releases[n])) for n in range(5, 7)]
    await settle()
    assert (gate.holding, gate.waiting) == (1, 6)
    for release in releases:  # in any order: each frees the one turn
        release.set()
        await settle()
    await asyncio.gather(*tasks)
    assert order == ["flood", "flood", "honest", "flood", "honest", "flood", "flood"]
    assert (gate.holding, gate.waiting) == (0, 0)


async def test_a_key_past_its_queue_is_refused_while_others_still_wait() -> None:
    gate = FairGate(slots=1, per_key=1, queue_per_key=2, queue=3)
    release = asyncio.Event()
    order: list[str] = []
    held = [asyncio.create_task(take_turns(gate, "flood", order, release)) for _ in range(3)]  # 1 in, 2 waiting
    await settle()
    with pytest.raises(Busy, match="2 already waiting for this one"):
        await gate.turn("flood").__aenter__()
    held.append(asyncio.create_task(take_turns(gate, "honest", order, release)))  # the last place in all
    await settle()
    with pytest.raises(Busy, match="3 already waiting in all"):
        await gate.turn("third").__aenter__()
    release.set()
    await asyncio.gather(*held)
    assert order == ["flood", "flood", "honest", "flood"]


async def test_per_key_bounds_one_key_without_an_overall_bound() -> None:
    gate = FairGate(slots=None, per_key=2, queue_per_key=0, queue=0)
    release = asyncio.Event()
    order: list[str] = []
    held = [asyncio.create_task(take_turns(gate, key, order, release)) for key in ("a", "a", "b", "b", "c")]
    await settle()
    assert gate.holding == 5
    with pytest.raises(Busy):
        await gate.turn("a").__aenter__()
    release.set()
    await asyncio.gather(*held)


async def test_a_waiter_that_leaves_gives_nothing_away() -> None:
    gate = FairGate(slots=1, per_key=1, queue_per_key=4, queue=4)
    release = asyncio.Event()
    order: list[str] = []
    first = asyncio.create_task(take_turns(gate, "a", order, release))
    await settle()
    leaving = asyncio.create_task(take_turns(gate, "b", order, release))
    staying = asyncio.create_task(take_turns(gate, "c", order, release))
    await settle()
    leaving.cancel()  # its client went away while it waited
    await settle()
    assert (gate.holding, gate.waiting) == (1, 1)
    release.set()
    await asyncio.gather(first, staying)
    assert leaving.cancelled() and order == ["a", "c"]
    assert (gate.holding, gate.waiting) == (0, 0)


async def test_a_waiter_cancelled_as_its_turn_came_hands_it_on() -> None:
    gate = FairGate(slots=1, per_key=1, queue_per_key=4, queue=4)
    release = asyncio.Event()
    order: list[str] = []
    first = asyncio.create_task(take_turns(gate, "a", order, release))
    await settle()
    unlucky = asyncio.create_task(take_turns(gate, "b", order, release))
    after = asyncio.create_task(take_turns(gate, "c", order, release))
    await settle()
    release.set()
    await asyncio.sleep(0)  # "a" leaves and hands the turn to "b", which has not run yet...
    unlucky.cancel()  # ... and is cancelled before it does
    await asyncio.gather(first, after)
    assert unlucky.cancelled() and order == ["a", "c"]
    assert (gate.holding, gate.waiting) == (0, 0)


# --- a live gateway -------------------------------------------------------------------------


def set_ingress(world: Path, **values: object) -> None:
    """Rewrites keys of the [ingress] section that ``init`` wrote with their defaults."""
    toml = world / "gateway.toml"
    text = toml.read_text()
    for key, value in values.items():
        text, count = re.subn(rf"^{key} = .*$", f"{key} = {value}", text, flags=re.MULTILINE)
        assert count == 1, key
    toml.write_text(text)


class Live:
    def __init__(self, scenario: Scenario, app: web.Application, port: int, store: Path) -> None:
        self.scenario = scenario
        self.app = app
        self.port = port
        self.store = store

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def connect(self, peer: str = PEER_A) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port, local_addr=(peer, 0))

    async def metrics(self) -> str:
        async with aiohttp.ClientSession() as session, session.get(f"{self.url}/metrics") as response:
            return await response.text()

    async def count(self, name: str, **labels: str) -> float:
        text = await self.metrics()
        wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
        pattern = rf"^{re.escape(name)}\{{{re.escape(wanted)}\}} (\S+)$" if labels else rf"^{re.escape(name)} (\S+)$"
        match = re.search(pattern, text, flags=re.MULTILINE)
        return float(match.group(1)) if match else 0.0

    async def post(
        self, session: aiohttp.ClientSession, body: bytes, path: str = "serviceS"
    ) -> tuple[int, dict[str, str], bytes]:
        async with session.post(f"{self.url}/api/v1/{path}", data=body,
                                headers={"Content-Type": "application/xml"}) as response:
            return response.status, dict(response.headers), await response.read()


@pytest.fixture
def live_world(tmp_path: Path) -> Path:
    world = tmp_path / "world"
    init_world(world, devices=12, seed="ingress-tests")
    return world


async def start_live(world: Path, tmp_path: Path, **ingress: object) -> tuple[Live, web.AppRunner]:
    set_ingress(world, **ingress)
    scenario = make_scenario(world)
    store = tmp_path / "store.db"
    app = create_app(open_world(world), clock=scenario.clock, store_url=f"sqlite:///{store}")
    runner, site = await start_guarded(app, "127.0.0.1", 0)
    return Live(scenario, app, site.port, store), runner


@pytest.fixture
async def live(live_world: Path, tmp_path: Path) -> AsyncIterator[Live]:
    gateway, runner = await start_live(
        live_world, tmp_path, header_timeout_seconds=TIMEOUT, body_timeout_seconds=TIMEOUT, idle_timeout_seconds=TIMEOUT
    )
    yield gateway
    await runner.cleanup()


async def closed_after(reader: asyncio.StreamReader, started: float) -> tuple[float, bytes]:
    """Reads until the gateway closes; returns (seconds since ``started``, what it sent)."""
    received = await asyncio.wait_for(reader.read(), timeout=SLACK + TIMEOUT)
    return time.monotonic() - started, received


async def trickle(writer: asyncio.StreamWriter, data: bytes, every: float = 0.05) -> None:
    """One byte at a time, steadily, until the data runs out or the gateway closes."""
    for byte in data:
        writer.write(bytes([byte]))
        try:
            await writer.drain()
        except ConnectionError:
            return
        await asyncio.sleep(every)


async def test_headers_that_trickle_are_cut_at_the_header_timeout(live: Live) -> None:
    started = time.monotonic()
    reader, writer = await live.connect()
    slow = asyncio.create_task(trickle(writer, b"POST /api/v1/serviceS HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000))
    async with aiohttp.ClientSession() as session, session.get(f"{live.url}/healthz") as response:
        assert response.status == 200  # answered while the slow one holds its connection
    elapsed, received = await closed_after(reader, started)
    slow.cancel()
    writer.close()
    assert received == b""  # closed, not answered: it never finished asking
    assert TIMEOUT <= elapsed < TIMEOUT + SLACK
    assert await live.count("dcc_gateway_connections_cut_total", reason="header-timeout") == 1


async def test_a_silent_connection_is_cut_at_the_header_timeout(live: Live) -> None:
    started = time.monotonic()
    reader, writer = await live.connect()
    elapsed, received = await closed_after(reader, started)
    writer.close()
    assert received == b"" and TIMEOUT <= elapsed < TIMEOUT + SLACK
    assert await live.count("dcc_gateway_connections_cut_total", reason="header-timeout") == 1


async def test_a_body_that_trickles_gets_408_and_is_closed_at_the_body_timeout(live: Live) -> None:
    meter = live.scenario.device(smets=1).device_id
    honest = live.scenario.signed_request("failed_supplier_is", meter)
    reader, writer = await live.connect()
    writer.write(b"POST /api/v1/serviceS HTTP/1.1\r\nHost: x\r\nContent-Type: application/xml\r\n"
                 b"Content-Length: 4000\r\n\r\n")
    await writer.drain()
    started = time.monotonic()  # the headers are in: the body's clock runs
    slow = asyncio.create_task(trickle(writer, b"<" * 4000))
    async with aiohttp.ClientSession() as session:
        status, _, body = await live.post(session, honest)
    assert status == 200 and b"<sr:ResponseCode>I99<" in body  # an honest request, answered meanwhile
    elapsed, received = await closed_after(reader, started)
    slow.cancel()
    writer.close()
    head, _, payload = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ") and b"Connection: close" in head
    assert json.loads(payload)["check"] == "body-timeout"
    assert TIMEOUT <= elapsed < TIMEOUT + SLACK
    assert await live.count("dcc_gateway_connections_cut_total", reason="body-timeout") == 1
    assert await live.count("dcc_gateway_requests_total", outcome="body-timeout", path="serviceS") == 0  # not decided


async def test_a_408_survives_a_client_that_reads_it_late_while_still_sending(live: Live) -> None:
    # Closing a socket with the client's unread bytes in it sends a reset, and a reset destroys
    # whatever the client has not read yet: the 408 must be followed by a FIN and the socket held
    # until the client closes its side, not closed while the client is still trickling.
    reader, writer = await live.connect()
    writer.write(b"POST /api/v1/serviceS HTTP/1.1\r\nHost: x\r\nContent-Type: application/xml\r\n"
                 b"Content-Length: 4000\r\n\r\n")
    await writer.drain()
    slow = asyncio.create_task(trickle(writer, b"<" * 4000, every=0.01))
    await asyncio.sleep(TIMEOUT * 4)  # answered at TIMEOUT; the client keeps sending and does not read
    received = await asyncio.wait_for(reader.read(), timeout=SLACK)
    slow.cancel()
    writer.close()
    assert received.startswith(b"HTTP/1.1 408 ")
    assert json.loads(received.partition(b"\r\n\r\n")[2])["check"] == "body-timeout"


async def test_a_kept_alive_connection_is_closed_when_idle(live: Live) -> None:
    reader, writer = await live.connect()
    started = time.monotonic()  # the idle time starts once the answer is made, later than this
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
    await reader.readexactly(length)
    elapsed, received = await closed_after(reader, started)
    writer.close()
    assert received == b"" and TIMEOUT <= elapsed < TIMEOUT + SLACK
    assert await live.count("dcc_gateway_connections_cut_total", reason="idle-timeout") == 1
    assert await live.count("dcc_gateway_connections_cut_total", reason="header-timeout") == 0


async def test_a_request_that_keeps_its_connection_busy_is_not_cut(live: Live) -> None:
    """Three requests on one kept-alive connection, each well within the timeouts, over longer than
    any one timeout: each request's headers start a fresh deadline."""
    meter = live.scenario.device(smets=1).device_id
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(3):
            status, _, _ = await live.post(session, live.scenario.signed_request("failed_supplier_is", meter))
            assert status == 200
            await asyncio.sleep(TIMEOUT * 0.6)
    assert await live.count("dcc_gateway_connections_cut_total", reason="idle-timeout") == 0
    assert await live.count("dcc_gateway_connections_cut_total", reason="header-timeout") == 0


async def test_connections_past_the_per_peer_and_overall_limits_get_503_and_are_closed(
    live_world: Path, tmp_path: Path
) -> None:
    gateway, runner = await start_live(live_world, tmp_path, max_connections=4, max_connections_per_peer=2)
    try:
        held = [await gateway.connect(PEER_A), await gateway.connect(PEER_A), await gateway.connect(PEER_B)]
        reader, writer = await gateway.connect(PEER_A)  # a third from one address
        refused = await asyncio.wait_for(reader.read(), timeout=SLACK)
        writer.close()
        head, _, payload = refused.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 1" in head
        assert json.loads(payload)["check"] == "per-peer-limit"
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(PEER_C, 0))) as session:
            async with session.get(f"{gateway.url}/healthz") as response:  # the fourth in all: served
                assert response.status == 200
            reader, writer = await gateway.connect(PEER_C)  # the fifth in all
            refused = await asyncio.wait_for(reader.read(), timeout=SLACK)
            writer.close()
            assert json.loads(refused.partition(b"\r\n\r\n")[2])["check"] == "connection-limit"
        for _, held_writer in held:
            held_writer.close()
            await held_writer.wait_closed()
        guard = gateway.app[CONNECTION_GUARD]
        await eventually(lambda: guard.open == 0)  # counted down as they closed...
        async with aiohttp.ClientSession() as session:  # ... so the first address is served again
            async with session.get(f"{gateway.url}/metrics") as response:
                text = await response.text()
        assert 'dcc_gateway_connections_cut_total{reason="per-peer-limit"} 1.0' in text
        assert 'dcc_gateway_connections_cut_total{reason="connection-limit"} 1.0' in text
    finally:
        await runner.cleanup()


async def test_a_503_refusal_survives_a_client_that_keeps_sending_and_reads_late(
    live_world: Path, tmp_path: Path
) -> None:
    # As for the 408: the refused connection is half-closed after its 503 and what the client sends
    # is dropped; closed while the client still sends, the reset would destroy the unread 503.
    gateway, runner = await start_live(live_world, tmp_path, max_connections=4, max_connections_per_peer=1)
    try:
        held = await gateway.connect(PEER_A)
        reader, writer = await gateway.connect(PEER_A)  # a second from one address: refused
        slow = asyncio.create_task(trickle(writer, b"POST /api/v1/serviceS HTTP/1.1\r\n" * 100, every=0.01))
        await asyncio.sleep(0.5)  # the client keeps sending and does not read
        refused = await asyncio.wait_for(reader.read(), timeout=SLACK)
        slow.cancel()
        writer.close()
        held[1].close()
        assert refused.startswith(b"HTTP/1.1 503 ")
        assert json.loads(refused.partition(b"\r\n\r\n")[2])["check"] == "per-peer-limit"
    finally:
        await runner.cleanup()


# --- shares of the verifier and of decisions ------------------------------------------------


@pytest.fixture
def verifies_held(monkeypatch: pytest.MonkeyPatch) -> Iterator[asyncio.Event]:
    """Every verification waits, holding its verifier turn, until the event is set."""
    release = asyncio.Event()
    original = GatewayService._verified

    async def held(self: GatewayService, data: bytes, verify: Callable[[Verifier], T]) -> T:
        await release.wait()
        return await original(self, data, verify)

    monkeypatch.setattr(GatewayService, "_verified", held)
    yield release
    release.set()


def flood_requests(scenario: Scenario) -> Callable[[int], bytes]:
    """The n-th request of the flooding originator (the failed supplier), to its meters in turn."""
    meters = scenario.devices(mpid_of="failed-supplier", device_type="ESME", smets=1)
    return lambda n: scenario.signed_request("failed_supplier_is", meters[n % len(meters)].device_id)


async def eventually(condition: object, timeout: float = SLACK) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def test_a_request_is_verified_on_the_event_loop_and_a_larger_document_in_a_crypto_thread(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One request, one pass: a DUIS request is verified on the loop (no hand-off), a document
    past VERIFY_ON_LOOP_BYTES in a crypto thread, so that one body cannot hold the loop long."""
    on_loop: list[tuple[int, bool]] = []
    original = Verifier.verify_request

    def recorded(self: Verifier, data: bytes) -> VerifiedRequest:
        on_loop.append((len(data), threading.current_thread() is threading.main_thread()))
        return original(self, data)

    monkeypatch.setattr(Verifier, "verify_request", recorded)
    scenario = live.scenario
    signed = scenario.signed_request("solr_is", scenario.device(mpid_of="solr-supplier").device_id)
    padded = signed + b" " * VERIFY_ON_LOOP_BYTES  # white space after the root: the same document, larger
    async with aiohttp.ClientSession() as session:
        small_status, _, small_body = await live.post(session, signed)
        large_status, _, large_body = await live.post(session, padded)
    assert small_status == 200 and b"<sr:ResponseCode>I99</sr:ResponseCode>" in small_body
    assert large_status == 200 and b"<sr:ResponseCode>E40</sr:ResponseCode>" in large_body  # verified: a replay
    assert on_loop == [(len(signed), True), (len(padded), False)]


async def test_the_stage_timers_count_each_stage_a_request_passes(live: Live) -> None:
    """The always-on stage timers (gateway/stages.py) behind bench/load.py's breakdown: a request's
    stages, the SQLite COMMIT on the store's thread included, add CPU to /metrics."""
    name = "dcc_gateway_stage_cpu_seconds_total"
    before = {stage: await live.count(name, stage=stage) for stage in STAGES}
    scenario = live.scenario
    async with aiohttp.ClientSession() as session:
        status, _, _ = await live.post(session, scenario.signed_request(
            "solr_is", scenario.device(mpid_of="solr-supplier").device_id))
    assert status == 200
    grown = {stage for stage in STAGES if await live.count(name, stage=stage) > before[stage]}
    assert {"http", "verify", "policy", "store", "commit", "audit", "sign", "log", "metrics", "console"} <= grown


async def test_a_peer_past_its_share_of_the_verifier_gets_503_while_another_peer_waits_its_turn(
    live_world: Path, tmp_path: Path, verifies_held: asyncio.Event
) -> None:
    gateway, runner = await start_live(live_world, tmp_path, verify_queue=8, verify_queue_per_peer=3)
    scenario = gateway.scenario
    gate = gateway.app[SERVICE].admission.verifier
    signed = flood_requests(scenario)
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(PEER_A, 0))) as flood, \
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(PEER_B, 0))) as honest:
            flooding = [asyncio.create_task(gateway.post(flood, signed(n))) for n in range(5)]
            await eventually(lambda: (gate.holding, gate.waiting) == (2, 3))  # two verifying, three queued
            status, headers, body = await gateway.post(flood, signed(5))
            assert status == 503 and headers["Retry-After"] == "1"
            assert headers["Content-Type"] == "application/problem+json"
            assert json.loads(body)["check"] == "verifier-queue-full"
            other = asyncio.create_task(gateway.post(honest, scenario.signed_request("solr_is", scenario.device(
                mpid_of="solr-supplier").device_id)))
            await eventually(lambda: gate.waiting == 4)  # the other peer waits; it is not refused
            verifies_held.set()
            answers = await asyncio.gather(*flooding, other)
        assert [status for status, _, _ in answers] == [200] * 6
        assert await gateway.count("dcc_gateway_requests_total", outcome="verifier-queue-full", path="serviceS") == 1
    finally:
        await runner.cleanup()


async def test_an_originator_past_its_share_gets_503_audited_while_another_is_served(
    live_world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway, runner = await start_live(live_world, tmp_path, originator_in_flight=1, originator_queue=2)
    scenario = gateway.scenario
    flooder = scenario.actor("failed_supplier_is").user_id
    release = asyncio.Event()
    deciding: list[str] = []
    original = AccessControl.decide_request

    async def held(self: AccessControl, request: VerifiedRequest, data: bytes):  # type: ignore[no-untyped-def]
        if request.originator == flooder:
            deciding.append(str(request.request_id))
            await release.wait()
        return await original(self, request, data)

    monkeypatch.setattr(AccessControl, "decide_request", held)
    gate = gateway.app[SERVICE].admission.originators
    signed = flood_requests(scenario)
    try:
        async with aiohttp.ClientSession() as session:
            flooding = [asyncio.create_task(gateway.post(session, signed(n))) for n in range(3)]
            await eventually(lambda: (gate.holding, gate.waiting) == (1, 2))  # one deciding, two waiting
            refused = [await gateway.post(session, signed(n)) for n in range(3, 5)]
            for status, headers, body in refused:
                assert status == 503 and headers["Retry-After"] == "1"
                assert json.loads(body)["check"] == "originator-over-share"
            status, _, body = await gateway.post(session, scenario.signed_request(
                "solr_is", scenario.device(mpid_of="solr-supplier").device_id))
            assert status == 200 and b"<sr:ResponseCode>I99<" in body  # another originator, served meanwhile
            assert len(deciding) == 1
            release.set()
            answers = await asyncio.gather(*flooding)
        assert [status for status, _, _ in answers] == [200] * 3 and len(deciding) == 3
        assert await gateway.count("dcc_gateway_requests_total", outcome="originator-over-share", path="serviceS") == 2
    finally:
        await runner.cleanup()
    async with SqliteStore(gateway.store) as store:
        refusals = [r.entry async for r in store.audit_records() if r.entry.outcome == "originator-over-share"]
    assert len(refusals) == 2 and {e.actor for e in refusals} == {str(flooder)}
    assert all(e.kind == "request" and e.detail["step"] == "fairness" for e in refusals)
