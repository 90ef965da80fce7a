"""Hostile load against a spawned gateway (issue 16): does it stay cheap, and fair to honest users?

    python bench/hostile.py [--scenarios flood,slow,dead] [--seconds 10] [--json]

Each scenario runs on a fresh world (``dcc-gateway init --devices 2000``) and its own
``dcc-gateway serve`` (one worker, SQLite), with the default ``[ingress]`` settings, the
ADT defaults lifted and every user's response_url pointed at a local receiver
(``bench/_common.py``). The honest user is the SoLR supplier (``solr_is``) sending signed
SR 1.6 requests to its own SMETS1 meters at a steady rate (``--honest-rate`` over
``--honest-connections``, each connection waiting for its answer, from 127.0.0.3); its
**goodput** is the I99 answers it gets per second, and each scenario compares it with the
same load run alone just before. Every request is signed before its phase starts.

flood   The SoLR Contingency user (``srp_sc``), whose key is misused, floods SR 1.6 from
        127.0.0.2 over ``--flood-connections`` connections as fast as answers come,
        re-sending at once what is refused 503 (a hostile client ignores Retry-After).
        Phases: *accepted* (the flood alone over ``--cost-connections``, its ADT lifted:
        all I99), *honest alone*, *accepted flood beside honest*, then its ADT lowered to
        1: *quarantined* (the flood alone: all E43, each with an AD1 alert), *quarantined
        flood beside honest*. Reported: CPU per request of the accepted and quarantined
        phases (E43 against I99), the AD1 backlog over time (E43 answered minus AD1
        alerts received) and each alert's delay from its E43 answer to its arrival at
        the receiver (an upper bound of the time it took to be queued), honest goodput
        beside each flood.
slow    ``--slow-connections`` clients from ``--slow-peers`` addresses (127.0.0.10…):
        half trickle a request's headers, half its body, one byte a second, and connect
        again once cut. Reported: connections cut by reason (``/metrics``), how long the
        admitted ones stayed open against the configured timeouts, ``/healthz`` probes
        answered (every 0.25 s from 127.0.0.4) and honest goodput beside them.
dead    Beside the honest user, ``srp_sc`` sends at ``--dead-rate`` and every request's
        result is delivered to its response_url, which is alive (baseline), then silent
        (accepts connections, never answers: each attempt waits out its timeout), then
        refused (nothing listens). Deliveries left from the silent phase carry on into
        the refused one. Reported: honest goodput, gateway CPU per request, and how long
        the honest user's results (I0) took to arrive after their I99.

CPU per request is the gateway process's (all threads, from /proc) from the start of a
phase until the gateway is idle again, so the work a request leaves behind (command
execution, alerts, deliveries) is counted; the load generator's and the machine's are
printed beside it. Loopback only; Linux (/proc, 127/8 source addresses).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import re
import resource
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp  # noqa: E402

from bench import cpu  # noqa: E402
from bench._common import (  # noqa: E402
    configure_world,
    create_world,
    duis_outcome,
    enable_contingency,
    free_port,
    percentile_ms,
    settle,
    spawn_gateway,
    start_receiver,
)
from gateway.admin import post as post_directive  # noqa: E402
from gateway.admin import signed_directive  # noqa: E402
from gateway.config import IngressConfig, load_config  # noqa: E402
from gateway.manifest import Device, Manifest, load_manifest  # noqa: E402
from gateway.policy import directives as d  # noqa: E402
from gateway.signing import SigningKey, sign_tree, to_bytes  # noqa: E402
from tests import factories  # noqa: E402

HONEST_PEER: Final = "127.0.0.3"
FLOOD_PEER: Final = "127.0.0.2"
PROBE_PEER: Final = "127.0.0.4"
SLOW_PEER_BASE: Final = 10
"""Slow clients connect from 127.0.0.10, .11, …"""
HONEST: Final = "solr_is"
FLOODER: Final = "srp_sc"
SAMPLE_S: Final = 0.5
"""How often the AD1 backlog is sampled."""
DRAIN_TIMEOUT_S: Final = 60.0
"""How long after a phase the bench waits for its alerts or results to arrive."""
GOODPUT_TARGET: Final = 0.8
REFUSED_WITHIN_S: Final = 2.0
"""A slow connection closed sooner than this was refused, not cut at a timeout (those are 10 s)."""
AD1_TARGET_S: Final = 5.0
_REQUEST_ID = re.compile(rb"<(?:\w+:)?RequestID>([^<]+)</(?:\w+:)?RequestID>")
_ALERT_CODE = re.compile(rb"<(?:\w+:)?DCCAlertCode>([^<]+)<")
_RESPONSE_CODE = re.compile(rb"<(?:\w+:)?ResponseCode>([^<]+)<")
T = TypeVar("T")
U = TypeVar("U")
Say = Callable[[str], None]


# --- requests ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Signed:
    request_id: str
    body: bytes


class Signer:
    """Signs SR 1.6 requests (to Credit) of one actor, counters rising across everything it signs."""

    def __init__(self, manifest: Manifest, counter: Iterator[int]) -> None:
        self._manifest = manifest
        self._counter = counter
        self._keys: dict[str, SigningKey] = {}

    def streams(self, actor: str, meters: Sequence[Device], workers: int, per_worker: int) -> list[list[Signed]]:
        """One list per worker, each to meters of its own (no request overtakes another to its
        meter, so no E40 from the bench itself), at most ``per_worker`` requests long."""
        if actor not in self._keys:
            who = self._manifest.actor(actor)
            self._keys[actor] = SigningKey.load(who.xml_sign.key, who.xml_sign.cert)
        key, originator = self._keys[actor], self._manifest.actor(actor).user_id
        streams = []
        for worker in range(workers):
            own = list(meters[worker::workers]) or [meters[worker % len(meters)]]
            stream = []
            for n in range(per_worker):
                tree = factories.request_tree(originator=originator, target=own[n % len(own)].device_id,
                                              counter=next(self._counter))
                body = to_bytes(sign_tree(tree, key))
                stream.append(Signed(_REQUEST_ID.search(body).group(1).decode(), body))  # type: ignore[union-attr]
            streams.append(stream)
        return streams


def smets1_meters(manifest: Manifest, party: str) -> list[Device]:
    mpids = set(manifest.party(party).mpids)
    return [x for x in manifest.devices if x.supplier_mpid in mpids and x.type == "ESME" and x.smets == 1]


# --- what the clients saw --------------------------------------------------------------------


@dataclass
class Tally:
    """Answers one client (honest or flooding) got in a phase."""

    codes: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    answered_at: dict[str, tuple[float, str]] = field(default_factory=dict)
    """RequestID -> (loop time of its answer, its code), for decided answers."""
    window: tuple[float, float] = (0.0, 0.0)
    """(start, end) loop times of the sending; goodput counts the I99 answered within it."""
    good: int = 0

    def open(self, start: float, seconds: float) -> float:
        self.window = (start, start + seconds)
        return start + seconds

    def record(self, item: Signed, code: str, latency: float, at: float) -> None:
        self.codes[code] += 1
        self.latencies.append(latency)
        if not code.startswith(("HTTP", "503", "client")):
            self.answered_at[item.request_id] = (at, code)
        if code == "I99" and at <= self.window[1]:
            self.good += 1

    def summary(self, seconds: float) -> dict[str, Any]:
        """``seconds``: how long the phase lasted (the answers still in flight at its end included)."""
        ordered = sorted(self.latencies)
        window = self.window[1] - self.window[0]
        return {
            "answers": len(ordered),
            "goodput_per_s": round(self.good / window, 1) if window > 0 else 0.0,
            "p50_ms": percentile_ms(ordered, 50),
            "p99_ms": percentile_ms(ordered, 99),
            "codes": dict(self.codes),
        }


async def post(session: aiohttp.ClientSession, url: str, item: Signed) -> str:
    """The DUIS code of the answer, ``503 <check>`` for a refusal, or ``client-error``."""
    try:
        async with session.post(f"{url}/api/v1/serviceS", data=item.body,
                                headers={"Content-Type": "application/xml"}) as response:
            body = await response.read()
    except (aiohttp.ClientError, TimeoutError, OSError):
        return "client-error"
    if response.status == 503:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            return f"503 {json.loads(body)['check']}"
        return "503"
    return duis_outcome(response.status, body)


@contextlib.asynccontextmanager
async def session_from(peer: str, connections: int) -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(limit=connections, local_addr=(peer, 0))
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield session


async def paced(url: str, streams: list[list[Signed]], rate: float, seconds: float, peer: str,
                tally: Tally | None = None) -> Tally:
    """Each stream on a connection of its own, sending at ``rate / len(streams)`` per second and
    never two at once (a late answer delays that stream's next request, with no burst after)."""
    tally = Tally() if tally is None else tally
    loop = asyncio.get_running_loop()
    interval = len(streams) / rate
    start = loop.time()
    deadline = tally.open(start, seconds)

    async def stream(session: aiohttp.ClientSession, items: list[Signed], offset: float) -> None:
        next_at = start + offset
        for item in items:
            if next_at >= deadline:
                return
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            sent = loop.time()
            code = await post(session, url, item)
            answered = loop.time()
            tally.record(item, code, answered - sent, answered)
            next_at = max(next_at + interval, answered)

    async with session_from(peer, len(streams)) as session:
        await asyncio.gather(*(stream(session, items, n * interval / len(streams)) for n, items in enumerate(streams)))
    return tally


async def flooding(url: str, streams: list[list[Signed]], seconds: float, peer: str,
                   tally: Tally | None = None) -> Tally:
    """As fast as answers come, one request in flight per stream; a 503 is sent again at once."""
    tally = Tally() if tally is None else tally
    loop = asyncio.get_running_loop()
    deadline = tally.open(loop.time(), seconds)

    async def stream(session: aiohttp.ClientSession, items: list[Signed]) -> None:
        for item in items:
            while loop.time() < deadline:
                sent = loop.time()
                code = await post(session, url, item)
                answered = loop.time()
                tally.record(item, code, answered - sent, answered)
                if code == "client-error":
                    await asyncio.sleep(0.05)  # a refused connection: not a tight loop on the bench's side
                elif not code.startswith("503"):
                    break
            else:
                return

    async with session_from(peer, len(streams)) as session:
        await asyncio.gather(*(stream(session, items) for items in streams))
    return tally


# --- the gateway and its receiver ------------------------------------------------------------


class Deliveries:
    """What the receiver got: AD1 alerts and I0 results by the RequestID they are about."""

    def __init__(self) -> None:
        self.ad1: dict[str, float] = {}
        self.results: dict[str, float] = {}

    def __call__(self, actor: str, body: bytes) -> None:
        now = asyncio.get_running_loop().time()
        request = _REQUEST_ID.search(body)
        if request is None:
            return
        alert = _ALERT_CODE.search(body)
        code = _RESPONSE_CODE.search(body)
        if alert is not None and alert.group(1) == b"AD1":
            self.ad1.setdefault(request.group(1).decode(), now)
        elif code is not None and code.group(1) == b"I0":
            self.results.setdefault(request.group(1).decode(), now)


@dataclass
class Gateway:
    url: str
    pid: int
    manifest: Manifest
    ingress: IngressConfig
    deliveries: Deliveries

    async def metrics(self) -> dict[str, float]:
        """Every sample of /metrics, keyed by its name and labels as printed."""
        async with session_from(PROBE_PEER, 1) as session, session.get(f"{self.url}/metrics") as response:
            text = await response.text()
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples

    def direct(self, actor: str, directive: d.Directive) -> None:
        status, answer = post_directive(self.url + "/api/v1/admin", signed_directive(
            self.manifest, actor, directive, int(time.time() * 1_000_000)))
        if status != 200 or not json.loads(answer)["accepted"]:
            raise SystemExit(f"directive {d.command_name(directive)} failed: {answer!r}")


@contextlib.asynccontextmanager
async def spawned(args: argparse.Namespace, say: Say, *, dead_port: int | None = None) -> AsyncIterator[Gateway]:
    """A fresh world and its gateway (with the SoLR Contingency user enabled), and the receiver."""
    with tempfile.TemporaryDirectory(prefix="dcc-hostile-") as scratch:
        world = Path(scratch) / "world"
        say(f"init {args.devices} devices ...")
        create_world(world, args.devices)
        receiver_port = free_port()
        elsewhere = {} if dead_port is None else {FLOODER: f"http://127.0.0.1:{dead_port}/receive/{FLOODER}"}
        manifest = configure_world(world, receiver_port, elsewhere)
        deliveries = Deliveries()
        receiver = await start_receiver(receiver_port, deliveries)
        port = free_port()
        process, _ = await asyncio.to_thread(spawn_gateway, world, port, Path(scratch) / "gateway.log")
        try:
            gateway = Gateway(f"http://127.0.0.1:{port}", process.pid, load_manifest(world), load_config(world).ingress,
                              deliveries)
            await asyncio.to_thread(enable_contingency, manifest, gateway.url)
            yield gateway
        finally:
            process.terminate()
            await asyncio.to_thread(process.wait, 60)
            await receiver.cleanup()


@dataclass(frozen=True, slots=True)
class CpuWindow:
    """CPU snapshots (/proc) from before a load until the gateway was idle again after it."""

    before: cpu.CpuSnapshot
    after: cpu.CpuSnapshot

    def per_request(self, requests: int) -> dict[str, float]:
        return cpu.per_request(self.before, self.after, requests)


async def measured(gateway: Gateway, load: Awaitable[T]) -> tuple[T, CpuWindow, float]:
    """``load``'s result, the CPU window around it (until the gateway is idle again: what the requests
    left to do counts) and the load's own seconds."""
    before = cpu.snapshot(gateway.pid)
    started = time.monotonic()
    result = await load
    seconds = time.monotonic() - started
    await settle(gateway.pid)
    return result, CpuWindow(before, cpu.snapshot(gateway.pid)), seconds


def ratio(value: float, baseline: float) -> float | None:
    return round(value / baseline, 3) if baseline else None


# --- scenario: an ADT flood beside an honest user ------------------------------------------


async def flood_scenario(args: argparse.Namespace, say: Say) -> dict[str, Any]:
    async with spawned(args, say) as gateway:
        signer = Signer(gateway.manifest, itertools.count(int(time.time() * 1000)))
        honest_meters = smets1_meters(gateway.manifest, "solr-supplier")
        flood_meters = smets1_meters(gateway.manifest, "failed-supplier")
        per_honest_stream = int(args.honest_rate * args.seconds / args.honest_connections) + 2

        def honest_streams() -> list[list[Signed]]:
            return signer.streams(HONEST, honest_meters, args.honest_connections, per_honest_stream)

        def flood_streams(connections: int) -> list[list[Signed]]:
            return signer.streams(FLOODER, flood_meters, connections, max(1, args.flood_requests // connections))

        async def flood_alone(name: str) -> None:
            streams = flood_streams(args.cost_connections)
            say(f"flood: {name} (the flood alone, {args.cost_connections} connections) ...")
            tally = Tally()
            _, window, seconds, backlog = await with_backlog(
                gateway, flooding(gateway.url, streams, args.seconds, FLOOD_PEER, tally), tally)
            phases[name] = {"seconds": round(seconds, 2), **tally.summary(seconds),
                            "cpu": window.per_request(len(tally.latencies)),
                            "ad1": await arrival_delays(tally, "E43", gateway.deliveries.ad1), "ad1_backlog": backlog}

        async def flood_beside_honest(name: str) -> None:
            honest, streams = honest_streams(), flood_streams(args.flood_connections)
            say(f"flood: {name} ({args.flood_connections} flooding connections) ...")
            flood = Tally()
            (_, beside), window, seconds, backlog = await with_backlog(gateway, _both(
                flooding(gateway.url, streams, args.seconds, FLOOD_PEER, flood),
                paced(gateway.url, honest, args.honest_rate, args.seconds, HONEST_PEER)), flood)
            phases[name] = {
                "seconds": round(seconds, 2),
                "flood": flood.summary(seconds),
                "honest": beside.summary(seconds),
                "cpu": window.per_request(len(flood.latencies) + len(beside.latencies)),
                "ad1": await arrival_delays(flood, "E43", gateway.deliveries.ad1),
                "ad1_backlog": backlog,
            }

        phases: dict[str, Any] = {}
        await flood_alone("accepted")  # the flooder's ADT is lifted: every request I99
        streams = honest_streams()
        say("flood: honest alone ...")
        honest_alone, window, seconds = await measured(
            gateway, paced(gateway.url, streams, args.honest_rate, args.seconds, HONEST_PEER))
        phases["honest_alone"] = {"seconds": round(seconds, 2), **honest_alone.summary(seconds),
                                  "cpu": window.per_request(len(honest_alone.latencies))}
        await flood_beside_honest("accepted_flood_beside_honest")
        gateway.direct("srp_aro", d.SubmitAdt("failed-supplier", 3600, {"1.6": 1}))
        await flood_alone("quarantined")  # every request past the ADT: E43, and an AD1 alert each
        await flood_beside_honest("quarantined_flood_beside_honest")
        metrics = await gateway.metrics()
    accepted_ms = phases["accepted"]["cpu"].get("gateway_cpu_ms", 0.0)
    quarantined_ms = phases["quarantined"]["cpu"].get("gateway_cpu_ms", 0.0)
    baseline = phases["honest_alone"]["goodput_per_s"]
    alerted = ("quarantined", "quarantined_flood_beside_honest")
    delays = [phases[p]["ad1"]["max_s"] for p in alerted if phases[p]["ad1"]["max_s"] is not None]
    worst_ad1 = max(delays, default=None)
    missing_ad1 = sum(phases[p]["ad1"]["missing"] for p in alerted)
    checks: dict[str, Any] = {
        "capacity_per_s": round(phases["accepted"]["answers"] / phases["accepted"]["seconds"], 1),
        "honest_rate_per_s": args.honest_rate,
        "e43_cpu_ms": quarantined_ms,
        "accepted_cpu_ms": accepted_ms,
        "e43_no_dearer_than_accepted": quarantined_ms <= accepted_ms,
        "ad1_max_delay_s": worst_ad1,
        "ad1_missing": missing_ad1,
        "every_ad1_within_5_s": worst_ad1 is not None and worst_ad1 <= AD1_TARGET_S and missing_ad1 == 0,
    }
    for phase in ("accepted_flood_beside_honest", "quarantined_flood_beside_honest"):
        kept = ratio(phases[phase]["honest"]["goodput_per_s"], baseline)
        checks[f"{phase}_goodput_ratio"] = kept
        checks[f"{phase}_goodput_kept"] = (kept or 0.0) >= GOODPUT_TARGET
    return {
        "phases": phases,
        "refused": _requests_by_outcome(metrics, ("verifier-queue-full", "originator-over-share")),
        "checks": checks,
    }


async def _both(first: Awaitable[T], second: Awaitable[U]) -> tuple[T, U]:
    one, two = await asyncio.gather(first, second)
    return one, two


async def with_backlog(
    gateway: Gateway, load: Awaitable[T], flood: Tally
) -> tuple[T, CpuWindow, float, list[list[float]]]:
    """``measured(load)`` while sampling the AD1 backlog every 0.5 s, through the load and until it is
    empty (or the drain timeout): [seconds, E43 answered, AD1 received, backlog], ``flood`` being the
    Tally the load's flooding client fills."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    seen_before = len(gateway.deliveries.ad1)
    samples: list[list[float]] = []
    done = asyncio.Event()

    async def sample() -> None:
        drained_from = None
        while True:
            e43 = flood.codes["E43"]
            ad1 = len(gateway.deliveries.ad1) - seen_before
            samples.append([round(loop.time() - started, 1), e43, ad1, e43 - ad1])
            if done.is_set():
                drained_from = drained_from or loop.time()
                if e43 - ad1 <= 0 or loop.time() - drained_from > DRAIN_TIMEOUT_S:
                    return
            await asyncio.sleep(SAMPLE_S)

    async def run() -> T:
        try:
            return await load
        finally:
            done.set()

    sampler = asyncio.create_task(sample())
    result, window, seconds = await measured(gateway, run())
    await sampler
    return result, window, seconds, samples


async def arrival_delays(answers: Tally, code: str, arrivals: dict[str, float]) -> dict[str, Any]:
    """For each answer ``code`` (E43, I99): how long until what follows it (its AD1 alert, its I0
    result) reached the receiver, waiting up to the drain timeout for the last ones."""
    loop = asyncio.get_running_loop()
    answered = {rid: at for rid, (at, answer) in answers.answered_at.items() if answer == code}
    deadline = loop.time() + DRAIN_TIMEOUT_S
    while any(rid not in arrivals for rid in answered) and loop.time() < deadline:
        await asyncio.sleep(SAMPLE_S)
    delays = sorted(arrivals[rid] - at for rid, at in answered.items() if rid in arrivals)
    return {
        "answered": len(answered),
        "arrived": len(delays),
        "missing": len(answered) - len(delays),
        "p50_s": round(percentile_ms(delays, 50) / 1000, 2),
        "p99_s": round(percentile_ms(delays, 99) / 1000, 2),
        "max_s": round(delays[-1], 2) if delays else None,
    }


def _requests_by_outcome(metrics: dict[str, float], outcomes: Sequence[str]) -> dict[str, float]:
    return {outcome: sum(v for k, v in metrics.items() if k.startswith("dcc_gateway_requests_total")
                         and f'outcome="{outcome}"' in k) for outcome in outcomes}


def _cuts(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    prefix = "dcc_gateway_connections_cut_total{"
    return {k[len(prefix):-1]: v - before.get(k, 0.0) for k, v in after.items() if k.startswith(prefix)}


# --- scenario: slow connections ---------------------------------------------------------------


@dataclass
class SlowResults:
    open_s: dict[str, list[float]] = field(default_factory=lambda: {"headers": [], "body": []})
    endings: Counter[str] = field(default_factory=Counter)


async def slow_client(kind: str, peer: str, port: int, deadline: float, results: SlowResults) -> None:
    """Connects, trickles one byte a second of headers (or of a body), records how it ended; again."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(random.uniform(0, 2))  # noqa: S311  (spread the connects)
    while loop.time() < deadline:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(peer, 0))
        except OSError:
            results.endings["connect-failed"] += 1
            await asyncio.sleep(1)
            continue
        opened = loop.time()
        if kind == "headers":
            start, drip = b"POST /api/v1/serviceS HTTP/1.1\r\nHost: gw\r\nX-Slow: ", b"a"
        else:
            start = (b"POST /api/v1/serviceS HTTP/1.1\r\nHost: gw\r\nContent-Type: application/xml\r\n"
                     b"Content-Length: 100000\r\n\r\n")
            drip = b"<"
        dripping = asyncio.create_task(_drip(writer, start, drip))
        try:
            answer = await asyncio.wait_for(reader.read(), timeout=max(1.0, deadline - loop.time()) + 30)
        except TimeoutError:
            answer = b"(still open)"
        except OSError:
            answer = b""
        lasted = loop.time() - opened
        dripping.cancel()
        writer.close()
        if answer.startswith(b"HTTP/1.1 503") or (not answer and lasted < REFUSED_WITHIN_S):
            # refused at once (a 503; or a reset, when the refusal crossed the bytes we sent)
            results.endings["refused-503" if answer else "refused-reset"] += 1
            await asyncio.sleep(1)
            continue
        ending = "408-and-closed" if answer.startswith(b"HTTP/1.1 408") else "closed" if not answer else "other"
        results.endings[f"{kind}:{ending}"] += 1
        results.open_s[kind].append(lasted)


async def _drip(writer: asyncio.StreamWriter, start: bytes, drip: bytes) -> None:
    with contextlib.suppress(OSError):
        writer.write(start)
        while True:
            await writer.drain()
            await asyncio.sleep(1)
            writer.write(drip)


async def probe_health(url: str, deadline: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    answered, failed, slowest = 0, 0, 0.0
    async with session_from(PROBE_PEER, 1) as session:
        while loop.time() < deadline:
            sent = loop.time()
            try:
                async with session.get(f"{url}/healthz", timeout=aiohttp.ClientTimeout(total=5)) as response:
                    await response.read()
                    ok = response.status == 200
            except (aiohttp.ClientError, TimeoutError, OSError):
                ok = False
            answered, failed = answered + ok, failed + (not ok)
            slowest = max(slowest, loop.time() - sent)
            await asyncio.sleep(0.25)
    return {"answered": answered, "failed": failed, "slowest_ms": round(slowest * 1000, 1)}


async def slow_scenario(args: argparse.Namespace, say: Say) -> dict[str, Any]:
    async with spawned(args, say) as gateway:
        signer = Signer(gateway.manifest, itertools.count(int(time.time() * 1000)))
        meters = smets1_meters(gateway.manifest, "solr-supplier")
        slow_seconds = max(args.seconds, 2.5 * max(gateway.ingress.header_timeout_seconds,
                                                   gateway.ingress.body_timeout_seconds))
        say("slow: honest alone ...")
        streams = signer.streams(HONEST, meters, args.honest_connections,
                                 int(args.honest_rate * slow_seconds / args.honest_connections) + 2)
        alone, window, seconds = await measured(gateway, paced(gateway.url, streams, args.honest_rate,
                                                               slow_seconds, HONEST_PEER))
        baseline = {"seconds": round(seconds, 2), **alone.summary(seconds),
                    "cpu": window.per_request(len(alone.latencies))}
        streams = signer.streams(HONEST, meters, args.honest_connections,
                                 int(args.honest_rate * slow_seconds / args.honest_connections) + 2)
        say(f"slow: {args.slow_connections} slow connections beside the honest user for {slow_seconds:.0f} s ...")
        before = await gateway.metrics()
        results = SlowResults()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + slow_seconds
        port = int(gateway.url.rsplit(":", 1)[1])
        clients = [
            asyncio.create_task(slow_client("headers" if n % 2 == 0 else "body",
                                            f"127.0.0.{SLOW_PEER_BASE + n % args.slow_peers}", port, deadline, results))
            for n in range(args.slow_connections)
        ]
        (beside, health), window, seconds = await measured(gateway, _both(
            paced(gateway.url, streams, args.honest_rate, slow_seconds, HONEST_PEER),
            probe_health(gateway.url, deadline)))
        for client in clients:
            client.cancel()
        await asyncio.gather(*clients, return_exceptions=True)
        after = await gateway.metrics()
        timeouts = {"headers": gateway.ingress.header_timeout_seconds, "body": gateway.ingress.body_timeout_seconds}
    stayed = {
        kind: {"cut": len(values), "configured_s": timeouts[kind],
               "p50_s": round(percentile_ms(sorted(values), 50) / 1000, 2),
               "max_s": round(max(values), 2) if values else None}
        for kind, values in results.open_s.items()
    }
    during = beside.summary(seconds)
    closed_at_timeout = all(
        v["cut"] > 0 and v["max_s"] is not None and timeouts[k] <= v["p50_s"] and v["max_s"] <= timeouts[k] + 2
        for k, v in stayed.items()
    )
    return {
        "honest_alone": baseline,
        "beside_slow": {"seconds": round(seconds, 2), "honest": during, "healthz": health,
                        "cpu": window.per_request(len(beside.latencies))},
        "slow_clients": {"connections": args.slow_connections, "peers": args.slow_peers,
                         "endings": dict(results.endings), "open_until_cut": stayed},
        "connections_cut": _cuts(before, after),
        "checks": {
            "honest_goodput_ratio": ratio(during["goodput_per_s"], baseline["goodput_per_s"]),
            "honest_goodput_kept": (ratio(during["goodput_per_s"], baseline["goodput_per_s"]) or 0) >= GOODPUT_TARGET,
            "healthz_always_answered": health["failed"] == 0,
            "closed_at_configured_timeout": closed_at_timeout,
        },
    }


# --- scenario: a dead receiver under load ----------------------------------------------------


class DeadPort:
    """The flooder's response_url's port: a receiver (alive), a server that never answers (silent),
    or nothing (refused)."""

    def __init__(self, port: int, deliveries: Deliveries) -> None:
        self.port = port
        self.deliveries = deliveries
        self.connections = 0
        self._runner: Any = None
        self._server: asyncio.AbstractServer | None = None
        self._held: list[asyncio.StreamWriter] = []

    async def alive(self) -> None:
        await self.stop()
        self._runner = await start_receiver(self.port, self.deliveries)

    async def silent(self) -> None:
        await self.stop()

        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            self._held.append(writer)

        self._server = await asyncio.start_server(hold, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._server is not None:
            self._server.close()
            for writer in self._held:
                writer.close()
            self._held.clear()
            await self._server.wait_closed()
            self._server = None


async def dead_scenario(args: argparse.Namespace, say: Say) -> dict[str, Any]:
    dead = DeadPort(free_port(), Deliveries())
    await dead.alive()
    try:
        async with spawned(args, say, dead_port=dead.port) as gateway:
            signer = Signer(gateway.manifest, itertools.count(int(time.time() * 1000)))
            honest_meters = smets1_meters(gateway.manifest, "solr-supplier")
            other_meters = smets1_meters(gateway.manifest, "failed-supplier")
            phases: dict[str, Any] = {}
            for phase, switch in (("receiver_alive", dead.alive), ("receiver_silent", dead.silent),
                                  ("receiver_refused", dead.stop)):
                await switch()
                attempts_before = dead.connections
                honest = signer.streams(HONEST, honest_meters, args.honest_connections,
                                        int(args.honest_rate * args.seconds / args.honest_connections) + 2)
                other = signer.streams(FLOODER, other_meters, args.honest_connections,
                                       int(args.dead_rate * args.seconds / args.honest_connections) + 2)
                say(f"dead: {phase.replace('_', ' ')} ...")
                (mine, theirs), window, seconds = await measured(gateway, _both(
                    paced(gateway.url, honest, args.honest_rate, args.seconds, HONEST_PEER),
                    paced(gateway.url, other, args.dead_rate, args.seconds, FLOOD_PEER)))
                phases[phase] = {
                    "seconds": round(seconds, 2),
                    "honest": mine.summary(seconds),
                    "dead_receiver_user": theirs.summary(seconds),
                    "cpu": window.per_request(len(mine.latencies) + len(theirs.latencies)),
                    "honest_results": await arrival_delays(mine, "I99", gateway.deliveries.results),
                    "attempts_at_silent_receiver": dead.connections - attempts_before,
                }
    finally:
        await dead.stop()
    baseline = phases["receiver_alive"]["honest"]["goodput_per_s"]
    checks: dict[str, Any] = {}
    for phase in ("receiver_silent", "receiver_refused"):
        kept = ratio(phases[phase]["honest"]["goodput_per_s"], baseline)
        checks[f"{phase}_honest_goodput_ratio"] = kept
        checks[f"{phase}_honest_goodput_kept"] = (kept or 0) >= GOODPUT_TARGET
        checks[f"{phase}_cpu_ms_ratio"] = ratio(phases[phase]["cpu"].get("gateway_cpu_ms", 0.0),
                                                 phases["receiver_alive"]["cpu"].get("gateway_cpu_ms", 0.0))
    return {"phases": phases, "checks": checks}


# --- report --------------------------------------------------------------------------------


def _cpu_line(figures: dict[str, float]) -> str:
    if not figures:
        return "n/a"
    return (f"gateway {figures['gateway_cpu_ms']} ms, load generator {figures['load_generator_cpu_ms']} ms, "
            f"machine {figures['machine_cpu_ms']} ms per request ({figures['machine_busy_percent']}% busy)")


def _honest_line(summary: dict[str, Any]) -> str:
    return (f"goodput {summary['goodput_per_s']}/s, p50 {summary['p50_ms']} ms, p99 {summary['p99_ms']} ms, "
            f"codes {summary['codes']}")


def report(result: dict[str, Any]) -> None:
    print(f"machine: {result['machine']}")
    flood = result["scenarios"].get("flood")
    if flood:
        p = flood["phases"]
        print("\n== flood: an ADT flood beside an honest user ==")
        for name in ("accepted", "quarantined"):
            phase = p[name]
            print(f"{name:<13} flood alone: {phase['answers']} answers in {phase['seconds']} s  {phase['codes']}")
            print(f"{'':<13} CPU: {_cpu_line(phase['cpu'])}")
            if name == "quarantined":
                print(f"{'':<13} AD1 (E43 answer -> alert received): {phase['ad1']}")
        print(f"honest alone  {_honest_line(p['honest_alone'])}")
        for name in ("accepted_flood_beside_honest", "quarantined_flood_beside_honest"):
            both = p[name]
            print(f"{name}:\n  honest: {_honest_line(both['honest'])}\n  flood:  {both['flood']['codes']}"
                  f"\n  CPU (all requests): {_cpu_line(both['cpu'])}")
            if both["ad1"]["answered"]:
                print(f"  AD1: {both['ad1']}")
        print(f"refused in all (from /metrics): {flood['refused']}")
        for phase in ("quarantined", "quarantined_flood_beside_honest"):
            series = p[phase]["ad1_backlog"]
            every = max(1, len(series) // 14)
            shown = ", ".join(f"{t:g}s:{backlog:g}" for t, _, _, backlog in series[::every])
            print(f"AD1 backlog ({phase}; E43 answered minus AD1 received, by second): {shown}")
        print(f"checks: {flood['checks']}")
    slow = result["scenarios"].get("slow")
    if slow:
        print("\n== slow: slow connections beside an honest user ==")
        print(f"honest alone  {_honest_line(slow['honest_alone'])}")
        beside = slow["beside_slow"]
        print(f"beside slow   {_honest_line(beside['honest'])}\n              /healthz: {beside['healthz']}"
              f"\n              CPU: {_cpu_line(beside['cpu'])}")
        print(f"slow clients  {slow['slow_clients']['endings']}")
        for kind, figures in slow["slow_clients"]["open_until_cut"].items():
            print(f"  {kind:>7}: {figures['cut']} cut; open p50 {figures['p50_s']} s, max {figures['max_s']} s "
                  f"(configured {figures['configured_s']} s)")
        print(f"connections cut (from /metrics): {slow['connections_cut']}")
        print(f"checks: {slow['checks']}")
    dead = result["scenarios"].get("dead")
    if dead:
        print("\n== dead: a dead receiver under load ==")
        for phase, figures in dead["phases"].items():
            print(f"{phase:<17} honest: {_honest_line(figures['honest'])}")
            print(f"{'':<17} other:  goodput {figures['dead_receiver_user']['goodput_per_s']}/s; "
                  f"attempts seen by the silent receiver {figures['attempts_at_silent_receiver']}")
            print(f"{'':<17} honest results (I0 after I99): {figures['honest_results']}")
            print(f"{'':<17} CPU: {_cpu_line(figures['cpu'])}")
        print(f"checks: {dead['checks']}")


SCENARIOS = {"flood": flood_scenario, "slow": slow_scenario, "dead": dead_scenario}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", default="flood,slow,dead", help="comma-separated: flood, slow, dead")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each load phase")
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--honest-rate", type=float, default=40.0,
                        help="the honest user's requests per second (well below what the gateway answers: "
                             "the flood scenario prints that capacity)")
    parser.add_argument("--honest-connections", type=int, default=16)
    parser.add_argument("--flood-connections", type=int, default=128,
                        help="the flood beside the honest user (128: the most one address may open)")
    parser.add_argument("--cost-connections", type=int, default=64,
                        help="the accepted and quarantined phases (within the flooder's share: "
                             "no 503 dilutes the cost)")
    parser.add_argument("--flood-requests", type=int, default=6000, help="requests signed per flood phase")
    parser.add_argument("--slow-connections", type=int, default=2000)
    parser.add_argument("--slow-peers", type=int, default=4, help="addresses the slow connections come from")
    parser.add_argument("--dead-rate", type=float, default=40.0, help="requests per second of the dead receiver's user")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    chosen = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 2,000 sockets here, the gateway inherits it

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    async def run() -> dict[str, Any]:
        return {name: await SCENARIOS[name](args, say) for name in chosen}

    load_before = os.getloadavg()
    scenarios = asyncio.run(run())
    result = {
        "machine": {"cores": os.cpu_count(), "loadavg_before": [round(x, 2) for x in load_before],
                    "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "scenarios": scenarios,
    }
    if args.json:
        print(json.dumps(result))
    else:
        report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
