"""Wires the aiohttp application; holds no logic of its own.

Issue #2 ships liveness only (``/healthz``); the DUIS paths of SPEC §5 are
added with the policy and service layers.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from gateway.runtime import World, open_world

WORLD = web.AppKey("world", World)


async def healthz(request: web.Request) -> web.Response:
    world = request.app[WORLD]
    return web.json_response({"status": "ok", "world": str(world.directory)})


def create_app(world: World) -> web.Application:
    app = web.Application(client_max_size=world.config.limits.max_body_bytes)
    app[WORLD] = world
    app.router.add_get("/healthz", healthz)
    return app


def serve(directory: Path, *, host: str | None, port: int | None, store_url: str | None, workers: int) -> int:
    """Runs the gateway until SIGINT/SIGTERM (aiohttp's run_app stops cleanly on both)."""
    if workers != 1:
        raise SystemExit("dcc-gateway serve: --workers needs the PostgreSQL store (not built yet)")
    if store_url is not None and not store_url.startswith("sqlite"):
        raise SystemExit(f"dcc-gateway serve: store {store_url!r} is not supported yet")
    world = open_world(directory)
    server = world.config.server
    web.run_app(
        create_app(world),
        host=host or server.host,
        port=port or server.port,
        print=lambda message: print(message, flush=True),
    )
    return 0
