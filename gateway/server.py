"""The composition root: builds the gateway from a world, and serves it.

:func:`start_runtime` opens the store and builds the pipeline (verifier, access control, response
signer, meters, forwarder, outbox) once, here, and nowhere else; :func:`create_app` hands it to
the routes of :mod:`gateway.app`; :func:`serve` runs one process, or with ``workers`` > 1 the
supervisor of :mod:`gateway.workers`, whose processes each run :func:`run_worker`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from gateway.app import wire_routes
from gateway.clock import AcceleratedClock, Clock, FixedClock, SystemClock
from gateway.config import GatewayConfig
from gateway.deliver.outbox import DeliveryWorker
from gateway.devices import MeterFleet
from gateway.devices.persistence import StoreMeterPersistence
from gateway.forward import Forwarder
from gateway.ingress.connections import run_until_signalled, start_guarded
from gateway.ingress.fairness import Admission
from gateway.logs import BatchedStreamHandler, flush_all
from gateway.metrics import GatewayMetrics
from gateway.policy.access import AccessControl
from gateway.policy.state import initial_state
from gateway.respond.signer import ResponseSigner
from gateway.runtime import World, open_world
from gateway.service import GatewayService, ThreadLocalVerifiers
from gateway.signing import SigningKey
from gateway.store.base import ALL_DEVICES, Shard, Store
from gateway.store.factory import is_postgres_url, open_store
from gateway.verify.verifier import Verifier
from gateway.workers import LOG as WORKERS_LOG
from gateway.workers import WorkerSpec, prepare_worker, serve_workers

CRYPTO_THREADS = 2
"""Threads for the work too long for the event loop: verifying documents larger than
:data:`gateway.service.VERIFY_ON_LOOP_BYTES`, signing batches of AD1 alerts. A DUIS request of a
few kB is verified, decided and answered on the loop (see :mod:`gateway.service`)."""


@dataclass
class Runtime:
    """What the application owns while it runs (closed in reverse order on shutdown)."""

    service: GatewayService
    store: Store
    executor: ThreadPoolExecutor
    fleet: MeterFleet
    outbox: DeliveryWorker
    forwarder: Forwarder
    stop: asyncio.Event
    background: list[asyncio.Task[None]]

    async def close(self) -> None:
        """Clean shutdown: run the commands already queued for this worker's meters, then stop the
        loops, let deliveries in flight be recorded, and close the store."""
        await self.forwarder.drain()
        self.stop.set()
        await self.outbox.stop()
        await asyncio.gather(*self.background, return_exceptions=True)
        self.executor.shutdown(wait=True)
        await self.store.close()



def clock_from_config(config: GatewayConfig) -> Clock:
    settings = config.clock
    if settings.mode == "fixed":
        return FixedClock(settings.start or dt.datetime.now(dt.timezone.utc))
    if settings.mode == "accelerated":
        return AcceleratedClock(settings.start or dt.datetime.now(dt.timezone.utc), settings.rate)
    return SystemClock()


async def start_runtime(
    world: World, clock: Clock, store_url: str | None, *, shard: Shard = ALL_DEVICES,
    metrics: GatewayMetrics | None = None,
) -> Runtime:
    """Opens the store and builds the pipeline. ``shard``: the meters this worker simulates and whose
    queued commands it executes (each meter belongs to exactly one worker); ``metrics``: where the
    service counts (the connection guard's too; default: a registry of its own)."""
    metrics = metrics or GatewayMetrics()
    store = open_store(store_url or world.config.store.url, world_dir=world.directory, stages=metrics.stages)
    await store.open()
    access = await AccessControl.restore(
        initial=initial_state(world.manifest),
        store=store,
        config=world.policy_config(),
        clock=clock,
        repository=world.repository,
        vectors=world.vectors,
        stages=metrics.stages,
    )

    def new_verifier() -> Verifier:
        return world.verifier(clock, access.revocation_delayed, own_schemas=True)

    gateway_key = world.manifest.gateway
    if gateway_key.response_key is None:
        raise SystemExit("dcc-gateway: manifest.json names no gateway response_key")
    signer = ResponseSigner(SigningKey.load(gateway_key.response_key, gateway_key.response_cert))
    fleet = MeterFleet.from_manifest(
        world.manifest, clock, store=StoreMeterPersistence(store), runs=shard.owns, vectors=world.vectors
    )
    await fleet.load()
    outbox = DeliveryWorker(store, clock)
    executor = ThreadPoolExecutor(max_workers=CRYPTO_THREADS, thread_name_prefix="crypto")
    forwarder = Forwarder(
        fleet=fleet, store=store, outbox=outbox, signer=signer, access=access, manifest=world.manifest, clock=clock,
        dsp_user_id=gateway_key.dsp_user_id, crypto=executor, shard=shard, stages=metrics.stages,
    )
    service = GatewayService(
        verifiers=ThreadLocalVerifiers(new_verifier, prebuilt=CRYPTO_THREADS + 1),  # and the loop's
        access=access,
        signer=signer,
        clock=clock,
        metrics=metrics,
        executor=executor,
        admission=Admission(world.config.ingress, verify_slots=CRYPTO_THREADS),
        audit=store.append_audit,
        forward=forwarder,
    )
    stop = asyncio.Event()
    await forwarder.start_executing()
    background = [
        asyncio.create_task(outbox.run(stop)),
        # Directives other workers stored are folded in (an admission checks this anyway; refusals and
        # alert routing read the registry too, so it is not left to go stale).
        asyncio.create_task(_every(stop, access.refresh, "reading the directive log")),
        asyncio.create_task(forwarder.run_commands(stop)),
        asyncio.create_task(forwarder.run_meters(stop)),
        asyncio.create_task(forwarder.run_alerts(stop)),
        asyncio.create_task(_every(stop, _flush_logs, "writing out batched log lines")),
    ]
    return Runtime(service, store, executor, fleet, outbox, forwarder, stop, background)


async def _every(
    stop: asyncio.Event, action: Callable[[], Awaitable[object]], what: str, interval: float = 1.0
) -> None:
    """Runs ``action`` once every ``interval`` seconds and once more when ``stop`` is set; a
    failure is logged (as ``what`` failing) and the next interval tries again."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
        try:
            await action()
        except Exception:
            logging.getLogger("dcc_gateway").exception("%s failed", what)


async def _flush_logs() -> None:
    """Writes out the log lines a batched handler holds, so an idle gateway's last lines are not held back."""
    flush_all()


def create_app(
    world: World, *, clock: Clock | None = None, store_url: str | None = None, shard: Shard = ALL_DEVICES
) -> web.Application:
    """The gateway as an aiohttp application: the routes, and the pipeline built when it starts."""

    async def start(metrics: GatewayMetrics) -> Runtime:
        return await start_runtime(
            world, clock or clock_from_config(world.config), store_url, shard=shard, metrics=metrics
        )

    return wire_routes(world, start=start, shard=shard)


def serve(directory: Path, *, host: str | None, port: int | None, store_url: str | None, workers: int) -> int:
    """Runs the gateway until SIGINT/SIGTERM, then stops cleanly.

    ``workers`` > 1 runs that many processes on one port (PostgreSQL only: they share its database).
    """
    world = open_world(directory)
    server = world.config.server
    url = store_url or world.config.store.url
    if workers < 1:
        raise SystemExit("dcc-gateway serve: --workers is at least 1")
    if workers > 1:
        if not is_postgres_url(url):
            raise SystemExit("dcc-gateway serve: --workers N needs the PostgreSQL store (--store postgresql://…)")
        return serve_workers(
            directory, host=host or server.host, port=port or server.port, store_url=url, workers=workers,
            target=run_worker,
        )
    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[BatchedStreamHandler(sys.stderr)])
    run_until_signalled(
        create_app(world, store_url=store_url),
        host or server.host,
        port or server.port,
        announce=lambda message: print(message, flush=True),
    )
    return 0


def run_worker(spec: WorkerSpec) -> None:
    """The body of one worker process: serve until SIGTERM (from the supervisor, or when it is gone)."""
    prepare_worker(spec)
    asyncio.run(_serve_worker(spec))


async def _serve_worker(spec: WorkerSpec) -> None:
    world = open_world(spec.directory)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    app = create_app(world, store_url=spec.store_url, shard=spec.shard)
    runner, _ = await start_guarded(app, spec.host, spec.port, reuse_port=True)
    try:
        WORKERS_LOG.info("worker %d of %d serving on http://%s:%d", spec.index, spec.count, spec.host, spec.port)
        await stop.wait()
    finally:
        await runner.cleanup()  # finishes requests in flight and closes the runtime (store last)
