"""Wires the aiohttp application's routes; holds no logic of its own.

Routes (SPEC §5): POST /api/v1/serviceS|serviceT|serviceD (DUIS requests),
POST /api/v1/admin (signed directives), GET /healthz, GET /metrics and,
in simulation, GET /sim/devices/{device_id} and the read-only GET /console (gateway.console).

What the routes serve (the store, the pipeline, the meters) is built by the composition
root, :mod:`gateway.server`, and handed in as ``start``.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

from aiohttp import web

from gateway.console import add_console_routes
from gateway.console.routes import ConsoleSources
from gateway.deliver.outbox import DeliveryWorker
from gateway.devices import MeterFleet
from gateway.eui64 import Eui64
from gateway.forward import Forwarder
from gateway.ingress.body import read_body
from gateway.ingress.connections import CONNECTION_GUARD, ConnectionGuard, track_requests
from gateway.metrics import GatewayMetrics
from gateway.runtime import World
from gateway.service import GatewayService, Reply, problem
from gateway.stages import now_ns
from gateway.store.base import ALL_DEVICES, Shard

SERVICE = web.AppKey("service", GatewayService)
WORLD = web.AppKey("world", World)
FLEET = web.AppKey("fleet", MeterFleet)
FORWARDER = web.AppKey("forwarder", Forwarder)
OUTBOX = web.AppKey("outbox", DeliveryWorker)
SHARD = web.AppKey("shard", Shard)


class RuntimeParts(ConsoleSources, Protocol):
    """What the routes read of the running pipeline (:class:`gateway.server.Runtime`)."""

    @property
    def forwarder(self) -> Forwarder: ...

    @property
    def outbox(self) -> DeliveryWorker: ...

    async def close(self) -> None: ...


StartRuntime = Callable[[GatewayMetrics], Awaitable[RuntimeParts]]
"""Builds the pipeline, counting into the metrics it is given (the connection guard's too)."""

RUNTIME = web.AppKey("runtime", RuntimeParts)


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


def wire_routes(world: World, *, start: StartRuntime, shard: Shard = ALL_DEVICES) -> web.Application:
    """The application: its routes, and ``start`` run on start-up (its runtime closed on cleanup)."""
    app = web.Application(
        client_max_size=world.config.limits.max_body_bytes, middlewares=[track_requests, internal_errors]
    )
    app[WORLD] = world
    app[SHARD] = shard
    counted = GatewayMetrics()  # the service's and the connection guard's
    app[CONNECTION_GUARD] = ConnectionGuard(world.config.ingress, counted)

    async def runtime_context(app: web.Application) -> AsyncIterator[None]:
        runtime = await start(counted)
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
