"""Per-request cost and memory of the gateway against the size of its fleet (issue #5 item 5).

    python bench/scale.py [--devices 1000,100000,1000000] [--quick] [--requests 3000] [--json]

For each fleet size N: ``dcc-gateway init DIR --devices N`` in a temporary
directory, then ``dcc-gateway serve`` as a process on the default SQLite store,
with the ADT default thresholds lifted and every user's response_url pointed at
a local receiver (as ``bench/load.py --spawn`` does). Measured, per N:

* start-up: from spawning the process until ``GET /healthz`` answers, and the
  process's resident memory (VmRSS) then and after the load;
* per request: signed, valid SR 1.6 requests (SoLR supplier requests to its
  own meters, SoLR Contingency requests to the failed supplier's, 60/40 as in
  load.py) over a few connections, to ``--meters`` meters of each kind drawn
  from the whole fleet (indices uniform over 0..N-1, not the first few), so
  registry and meter lookups are exercised where a large fleet keeps them.
  After a short warm-up on a few meters of its own, each chosen meter gets one
  first request (which creates its stored meter state and replay counter: CPU
  reported separately), then the measured load cycles over them. Reported:
  requests/s, mean/p50/p99 latency, and the gateway process's CPU-seconds
  (utime+stime, /proc/PID/stat) per request, from before a phase until the
  gateway is idle again (so the command executions and deliveries each request
  queues are counted). CPU per request is the robust figure on a shared
  machine; wall-clock ones move with the neighbours. The same number of meters
  at every N keeps the workload the same; only the fleet around it grows.

Requests are signed before the clock starts; meters are drawn with
:func:`gateway.world.make_device` (random access by index), so the bench never
loads a million-device manifest itself. Requests to one meter are spaced far
apart in the sending order, so with few connections none overtakes another
(no E40 from the bench itself). Linux only (/proc); loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp  # noqa: E402

from bench._common import (  # noqa: E402
    configure_world,
    create_world,
    duis_outcome,
    enable_contingency,
    free_port,
    idle_rate,
    measured_cpu,
    percentile_ms,
    rss_mb,
    settle,
    spawn_gateway,
    start_receiver,
)
from gateway import duis_request  # noqa: E402
from gateway.eui64 import Eui64  # noqa: E402
from gateway.manifest import Device, Manifest  # noqa: E402
from gateway.signing import SigningKey, sign_tree, to_bytes  # noqa: E402
from gateway.world import DEFAULT_SEED, make_device  # noqa: E402

DEFAULT_FLEETS = (1_000, 100_000, 1_000_000)
QUICK_FLEETS = (1_000, 100_000)


@dataclass(frozen=True, slots=True)
class Run:
    devices: int
    init_s: float
    startup_s: float
    rss_mb_start: float
    rss_mb_end: float
    requests: int
    requests_per_s: float
    mean_ms: float
    p50_ms: float
    p99_ms: float
    cpu_ms_per_request: float
    """The measured load: requests to meters that have been sent a request before."""
    meters: int
    """Distinct meters the measured load goes to (drawn from the whole fleet)."""
    cpu_ms_first_request: float
    """The first request to each of those meters (its meter state and replay counter are created)."""
    idle_cpu_ms_per_s: float
    """The gateway's CPU with no requests (meter run-down, polling): a background cost, not per request."""
    round_cpu_ms: list[float]
    """CPU ms per request in each interleaved round."""
    codes: dict[str, int]
    """DUIS response codes (or HTTP statuses) of the first-request phase and the measured load."""


@dataclass(frozen=True, slots=True)
class Prepared:
    meter: Eui64
    body: bytes


# --- the world -------------------------------------------------------------------------


def draw_meters(
    world_seed: str, devices: int, wanted: int, accept: Callable[[Device], bool], rng: random.Random
) -> list[Device]:
    """Up to ``wanted`` distinct meters passing ``accept``, drawn uniformly from the whole fleet.

    Devices are re-derived from the world's seed by index (as ``init`` made them).
    """
    if devices <= 4 * wanted:  # a small fleet: take every eligible meter
        eligible = [device for index in range(devices) if accept(device := make_device(world_seed, index))]
        rng.shuffle(eligible)
        return eligible[:wanted]
    chosen: dict[int, Device] = {}
    attempts = 0
    while len(chosen) < wanted and attempts < 200 * wanted:
        attempts += 1
        index = rng.randrange(devices)
        if index not in chosen:
            device = make_device(world_seed, index)
            if accept(device):
                chosen[index] = device
    return list(chosen.values())


SUPPLIER, CONTINGENCY = "solr_is", "srp_sc"
"""The two senders: the SoLR's IS user (its own meters) and the SRP's SoLR Contingency user (the failed supplier's)."""
SUPPLIER_SHARE = 0.6
WARMUP_METERS = 8
"""Meters of each kind reserved for the warm-up, so the measured meters are untouched when the first-request phase starts."""


@dataclass(frozen=True, slots=True)
class Phases:
    """Signed requests in sending order: warm-up, one first request per meter, then the measured load."""

    warmup: list[Prepared]
    first: list[Prepared]
    measured: list[Prepared]
    meters: int


def mixed(rng: random.Random, supplier: Sequence[Device], contingency: Sequence[Device]) -> list[tuple[str, Device]]:
    """Both kinds' meters, shuffled together, each kind in its own order (so a meter's repeats stay far apart)."""
    kinds = [SUPPLIER] * len(supplier) + [CONTINGENCY] * len(contingency)
    rng.shuffle(kinds)
    queues = {SUPPLIER: iter(supplier), CONTINGENCY: iter(contingency)}
    return [(kind, next(queues[kind])) for kind in kinds]


def cycled(meters: Sequence[Device], count: int) -> list[Device]:
    """``count`` meters cycling through ``meters``: repeats of one meter are ``len(meters)`` apart."""
    return list(itertools.islice(itertools.cycle(meters), count))


def prepare(manifest: Manifest, devices: int, requests: int, warmup: int, meters: int, seed: int) -> Phases:
    """The signed SR 1.6 requests of the three phases (60 % SoLR supplier, 40 % SoLR Contingency).

    ``meters`` distinct meters of each kind (fewer if the fleet lacks them) take
    the first-request phase and the measured load; the warm-up has its own few.
    """
    rng = random.Random(seed)
    world_seed = manifest.seed or DEFAULT_SEED
    solr_mpids = set(manifest.actor(SUPPLIER).mpids)
    failed_mpids = set(manifest.actor("failed_supplier_is").mpids)
    # SMETS1 ESMEs: SR 1.6 to them needs no GBCS Pre-Command, so every one is a plain valid request.
    supplier_pool = draw_meters(world_seed, devices, WARMUP_METERS + meters, lambda x: x.supplier_mpid in solr_mpids
                                and x.type == "ESME" and x.smets == 1, rng)
    contingency_pool = draw_meters(world_seed, devices, WARMUP_METERS + meters, lambda x: x.supplier_mpid in failed_mpids
                                   and x.type == "ESME" and x.smets == 1, rng)
    if min(len(supplier_pool), len(contingency_pool)) < 2 * WARMUP_METERS:
        raise SystemExit(f"a fleet of {devices} has too few SMETS1 ESMEs of the SoLR and the failed supplier")
    warm_supplier, supplier = supplier_pool[:WARMUP_METERS], supplier_pool[WARMUP_METERS:]
    warm_contingency, contingency = contingency_pool[:WARMUP_METERS], contingency_pool[WARMUP_METERS:]
    supplier_count = round(requests * SUPPLIER_SHARE)
    warm_count = round(warmup * SUPPLIER_SHARE)
    plans = (
        mixed(rng, cycled(warm_supplier, warm_count), cycled(warm_contingency, warmup - warm_count)),
        mixed(rng, supplier, contingency),
        mixed(rng, cycled(supplier, supplier_count), cycled(contingency, requests - supplier_count)),
    )
    keys = {name: SigningKey.load(manifest.actor(name).xml_sign.key, manifest.actor(name).xml_sign.cert)
            for name in (SUPPLIER, CONTINGENCY)}
    counter = itertools.count(int(time.time() * 1_000_000))  # in sending order: each meter's counters rise

    def signed(actor: str, meter: Device) -> Prepared:
        tree = duis_request.request_tree(
            originator=manifest.actor(actor).user_id, target=meter.device_id, counter=next(counter),
            command_variant=1, service_reference_variant="1.6", body=duis_request.payment_mode_element("Credit"),
        )
        return Prepared(meter.device_id, to_bytes(sign_tree(tree, keys[actor])))

    warm, first, measured = ([signed(actor, meter) for actor, meter in plan] for plan in plans)
    return Phases(warm, first, measured, len(supplier) + len(contingency))


# --- the gateway process ---------------------------------------------------------------


# --- load ------------------------------------------------------------------------------


async def send_all(url: str, requests: Sequence[Prepared], connections: int) -> tuple[list[float], Counter[str], float]:
    """Sends ``requests`` in order over ``connections`` connections; latencies (s), DUIS codes, elapsed seconds."""
    latencies: list[float] = []
    codes: Counter[str] = Counter()
    queue = iter(requests)
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:

        async def worker() -> None:
            for item in queue:
                started = time.perf_counter()
                async with session.post(f"{url}/api/v1/serviceS", data=item.body,
                                        headers={"Content-Type": "application/xml"}) as response:
                    body = await response.read()
                latencies.append(time.perf_counter() - started)
                codes[duis_outcome(response.status, body)] += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        return latencies, codes, time.perf_counter() - started


@dataclass
class Gateway:
    """A world and its running gateway, with what was measured before the load."""

    devices: int
    init_s: float
    startup_s: float
    rss_mb_start: float
    process: subprocess.Popen[bytes]
    url: str
    phases: Phases


@dataclass
class Tally:
    """What one gateway's load measured, summed over the rounds."""

    latencies: list[float] = field(default_factory=list)
    codes: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0
    cpu_s: float = 0.0
    first_cpu_s: float = 0.0
    idle_share: float = 0.0
    round_cpu_ms: list[float] = field(default_factory=list)
    """CPU ms per request in each round (for the spread of the ratio)."""


@contextlib.contextmanager
def started_gateway(devices: int, receiver_port: int, args: argparse.Namespace, say: Callable[[str], None]) -> Iterator[Gateway]:
    """Creates the world and starts its gateway; stops it and removes the world afterwards."""
    with tempfile.TemporaryDirectory(prefix="dcc-scale-") as scratch:
        world = Path(scratch) / "world"
        say(f"{devices} devices: init ...")
        init_s = create_world(world, devices)
        manifest = configure_world(world, receiver_port)
        say(f"{devices} devices: init {init_s:.1f} s; signing requests ...")
        phases = prepare(manifest, devices, args.requests, args.warmup, args.meters, args.seed)
        port = free_port()
        process, startup_s = spawn_gateway(world, port, Path(scratch) / "gateway.log")
        try:
            url = f"http://127.0.0.1:{port}"
            gateway = Gateway(devices, init_s, startup_s, rss_mb(process.pid), process, url, phases)
            say(f"{devices} devices: started in {startup_s:.1f} s, {gateway.rss_mb_start:.0f} MB")
            enable_contingency(manifest, url)
            yield gateway
        finally:
            process.terminate()
            process.wait(timeout=60)


async def measure(gateways: Sequence[Gateway], receiver_port: int, connections: int, rounds: int) -> list[Tally]:
    """Warm-up, idle baseline, first requests to the meters, then the measured load in interleaved rounds.

    Each round sends a slice of every gateway's load, one gateway after the
    other (in a rotating order), so a neighbour's burst on the shared machine
    falls on all fleet sizes alike instead of on whichever ran then. A phase's
    CPU runs until the gateway is idle again, so it includes the command
    executions and deliveries its requests queued.
    """
    tallies = [Tally() for _ in gateways]
    receiver = await start_receiver(receiver_port)
    try:
        for gateway in gateways:
            await send_all(gateway.url, gateway.phases.warmup, connections)
            await settle(gateway.process.pid)
        for gateway, tally in zip(gateways, tallies):
            tally.idle_share = await idle_rate(gateway.process.pid, 2.0)
        for gateway, tally in zip(gateways, tallies):
            (_, codes, _), tally.first_cpu_s = await measured_cpu(
                gateway.process.pid, send_all(gateway.url, gateway.phases.first, connections))
            tally.codes += codes
        for number in range(rounds):
            for offset in range(len(gateways)):
                index = (number + offset) % len(gateways)
                gateway, tally = gateways[index], tallies[index]
                requests = gateway.phases.measured
                chunk = requests[number * len(requests) // rounds : (number + 1) * len(requests) // rounds]
                (latencies, codes, elapsed), cpu_s = await measured_cpu(
                    gateway.process.pid, send_all(gateway.url, chunk, connections))
                tally.latencies += latencies
                tally.codes += codes
                tally.elapsed_s += elapsed
                tally.cpu_s += cpu_s
                tally.round_cpu_ms.append(cpu_s * 1000 / len(chunk))
    finally:
        await receiver.cleanup()
    return tallies


def summarise(gateway: Gateway, tally: Tally, rss_end: float) -> Run:
    sent = len(gateway.phases.first) + len(gateway.phases.measured)
    if tally.codes.get("I99", 0) != sent:
        print(f"warning: {gateway.devices} devices: not every request was accepted: {dict(tally.codes)}",
              file=sys.stderr)
    latencies = sorted(tally.latencies)
    return Run(
        devices=gateway.devices,
        init_s=round(gateway.init_s, 2),
        startup_s=round(gateway.startup_s, 2),
        rss_mb_start=round(gateway.rss_mb_start, 1),
        rss_mb_end=round(rss_end, 1),
        requests=len(latencies),
        requests_per_s=round(len(latencies) / tally.elapsed_s, 1),
        mean_ms=round(statistics.fmean(latencies) * 1000, 2),
        p50_ms=percentile_ms(latencies, 50),
        p99_ms=percentile_ms(latencies, 99),
        cpu_ms_per_request=round(tally.cpu_s * 1000 / len(latencies), 3),
        meters=gateway.phases.meters,
        cpu_ms_first_request=round(tally.first_cpu_s * 1000 / len(gateway.phases.first), 3),
        idle_cpu_ms_per_s=round(tally.idle_share * 1000, 1),
        round_cpu_ms=[round(value, 2) for value in tally.round_cpu_ms],
        codes=dict(tally.codes),
    )


# --- output ----------------------------------------------------------------------------

COLUMNS = (
    ("devices", "devices", "{:>9}"),
    ("init_s", "init s", "{:>7.1f}"),
    ("startup_s", "start s", "{:>7.1f}"),
    ("rss_mb_start", "RSS MB", "{:>7.0f}"),
    ("rss_mb_end", "RSS end", "{:>7.0f}"),
    ("requests", "reqs", "{:>5}"),
    ("meters", "meters", "{:>6}"),
    ("requests_per_s", "req/s", "{:>6.0f}"),
    ("mean_ms", "mean ms", "{:>7.1f}"),
    ("p50_ms", "p50 ms", "{:>6.1f}"),
    ("p99_ms", "p99 ms", "{:>6.1f}"),
    ("cpu_ms_per_request", "CPU ms/req", "{:>10.2f}"),
    ("cpu_ms_first_request", "CPU ms/first", "{:>12.2f}"),
    ("idle_cpu_ms_per_s", "idle CPU ms/s", "{:>13.1f}"),
)


def table(runs: Sequence[Run]) -> str:
    widths = [len(fmt.format(0)) for _, _, fmt in COLUMNS]
    lines = ["  ".join(f"{title:>{width}}" for (_, title, _), width in zip(COLUMNS, widths))]
    for run in runs:
        values = asdict(run)
        lines.append("  ".join(fmt.format(values[key]) for key, _, fmt in COLUMNS))
    return "\n".join(lines)


def cpu_ratio(runs: Sequence[Run]) -> float | None:
    if len(runs) < 2:
        return None
    smallest, largest = min(runs, key=lambda r: r.devices), max(runs, key=lambda r: r.devices)
    return round(largest.cpu_ms_per_request / smallest.cpu_ms_per_request, 3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", default=None,
                        help="comma-separated fleet sizes (default 1000,100000,1000000)")
    parser.add_argument("--quick", action="store_true", help="1k and 100k only")
    parser.add_argument("--requests", type=int, default=2000, help="measured requests per fleet size")
    parser.add_argument("--rounds", type=int, default=8, help="interleaved rounds the measured requests are split into")
    parser.add_argument("--warmup", type=int, default=100, help="requests before measuring, to a few meters of their own")
    parser.add_argument("--meters", type=int, default=500,
                        help="distinct meters of each kind (SoLR's, failed supplier's) for the measured load (default 500; "
                             "a 1k fleet has about 90)")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1, help="seed for drawing meters")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.devices:
        fleets = tuple(int(value.replace("_", "")) for value in args.devices.split(","))
    else:
        fleets = QUICK_FLEETS if args.quick else DEFAULT_FLEETS

    def say(message: str) -> None:
        if not args.json:
            print(message, file=sys.stderr, flush=True)

    receiver_port = free_port()  # one receiver for every world's users
    with contextlib.ExitStack() as stack:
        gateways = [stack.enter_context(started_gateway(n, receiver_port, args, say)) for n in fleets]
        say(f"load: {args.rounds} interleaved rounds ...")
        tallies = asyncio.run(measure(gateways, receiver_port, args.connections, args.rounds))
        runs = [summarise(gateway, tally, rss_mb(gateway.process.pid)) for gateway, tally in zip(gateways, tallies)]
    ratio = cpu_ratio(runs)
    if args.json:
        print(json.dumps({"runs": [asdict(run) for run in runs], "cpu_ratio_largest_to_smallest": ratio}))
    else:
        print(table(runs))
        if ratio is not None:
            smallest, largest = min(runs, key=lambda r: r.devices), max(runs, key=lambda r: r.devices)
            per_round = sorted(b / a for a, b in zip(smallest.round_cpu_ms, largest.round_cpu_ms))
            print(f"CPU per request, largest fleet / smallest: {ratio:.3f} "
                  f"(per round: {per_round[0]:.2f} .. {per_round[-1]:.2f}, median {statistics.median(per_round):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
