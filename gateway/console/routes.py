"""``GET /console`` and its JSON: the routes, the loopback gate, and where each view reads from.

Everything here is a GET that changes nothing. The page is three static files
(HTML, one script, one style sheet) from the package, no build step and no
framework: the script polls the JSON endpoints below and draws with the DOM.

The gate (``[simulation] console`` in ``gateway.toml``): ``"loopback"`` (the
default) registers the routes only when ``[server] host`` is a loopback address,
and even then answers 404 to a connection that arrived on any other address
(``serve --host 0.0.0.0`` overrides the configured host); ``true`` serves
everyone who reaches the port; ``false`` registers nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Final, Protocol

from aiohttp import web

from gateway.config import GatewayConfig
from gateway.console.fleet import FleetForecasts, FleetQuery, FleetQueryError, fleet_view
from gateway.console.solr_event import SolrSettings, solr_view
from gateway.console.traffic import audit_view, find_quarantined, quarantine_view, traffic_view
from gateway.devices import MeterFleet
from gateway.parse import HardenedParser
from gateway.runtime import World
from gateway.service import GatewayService, problem
from gateway.store.base import Store

QUERY_CHECK: Final = "console-query"
"""The problem ``check`` of a console query parameter that is not what it must be (400)."""

_STATIC: Final = {
    "/console": ("console.html", "text/html"),
    "/console/console.js": ("console.js", "text/javascript"),
    "/console/console.css": ("console.css", "text/css"),
}
_PAGE_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_DOCUMENT_POLICY: Final = "default-src 'none'; sandbox"
"""A signed document is shown as it crossed the wire, never run: no script, whatever it holds."""


class ConsoleSources(Protocol):
    """What the running gateway holds that the console reads (the app's runtime)."""

    @property
    def service(self) -> GatewayService: ...

    @property
    def store(self) -> Store: ...

    @property
    def fleet(self) -> MeterFleet: ...


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def console_enabled(config: GatewayConfig) -> bool:
    """Whether the console's routes are registered at all."""
    switch = config.simulation.console
    return switch is True or (switch == "loopback" and is_loopback_host(config.server.host))


def is_loopback_host(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost, or "" / "0.0.0.0" / "::" (every address)


def arrived_on_loopback(request: web.Request) -> bool:
    """Whether the connection reached a loopback address of this host (its local end, not the peer)."""
    sockname = request.transport.get_extra_info("sockname") if request.transport is not None else None
    if not isinstance(sockname, tuple) or not sockname:
        return False  # a Unix socket or an unknown transport: not what "loopback" allows
    return is_loopback_host(str(sockname[0]))


def add_console_routes(app: web.Application, world: World, sources: Callable[[], ConsoleSources]) -> None:
    """Registers ``/console`` and ``/console/api/…`` when ``gateway.toml`` switches them on.

    ``sources``: the running gateway's parts, available once the app has started.
    """
    if not console_enabled(world.config):
        return
    console = _Console(world, sources)
    gate = _loopback_gate if world.config.simulation.console == "loopback" else _open_gate
    for path in _STATIC:
        app.router.add_get(path, gate(console.static))
    routes: dict[str, Handler] = {
        "/console/api/fleet": console.fleet,
        "/console/api/solr": console.solr,
        "/console/api/quarantine": console.quarantine,
        "/console/api/traffic": console.traffic,
        "/console/api/audit": console.audit,
        "/console/api/exchanges/{sequence:[0-9]{1,12}}/{which:request|response}.xml": console.exchange_xml,
        "/console/api/deliveries/{delivery_id:[0-9]{1,18}}.xml": console.delivery_xml,
        "/console/api/quarantine/{event_ref:[0-9]{1,18}}.xml": console.quarantined_xml,
    }
    for path, handler in routes.items():
        app.router.add_get(path, gate(handler))


def _loopback_gate(handler: Handler) -> Handler:
    async def gated(request: web.Request) -> web.StreamResponse:
        if not arrived_on_loopback(request):
            raise web.HTTPNotFound()  # as if there were no console: off loopback it is off
        return await handler(request)

    return gated


def _open_gate(handler: Handler) -> Handler:
    return handler


class _Console:
    """The handlers, with what they share: the world, the runtime's parts, the forecasts' cache."""

    def __init__(self, world: World, sources: Callable[[], ConsoleSources]) -> None:
        self._world = world
        self._sources = sources
        self._forecasts = FleetForecasts()
        self._fleet_lock = asyncio.Lock()
        self._parser = HardenedParser(world.limits())
        self._solr_settings = SolrSettings.from_config(world.config)

    def _now(self) -> dt.datetime:
        return self._sources().service.clock.now()

    async def static(self, request: web.Request) -> web.Response:
        name, content_type = _STATIC[request.path]
        body = resources.files("gateway.console").joinpath("static", name).read_bytes()
        return web.Response(body=body, content_type=content_type, charset="utf-8", headers=_headers(_PAGE_POLICY))

    async def fleet(self, request: web.Request) -> web.Response:
        try:
            query = FleetQuery.parse(request.query)
        except FleetQueryError as error:
            reply = problem(400, QUERY_CHECK, str(error))
            return web.Response(status=400, body=reply.body, content_type=reply.content_type)
        sources = self._sources()
        async with self._fleet_lock:  # one pass at a time: several open pages do not multiply the work
            view = await fleet_view(
                sources.service.access.state, self._world.manifest, sources.fleet, self._forecasts, self._now(), query
            )
        return _json(view)

    async def solr(self, request: web.Request) -> web.Response:
        registry = self._sources().service.access.state
        return _json(solr_view(registry, self._world.manifest, self._solr_settings, self._now()))

    async def quarantine(self, request: web.Request) -> web.Response:
        sources = self._sources()
        view = await quarantine_view(
            sources.service.access.state, sources.store, self._world.manifest, self._world.config.adt,
            self._world.directory, self._now(), f"{request.scheme}://{request.host}",
        )
        return _json(view)

    async def traffic(self, request: web.Request) -> web.Response:
        sources = self._sources()
        return _json(await traffic_view(sources.service.recent, sources.store, self._world.manifest, self._parser, self._now()))

    async def audit(self, request: web.Request) -> web.Response:
        return _json(await audit_view(self._sources().store, self._now()))

    async def exchange_xml(self, request: web.Request) -> web.Response:
        exchange = self._sources().service.recent.get(int(request.match_info["sequence"]))
        which = request.match_info["which"]
        document = None if exchange is None else exchange.request_xml if which == "request" else exchange.response_xml
        if exchange is None or document is None:
            raise _not_found("no such exchange in this worker's recent ones (or it kept no signed document)")
        return _xml(document, f"exchange-{exchange.sequence}-{which}.xml")

    async def delivery_xml(self, request: web.Request) -> web.Response:
        delivery = await self._sources().store.delivery(int(request.match_info["delivery_id"]))
        if delivery is None:
            raise _not_found("no such delivery in the outbox (delivered ones are purged after two days)")
        return _xml(delivery.body, f"delivery-{delivery.delivery_id}.xml")

    async def quarantined_xml(self, request: web.Request) -> web.Response:
        sources = self._sources()
        held = await find_quarantined(sources.service.access.state, sources.store, int(request.match_info["event_ref"]))
        if held is None:
            raise _not_found("no such quarantined request")
        return _xml(held.raw_request, f"quarantined-{held.event_ref}.xml")


def _headers(policy: str) -> dict[str, str]:
    return {"Content-Security-Policy": policy, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer"}


def _json(value: dict[str, object]) -> web.Response:
    return web.json_response(value, headers=_headers(_DOCUMENT_POLICY))


def _xml(document: bytes, filename: str) -> web.Response:
    headers = {**_headers(_DOCUMENT_POLICY), "Content-Disposition": f'inline; filename="{filename}"'}
    return web.Response(body=document, content_type="application/xml", headers=headers)


def _not_found(detail: str) -> web.HTTPNotFound:
    reply = problem(404, "not-found", detail)
    return web.HTTPNotFound(text=reply.body.decode(), content_type=reply.content_type)
