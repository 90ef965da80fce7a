"""HTTP load against a gateway on loopback: requests/s, latency percentiles, counts by code.

    python bench/load.py --spawn [--seconds 10] [--connections 64] [--requests 20000] [--http-floor] [--json]
    python bench/load.py --spawn --store postgresql://postgres@127.0.0.1:5432/test --workers 2
    python bench/load.py --compare [--json]   (SQLite 1 worker, PostgreSQL 1 worker, PostgreSQL 2 workers)
    python bench/load.py --dir WORLD --url http://127.0.0.1:8079 ...   (a gateway you started)

--spawn creates a world in a temporary directory, starts ``dcc-gateway serve``
on a free loopback port, enables the SoLR Contingency role with signed
directives, and stops the gateway afterwards. Requests are signed before the
clock starts (the client's signing is not measured): a mix of valid supplier
requests, SoLR Contingency requests (SR 1.6 to Credit) and invalid ones
(tampered after signing -> 401). Each request has its own counter; with
many connections two requests to the same meter can overtake each other,
and the overtaken one then gets E40, as it would at the DCC. Bounded in time and in
count; refuses any address outside 127.0.0.0/8 and ::1. With a PostgreSQL
``--store``, each spawned run uses a fresh schema of that database
(``?schema=bench_…``), dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import ipaddress
import itertools
import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from bench import cpu  # noqa: E402
from bench._common import (  # noqa: E402
    configure_world,
    duis_outcome,
    enable_contingency,
    free_port,
    percentile_ms,
    start_receiver,
)
from gateway.manifest import Manifest, load_manifest  # noqa: E402
from gateway.signing import SigningKey, sign_tree, to_bytes  # noqa: E402
from tests import factories  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Prepared:
    kind: str
    path: str
    body: bytes
    signer: ec.EllipticCurvePublicKey | None = None
    """The public key of the request's signer (the crypto floor verifies with it)."""


def loopback_only(url: str) -> None:
    host = urllib.parse.urlparse(url).hostname or ""
    address = ipaddress.ip_address(socket.gethostbyname(host) if host != "::1" else host)
    if not address.is_loopback:
        raise SystemExit(f"bench/load.py only targets loopback addresses, not {host}")


def spawn_gateway(world: Path, port: int, store: str | None = None, workers: int = 1) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).with_name("dcc-gateway")
    command = [str(exe), "serve", str(world), "--port", str(port), "--workers", str(workers)]
    if store is not None:
        command += ["--store", store]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return wait_until_listening(process, port, "the gateway")


def wait_until_listening(process: subprocess.Popen[bytes], port: int, what: str) -> subprocess.Popen[bytes]:
    """``process`` once something accepts connections on loopback ``port`` (30 s at most; killed
    and the run stopped, naming ``what``, if not, or if it exits first)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"{what} did not start")


WORKLOADS = ("mixed", "cv4")
"""mixed: 60 % supplier, 30 % SoLR Contingency, 10 % tampered SR 1.6 to SMETS1 meters (CV1, serviceS);
cv4: SR 1.6 CV4 to SMETS2 ESMEs (serviceT), the SoLR's own and the failed supplier's through the SoLR
Contingency role, each answered I0 with a Pre-Command (verify, authorise, build the Pre-Command,
store it, sign the answer, audit)."""


def prepare(manifest: Manifest, count: int, seed: int, workload: str = "mixed") -> list[Prepared]:
    """Signed requests, before timing, of ``workload`` (see :data:`WORKLOADS`)."""
    if workload not in WORKLOADS:
        raise SystemExit(f"--workload is one of {', '.join(WORKLOADS)}, not {workload!r}")
    rng = random.Random(seed)
    keys = {name: SigningKey.load(manifest.actor(name).xml_sign.key, manifest.actor(name).xml_sign.cert)
            for name in ("solr_is", "srp_sc", "failed_supplier_is")}
    smets = 2 if workload == "cv4" else 1
    solr_mpids = set(manifest.actor("solr_is").mpids)
    solr_meters = [x for x in manifest.devices if x.supplier_mpid in solr_mpids and x.type == "ESME" and x.smets == smets]
    failed_meters = [x for x in manifest.devices if x.supplier_mpid == "FAIL" and x.smets == smets]
    if not solr_meters or not failed_meters:
        raise SystemExit(f"the world needs SMETS{smets} ESMEs of the SoLR and meters of the failed supplier (use more --devices)")
    counter = itertools.count(int(time.time() * 1000))
    prepared = []
    for _ in range(count):
        roll = rng.random()
        if roll < 0.6:
            kind, actor, meter = "supplier", "solr_is", rng.choice(solr_meters)
        else:
            kind, actor, meter = "solr-contingency", "srp_sc", rng.choice(failed_meters)
        variant = 4 if workload == "cv4" else 1
        tree = factories.request_tree(
            originator=manifest.actor(actor).user_id, target=meter.device_id, counter=next(counter),
            command_variant=variant,
        )
        body = to_bytes(sign_tree(tree, keys[actor]))
        if workload == "mixed" and roll >= 0.9:
            kind, body = "invalid", body.replace(b"<sr:Credit/>", b"<sr:Credit></sr:Credit> ")
        prepared.append(Prepared(kind, "serviceT" if variant == 4 else "serviceS", body, keys[actor].private_key.public_key()))
    return prepared


async def drive(
    url: str,
    requests: list[Prepared],
    connections: int,
    seconds: float,
    progress: bool,
    receiver_port: int | None,
    gateway_pid: int | None = None,
    workers: int = 1,
) -> dict[str, object]:
    """Sends the prepared requests; with ``receiver_port``, also plays the users' Receive Response Service.

    With ``gateway_pid`` (the spawned gateway, workers included), the result also says how
    much CPU each party used per request while the load ran (Linux). The stage breakdown is
    given for one worker only: each worker keeps its own timers, and a ``/metrics`` call reaches
    whichever worker the kernel picks (SO_REUSEPORT), so with several the two readings would not
    be of one process."""
    runner = await start_receiver(receiver_port) if receiver_port is not None else None
    try:
        stages_before = await stage_seconds(url) if workers == 1 else None
        before = cpu.snapshot(gateway_pid) if cpu.available() else None
        result = await _drive(url, requests, connections, seconds, progress)
        if before is not None:
            result["cpu"] = cpu.per_request(before, cpu.snapshot(gateway_pid), int(result["requests"]))  # type: ignore[call-overload]
        stages_after = await stage_seconds(url) if workers == 1 else None
        if stages_before and stages_after:
            result["stages_ms"] = stages_per_request(stages_before, stages_after, result)
        if any(item.signer is not None for item in requests):
            result["crypto_floor_ms"] = crypto_floor_ms(requests)
        if "cpu" in result and "crypto_floor_ms" in result:
            gateway_ms = result["cpu"]["gateway_cpu_ms"]  # type: ignore[index]
            result["gateway_over_crypto_floor"] = round(gateway_ms / result["crypto_floor_ms"]["total"], 1)  # type: ignore[index]
        return result
    finally:
        if runner is not None:
            await runner.cleanup()


_STAGE_LINE = re.compile(r'^dcc_gateway_stage_cpu_seconds_total\{stage="([a-z]+)"\} (\S+)$', re.MULTILINE)


async def stage_seconds(url: str) -> dict[str, float]:
    """The gateway's stage timers (``/metrics``): stage -> CPU seconds so far ({} when it has none)."""
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as response:
        text = await response.text()
    return {stage: float(value) for stage, value in _STAGE_LINE.findall(text)}


def stages_per_request(before: dict[str, float], after: dict[str, float], result: dict[str, object]) -> dict[str, float]:
    """CPU ms per request of each stage over the run, their sum, and what the process used beyond
    them (the event loop, task switches, aiohttp's request handling outside the socket: no stage's)."""
    requests = int(result["requests"])  # type: ignore[call-overload]
    if requests <= 0:
        return {}
    stages = {stage: round((after[stage] - before.get(stage, 0.0)) * 1000 / requests, 3) for stage in after}
    stages["sum"] = round(sum(stages.values()), 3)
    if "cpu" in result:
        stages["unattributed"] = round(result["cpu"]["gateway_cpu_ms"] - stages["sum"], 3)  # type: ignore[index]
    return stages


FLOOR_ROUNDS = 2000


def crypto_floor_ms(requests: list[Prepared]) -> dict[str, float]:
    """The bare cryptography of one request, measured here (CPU time, so other load does not blur it):
    ECDSA verify of a request's SignedInfo (as the gateway canonicalises it) with its signer's key,
    and ECDSA sign of a message of the size of an answer's SignedInfo with a P-256 key."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
    from lxml import etree

    from gateway.namespaces import DS

    sample = next(item for item in requests if item.kind != "invalid" and item.signer is not None)
    body, signer_key = sample.body, sample.signer
    root = etree.fromstring(body)
    signed_info = root.find(f"{{{DS}}}Signature/{{{DS}}}SignedInfo")
    canonical = etree.tostring(signed_info, method="c14n", exclusive=True, with_comments=False)
    raw = base64.b64decode(root.findtext(f"{{{DS}}}Signature/{{{DS}}}SignatureValue") or "")
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    key = ec.generate_private_key(ec.SECP256R1())
    algorithm = ec.ECDSA(hashes.SHA256())
    signer_key.verify(der, canonical, algorithm)  # the same bytes the gateway checks
    started = time.process_time()
    for _ in range(FLOOR_ROUNDS):
        signer_key.verify(der, canonical, algorithm)
    verify = (time.process_time() - started) / FLOOR_ROUNDS
    started = time.process_time()
    for _ in range(FLOOR_ROUNDS):
        key.sign(canonical, algorithm)
    sign = (time.process_time() - started) / FLOOR_ROUNDS
    return {"verify": round(verify * 1000, 4), "sign": round(sign * 1000, 4), "total": round((verify + sign) * 1000, 4)}


async def _drive(url: str, requests: list[Prepared], connections: int, seconds: float, progress: bool) -> dict[str, object]:
    latencies: list[float] = []
    answer_bytes: list[int] = []
    codes: Counter[str] = Counter()
    queue = iter(requests)
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def worker() -> None:
            for item in queue:
                if time.perf_counter() >= deadline:
                    return
                started = time.perf_counter()
                async with session.post(
                    f"{url}/api/v1/{item.path}", data=item.body, headers={"Content-Type": "application/xml"}
                ) as response:
                    body = await response.read()
                latencies.append(time.perf_counter() - started)
                answer_bytes.append(len(body))
                codes[duis_outcome(response.status, body)] += 1

        async def report() -> None:
            while True:
                await asyncio.sleep(1)
                print(f"\r{len(latencies):>8} requests, {dict(codes)}", end="", file=sys.stderr, flush=True)

        reporter = asyncio.create_task(report()) if progress else None
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - started
        if reporter:
            reporter.cancel()
            print(file=sys.stderr)
    latencies.sort()
    return {
        "requests": len(latencies),
        "seconds": round(elapsed, 3),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": percentile_ms(latencies, 50),
        "p95_ms": percentile_ms(latencies, 95),
        "p99_ms": percentile_ms(latencies, 99),
        "connections": connections,
        "codes": dict(codes),
        "answer_bytes_mean": round(sum(answer_bytes) / len(answer_bytes)) if answer_bytes else 0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spawn", action="store_true", help="create a world and start a gateway for the run")
    parser.add_argument("--compare", action="store_true",
                        help="three spawned runs: SQLite 1 worker, PostgreSQL 1 worker, PostgreSQL 2 workers")
    parser.add_argument("--store", default=None, help="with --spawn: the gateway's store URL (default: SQLite in the world)")
    parser.add_argument("--workers", type=int, default=1, help="with --spawn: gateway worker processes (PostgreSQL)")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help=f"with --compare: the database (default {DEFAULT_POSTGRES})")
    parser.add_argument("--dir", type=Path, help="world directory of a running gateway (for its keys)")
    parser.add_argument("--url", default=None, help="gateway URL (default: the world's)")
    parser.add_argument("--devices", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--requests", type=int, default=20_000, help="upper bound on requests sent")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workload", choices=WORKLOADS, default="mixed",
                        help="mixed (SR 1.6 CV1: valid, SoLR, tampered) or cv4 (SR 1.6 CV4 to SMETS2: Pre-Commands)")
    parser.add_argument("--http-floor", action="store_true",
                        help="with --spawn: also time a bare aiohttp server answering the same requests (the HTTP floor)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.compare:
        return compare(args)
    if args.spawn:
        result = spawned_run(args, args.store, args.workers)
    elif args.dir is None:
        raise SystemExit("give --spawn, --compare, or --dir WORLD of a running gateway")
    else:
        manifest = load_manifest(args.dir)
        url = (args.url or manifest.gateway.url).rstrip("/")
        loopback_only(url)
        prepared = prepare(manifest, args.requests, args.seed, args.workload)
        result = asyncio.run(drive(url, prepared, args.connections, args.seconds, progress=not args.json, receiver_port=None))
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>16}: {value}")
    return 0


DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


def spawned_run(args: argparse.Namespace, store: str | None, workers: int) -> dict[str, object]:
    """A fresh world (and, for PostgreSQL, a fresh schema), a gateway started for it, one load run."""
    schema = None
    if store is not None and store.startswith(("postgresql://", "postgres://")):
        schema = f"bench_{os.getpid()}_{time.monotonic_ns()}"
        store = f"{store}{'&' if '?' in store else '?'}schema={schema}"
    with tempfile.TemporaryDirectory() as scratch:
        world = Path(scratch) / "world"
        subprocess.run([str(Path(sys.executable).with_name("dcc-gateway")), "init", str(world),
                        "--devices", str(args.devices)], check=True, stdout=subprocess.DEVNULL)
        receiver_port = free_port()
        configure_world(world, receiver_port)
        port = free_port()
        process = spawn_gateway(world, port, store, workers)
        try:
            url = f"http://127.0.0.1:{port}"
            manifest = load_manifest(world)
            enable_contingency(manifest, url)
            prepared = prepare(manifest, args.requests, args.seed, args.workload)
            result = asyncio.run(
                drive(
                    url,
                    prepared,
                    args.connections,
                    args.seconds,
                    progress=not args.json,
                    receiver_port=receiver_port,
                    gateway_pid=process.pid,
                    workers=workers,
                )
            )
        finally:
            process.terminate()
            process.wait(timeout=60)
            if schema is not None and store is not None:
                asyncio.run(_drop_schema(store.split("?", 1)[0], schema))
    if args.http_floor and cpu.available():
        result["http_floor_ms"] = http_floor_ms(prepared, args, int(result["answer_bytes_mean"]))  # type: ignore[call-overload]
    return {"store": "postgresql" if schema else "sqlite", "workers": workers, **result}


def http_floor_ms(prepared: list[Prepared], args: argparse.Namespace, answer_bytes: int) -> float:
    """CPU ms per request of a bare aiohttp server (bench/_http_floor.py) answering the same requests
    over as many connections with a body of the gateway's mean answer size: its HTTP server's share."""
    port = free_port()
    server = subprocess.Popen([sys.executable, str(ROOT / "bench" / "_http_floor.py"), str(port), str(answer_bytes)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_listening(server, port, "the HTTP floor server")
        before = cpu.snapshot(server.pid)
        floor = asyncio.run(_drive(f"http://127.0.0.1:{port}", prepared, args.connections, args.seconds, progress=False))
        used = cpu.per_request(before, cpu.snapshot(server.pid), int(floor["requests"]))  # type: ignore[call-overload]
        return float(used["gateway_cpu_ms"])
    finally:
        server.terminate()
        server.wait(timeout=30)


async def _drop_schema(url: str, schema: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await connection.close()


def compare(args: argparse.Namespace) -> int:
    """SQLite with one worker, PostgreSQL with one and with two, one after the other, same load."""
    runs = [
        spawned_run(args, None, 1),
        spawned_run(args, args.postgres, 1),
        spawned_run(args, args.postgres, 2),
    ]
    pg_one, pg_two = runs[1]["requests_per_s"], runs[2]["requests_per_s"]
    scaling = round(float(pg_two) / float(pg_one), 2) if pg_one else None  # type: ignore[arg-type]
    if args.json:
        print(json.dumps({"runs": runs, "postgresql_two_over_one": scaling}))
        return 0
    print(f"{'store':>11} {'workers':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}  codes")
    for run in runs:
        print(f"{run['store']:>11} {run['workers']:>7} {run['requests_per_s']:>8} {run['p50_ms']:>8} {run['p99_ms']:>8}  {run['codes']}")
    print(f"PostgreSQL, two workers over one: {scaling}x")
    if all("cpu" in run for run in runs):
        print()
        print("CPU ms per request (all cores; the machine's busy share over the run):")
        print(f"{'store':>11} {'workers':>7} {'gateway':>8} {'database':>9} {'load gen':>9} {'machine':>8} {'busy':>6}")
        for run in runs:
            used = run["cpu"]
            print(
                f"{run['store']:>11} {run['workers']:>7} {used['gateway_cpu_ms']:>8} {used['database_cpu_ms']:>9} "  # type: ignore[index]
                f"{used['load_generator_cpu_ms']:>9} {used['machine_cpu_ms']:>8} {used['machine_busy_percent']:>5}%"  # type: ignore[index]
            )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
