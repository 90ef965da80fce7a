"""How far N gateway workers on one PostgreSQL store can scale out (issue #14 item 3).

    python bench/scale_out.py [--workers 1,2,4] [--seconds 5] [--clients 32] [--json]
                              [--postgres postgresql://postgres@127.0.0.1:5432/test]

For each N, in a fresh schema: N worker processes, each with its own
:class:`~gateway.store.postgresql.PostgresStore` (as ``serve --workers N`` has), make the
store's part of the CV4 workload, SR 1.6 with an ADT threshold through the SoLR Contingency
role: per request, ``admit`` (registry version, replay counter, ADT window, audit record) and
``remember_precommand`` (the Pre-Command and its audit record), for ``--clients`` users per
worker at once, each to devices of its own. One directive a second (``--directives``) goes in
among them, from the first worker, since directives take the one lock every decision shares.

Measured: requests/s of the whole deployment (store decisions only: verify, policy and signing
are each worker's own CPU, and add cores, not serial time), and the *serial* part: time any
worker spent waiting for or holding a lock every worker takes exclusively (a directive's hold of
the registry lock, an anchor's hold of the anchor chain's; :attr:`PostgresStore.serial_seconds`),
per request. No number of cores runs that part side by side, so 1 / serial is the deployment's
ceiling; on this machine (2 cores shared with the database) req/s says little, the ceiling is
the honest figure. What it does not count: PostgreSQL's own shared work (WAL flush at commit,
which the server groups across sessions, and the lock manager's partitions).

After each run the workers also send the same request (one RequestID) at once through every
worker, 50 times: each must be accepted exactly once (``exactly_once`` in the output).
``--json`` prints ``{"runs": [{"workers", "req_per_s", "serial_ms_per_request",
"ceiling_per_s", ...}]}``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import multiprocessing
import secrets
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg  # noqa: E402

from gateway.eui64 import Eui64  # noqa: E402
from gateway.store.base import Admission, AdmissionRequest, AuditEntry, DirectiveRecord  # noqa: E402
from gateway.store.postgresql import PostgresLocation, PostgresStore  # noqa: E402

DEFAULT_POSTGRES: Final = "postgresql://postgres@127.0.0.1:5432/test"
T0: Final = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
DUPLICATE_ROUNDS: Final = 50
STARTUP_TIMEOUT_SECONDS: Final = 600.0
"""How long the workers may take to open the store and warm up before the run is given up."""
ADT_THRESHOLD: Final = 10_000_000
"""High enough that the bench itself is never quarantined (the window is still counted)."""


@dataclass(frozen=True, slots=True)
class WorkerReport:
    requests: int
    seconds: float
    serial_seconds: float
    serial_sections: int
    directives: int
    accepted_copies: list[int]
    """Per duplicate round: how many of this worker's copies were ACCEPTED."""


@dataclass(frozen=True, slots=True)
class Run:
    workers: int
    req_per_s: float
    serial_ms_per_request: float
    ceiling_per_s: float
    requests: int
    serial_sections: int
    directives: int
    exactly_once: bool


def _eui(value: int) -> Eui64:
    return Eui64(value)


def _admission(user: Eui64, device: Eui64, counter: int, at: dt.datetime) -> AdmissionRequest:
    request_id = f"{user}:{device}:{counter}"
    return AdmissionRequest(
        originator=user,
        target=device,
        counter=counter,
        request_id=request_id,
        user_id=user,
        service_reference_variant="1.6",
        at=at,
        adt_window_seconds=3600,
        adt_threshold=ADT_THRESHOLD,
        raw_request=b"<sr:Request>" + request_id.encode() + b"</sr:Request>",
        audit=AuditEntry(at, "request", str(user), request_id, "", "passed static checks", {"srv": "1.6", "cv": 4}),
    )


async def _one_request(store: PostgresStore, user: Eui64, device: Eui64, counter: int) -> None:
    """What a CV4 request writes: the admission, then its Pre-Command."""
    at = T0 + dt.timedelta(microseconds=counter)
    result = await store.admit(_admission(user, device, counter, at))
    if result.admission is not Admission.ACCEPTED:
        raise RuntimeError(f"the bench's own request was {result.admission}")
    request_id = f"{user}:{device}:{counter}"
    audit = AuditEntry(at, "request", str(user), request_id, "I0", "Pre-Command issued", {"apdu": "00"})
    await store.remember_precommand(request_id, user, device, b"\x00" * 64, at, at + dt.timedelta(hours=1), audit)


async def _work(url: str, index: int, clients: int, seconds: float, start: Any, duplicate: Any,
                directives: bool) -> WorkerReport:
    store = PostgresStore(url)
    await store.open()
    try:
        base = (index + 1) << 32
        users = [_eui(base + client) for client in range(clients)]
        counters = dict.fromkeys(range(clients), 0)
        for client in range(clients):  # warm-up: connections, plans, each user's counter row
            counters[client] += 1
            await _one_request(store, users[client], _eui(base + 0xFFFF), counters[client])
        await asyncio.get_running_loop().run_in_executor(None, start.wait)
        serial0, sections0 = store.serial_seconds, store.serial_sections
        begun = time.perf_counter()
        deadline = begun + seconds
        done = 0

        async def client_loop(client: int) -> None:
            nonlocal done
            device = 0
            while time.perf_counter() < deadline:
                counters[client] += 1
                device = (device + 1) % 64
                await _one_request(store, users[client], _eui(base + 0x10000 + client * 64 + device), counters[client])
                done += 1

        async def directive_loop() -> int:
            count = 0
            while time.perf_counter() < deadline:
                await asyncio.sleep(1.0)
                record = DirectiveRecord(0, f"bench-{secrets.token_hex(8)}", "authority", "revoke-licence",
                                         {"party": "nobody"}, T0, False, "bench: refused, so nothing changes")
                await store.append_directive(record, AuditEntry(T0, "directive", "authority", record.directive_id,
                                                                "refused", record.reason, {}))
                count += 1
            return count

        tasks = [asyncio.create_task(client_loop(client)) for client in range(clients)]
        directive_task = asyncio.create_task(directive_loop()) if directives else None
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - begun
        serial, sections = store.serial_seconds - serial0, store.serial_sections - sections0
        sent_directives = await directive_task if directive_task is not None else 0
        accepted = []
        for round_number in range(DUPLICATE_ROUNDS):  # the same request through every worker at once
            await asyncio.get_running_loop().run_in_executor(None, duplicate.wait)
            copy = _admission(_eui(0xD0D0_0000 + round_number), _eui(0xDEAD), 1, T0)
            copies = await asyncio.gather(*(store.admit(copy) for _ in range(4)))
            accepted.append(sum(result.admission is Admission.ACCEPTED for result in copies))
        return WorkerReport(done, elapsed, serial, sections, sent_directives, accepted)
    finally:
        await store.close()


def _worker(url: str, index: int, clients: int, seconds: float, start: Any, duplicate: Any, directives: bool,
            results: Any) -> None:
    try:
        report = asyncio.run(_work(url, index, clients, seconds, start, duplicate, directives))
        results.put((index, asdict(report)))
    except BaseException as exc:  # the parent reports it rather than waiting for ever
        start.abort()  # a parent or sibling still waiting at a barrier gets BrokenBarrierError
        duplicate.abort()
        results.put((index, repr(exc)))
        raise


async def _drop_schema(server_url: str, schema: str) -> None:
    connection = await asyncpg.connect(PostgresLocation.parse(server_url).dsn)
    try:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await connection.close()


def run(server_url: str, workers: int, clients: int, seconds: float, directives: bool) -> Run:
    schema = f"bench_scale_out_{secrets.token_hex(4)}"
    separator = "&" if "?" in server_url else "?"
    url = f"{server_url}{separator}schema={schema}"
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(workers + 1)
    duplicate = context.Barrier(workers)
    results = context.Queue()
    processes = [
        context.Process(target=_worker, args=(url, index, clients, seconds, start, duplicate,
                                              directives and index == 0, results))
        for index in range(workers)
    ]
    try:
        asyncio.run(_migrate(url))
        for process in processes:
            process.start()
        with contextlib.suppress(threading.BrokenBarrierError):  # a worker failed: its report says why
            start.wait(timeout=STARTUP_TIMEOUT_SECONDS)
        reports: dict[int, WorkerReport] = {}
        for _ in processes:
            index, report = results.get(timeout=seconds + 600)
            if isinstance(report, str):
                raise RuntimeError(f"worker {index} failed: {report}")
            reports[index] = WorkerReport(**report)
        for process in processes:
            process.join()
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
        asyncio.run(_drop_schema(server_url, schema))
    requests = sum(report.requests for report in reports.values())
    elapsed = max(report.seconds for report in reports.values())
    serial = sum(report.serial_seconds for report in reports.values())
    serial_per_request = serial / requests if requests else 0.0
    rounds = zip(*(report.accepted_copies for report in reports.values()), strict=True)
    return Run(
        workers=workers,
        req_per_s=requests / elapsed,
        serial_ms_per_request=serial_per_request * 1e3,
        ceiling_per_s=(1.0 / serial_per_request) if serial_per_request else float("inf"),
        requests=requests,
        serial_sections=sum(report.serial_sections for report in reports.values()),
        directives=sum(report.directives for report in reports.values()),
        exactly_once=all(sum(accepted) == 1 for accepted in rounds),
    )


async def _migrate(url: str) -> None:
    """The schema made once before the workers start (they would wait for each other's migration)."""
    store = PostgresStore(url)
    await store.open()
    await store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="1,2,4", help="worker counts to run, comma-separated")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per worker count")
    parser.add_argument("--clients", type=int, default=32, help="users deciding at once, per worker")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help=f"the database (default {DEFAULT_POSTGRES})")
    parser.add_argument("--no-directives", action="store_true", help="no directive a second among the requests")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    counts = [int(part) for part in args.workers.split(",")]
    if any(count < 1 for count in counts) or args.clients < 1 or args.seconds <= 0:
        parser.error("--workers, --clients and --seconds must be positive")
    runs = [run(args.postgres, count, args.clients, args.seconds, not args.no_directives) for count in counts]
    if args.json:
        print(json.dumps({"runs": [asdict(one) for one in runs]}))
        return 0
    print(f"{'workers':>7} {'req/s':>9} {'serial ms/req':>14} {'ceiling req/s':>14} {'serial sections':>16} "
          f"{'directives':>10} exactly-once")
    for one in runs:
        print(f"{one.workers:>7} {one.req_per_s:>9.0f} {one.serial_ms_per_request:>14.4f} {one.ceiling_per_s:>14.0f} "
              f"{one.serial_sections:>16} {one.directives:>10} {'yes' if one.exactly_once else 'NO'}")
    return 0 if all(one.exactly_once for one in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
