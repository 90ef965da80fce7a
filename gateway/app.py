"""Wires the aiohttp application; holds no logic of its own.

Routes (SPEC §5): POST /api/v1/serviceS|serviceT|serviceD (DUIS requests),
POST /api/v1/admin (signed directives), GET /healthz, GET /metrics and,
in simulation, GET /sim/devices/{device_id} and the read-only GET /console (gateway.console).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import sys
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from gateway.clock import AcceleratedClock, Clock, FixedClock, SystemClock
from gateway.config import GatewayConfig
from gateway.console import add_console_routes
from gateway.deliver.outbox import DeliveryWorker
from gateway.devices import MeterFleet
from gateway.devices.persistence import StoreMeterPersistence
from gateway.forward import Forwarder
from gateway.ingress.body import read_body
from gateway.ingress.connections import CONNECTION_GUARD, ConnectionGuard, run_until_signalled, track_requests
from gateway.ingress.fairness import Admission
from gateway.logs import BatchedStreamHandler, flush_all
from gateway.metrics import GatewayMetrics
from gateway.policy.access import AccessControl
from gateway.policy.state import initial_state
from gateway.respond.signer import ResponseSigner
from gateway.runtime import World, open_world
from gateway.service import GatewayService, Reply, ThreadLocalVerifiers, problem
from gateway.signing import SigningKey
from gateway.stages import now_ns
from gateway.eui64 import Eui64
from gateway.store.base import ALL_DEVICES, Shard, Store
from gateway.store.factory import is_postgres_url, open_store
from gateway.verify.verifier import Verifier

SERVICE = web.AppKey("service", GatewayService)
WORLD = web.AppKey("world", World)


CRYPTO_THREADS = 2
"""Threads for XML signature verification and signing (the crypto releases the GIL)."""

FLEET = web.AppKey("fleet", MeterFleet)
FORWARDER = web.AppKey("forwarder", Forwarder)
OUTBOX = web.AppKey("outbox", DeliveryWorker)
SHARD = web.AppKey("shard", Shard)


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


RUNTIME = web.AppKey("runtime", Runtime)


# --- handlers ------------------------------------------------------------------------------------


def to_response(reply: Reply) -> web.Response:
    return web.Response(status=reply.status, body=reply.body, content_type=reply.content_type, headers=reply.headers)


def service_handler(path: str):  # type: ignore[no-untyped-def]
    async def handle(request: web.Request) -> web.Response:
        body = await _body(request)
        if isinstance(body, Reply):
            return to_response(body)
        service = request.app[SERVICE]
        reply = await service.service_request(path, body, peer=request.remote or "")
        started = now_ns()
        response = to_response(reply)
        service.metrics.stages.since("http", started)
        return response

    return handle


async def admin(request: web.Request) -> web.Response:
    body = await _body(request)
    if isinstance(body, Reply):
        return to_response(body)
    return to_response(await request.app[SERVICE].admin(body, peer=request.remote or ""))


async def _body(request: web.Request) -> bytes | Reply:
    config = request.app[WORLD].config
    return await read_body(
        request, max_bytes=config.limits.max_body_bytes, timeout=config.ingress.body_timeout_seconds
    )


async def device_state(request: web.Request) -> web.Response:
    fleet = request.app[FLEET]
    device_id = request.match_info["device_id"]
    with contextlib.suppress(ValueError):
        if not fleet.runs(Eui64.parse(device_id)):
            await fleet.refresh(device_id)  # another worker runs it: show what that worker stored
    state = fleet.as_json(device_id)
    if state is None:
        raise web.HTTPNotFound(text=json.dumps({"error": "no such simulated device"}), content_type="application/json")
    return web.json_response(state)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "world": str(request.app[WORLD].directory)})


async def metrics(request: web.Request) -> web.Response:
    service_metrics = request.app[SERVICE].metrics
    service_metrics.queue_depth.labels("forward").set(request.app[FORWARDER].in_flight)
    admission = request.app[SERVICE].admission
    service_metrics.queue_depth.labels("verifier").set(admission.verifier.waiting)
    service_metrics.queue_depth.labels("originators").set(admission.originators.waiting)
    exposition = service_metrics.exposition()
    return web.Response(body=exposition, headers={"Content-Type": GatewayMetrics.CONTENT_TYPE})


# --- wiring ------------------------------------------------------------------------------------------


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
        stages=metrics.stages,
    )

    def new_verifier() -> Verifier:
        return world.verifier(clock, access.revocation_delayed, own_schemas=True)

    gateway_key = world.manifest.gateway
    if gateway_key.response_key is None:
        raise SystemExit("dcc-gateway: manifest.json names no gateway response_key")
    signer = ResponseSigner(SigningKey.load(gateway_key.response_key, gateway_key.response_cert))
    fleet = MeterFleet.from_manifest(world.manifest, clock, store=StoreMeterPersistence(store), runs=shard.owns)
    await fleet.load()
    outbox = DeliveryWorker(store, clock)
    executor = ThreadPoolExecutor(max_workers=CRYPTO_THREADS, thread_name_prefix="crypto")
    forwarder = Forwarder(
        fleet=fleet, store=store, outbox=outbox, signer=signer, access=access, manifest=world.manifest, clock=clock,
        dsp_user_id=gateway_key.dsp_user_id, crypto=executor, shard=shard, stages=metrics.stages,
    )
    service = GatewayService(
        verifiers=ThreadLocalVerifiers(new_verifier, prebuilt=CRYPTO_THREADS),
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
        asyncio.create_task(_follow_registry(access, stop)),
        asyncio.create_task(forwarder.run_commands(stop)),
        asyncio.create_task(forwarder.run_meters(stop)),
        asyncio.create_task(forwarder.run_alerts(stop)),
        asyncio.create_task(_flush_logs(stop)),
    ]
    return Runtime(service, store, executor, fleet, outbox, forwarder, stop, background)


async def _flush_logs(stop: asyncio.Event, interval: float = 1.0) -> None:
    """Writes out the log lines a batched handler holds, so an idle gateway's last lines are not held back."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
        flush_all()


async def _follow_registry(access: AccessControl, stop: asyncio.Event, interval: float = 1.0) -> None:
    """Folds in directives other workers stored (an admission checks this anyway; refusals and
    alert routing read the registry too, so it is not left to go stale)."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
        try:
            await access.refresh()
        except Exception:
            logging.getLogger("dcc_gateway").exception("reading the directive log failed")


@web.middleware
async def internal_errors(request: web.Request, handler):  # type: ignore[no-untyped-def]
    """A bug must still answer in the API's own terms (and leave a traceback in the log)."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception:
        logging.getLogger("dcc_gateway").exception("internal error on %s %s", request.method, request.path)
        return to_response(problem(500, "internal-error", "the gateway failed to handle this request; see its log"))


def create_app(
    world: World, *, clock: Clock | None = None, store_url: str | None = None, shard: Shard = ALL_DEVICES
) -> web.Application:
    app = web.Application(
        client_max_size=world.config.limits.max_body_bytes, middlewares=[track_requests, internal_errors]
    )
    app[WORLD] = world
    app[SHARD] = shard
    counted = GatewayMetrics()  # the service's and the connection guard's
    app[CONNECTION_GUARD] = ConnectionGuard(world.config.ingress, counted)

    async def runtime_context(app: web.Application) -> AsyncIterator[None]:
        runtime = await start_runtime(
            world, clock or clock_from_config(world.config), store_url, shard=shard, metrics=counted
        )
        app[SERVICE] = runtime.service
        app[FLEET] = runtime.fleet
        app[FORWARDER] = runtime.forwarder
        app[OUTBOX] = runtime.outbox
        app[RUNTIME] = runtime
        yield
        await runtime.close()

    app.cleanup_ctx.append(runtime_context)
    for path in ("serviceS", "serviceT", "serviceD"):
        app.router.add_post(f"/api/v1/{path}", service_handler(path))
    app.router.add_post("/api/v1/admin", admin)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    if world.config.simulation.expose_devices:
        app.router.add_get("/sim/devices/{device_id}", device_state)
    add_console_routes(app, world, lambda: app[RUNTIME])
    return app


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
        from gateway.workers import serve_workers

        return serve_workers(directory, host=host or server.host, port=port or server.port, store_url=url, workers=workers)
    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[BatchedStreamHandler(sys.stderr)])
    run_until_signalled(
        create_app(world, store_url=store_url),
        host or server.host,
        port or server.port,
        announce=lambda message: print(message, flush=True),
    )
    return 0
