"""Connections: how many, from whom, and how long a client may take to say what it wants.

aiohttp parses HTTP; this module stands between the listening socket and aiohttp's
protocol (:class:`GuardedConnection` wraps each one) and does what aiohttp does not:

* a connection beyond ``max_connections`` in all, or ``max_connections_per_peer`` from one
  IP address, is answered 503 (problem+json, Retry-After) and closed before aiohttp sees it;
* a request's headers must be complete within ``header_timeout_seconds`` of the connection's
  opening or, on a kept-alive connection, of the request's first byte (a client that sends
  one header byte now and then is cut there, however steadily it trickles);
* a kept-alive connection may wait ``idle_timeout_seconds`` for its next request.

Body timeouts are enforced where the body is read (:mod:`gateway.ingress.body`). Each cut
counts in ``dcc_gateway_connections_cut_total{reason=…}``. Timeouts run on the event loop's
clock: they bound real time a socket is held, not a decision (decisions use the injected clock).
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, cast

from aiohttp import web

from gateway.config import IngressConfig
from gateway.ingress.body import CLOSE_AFTER_ANSWER
from gateway.metrics import GatewayMetrics
from gateway.stages import StageTimers, now_ns

PER_PEER_LIMIT: Final = "per-peer-limit"
OVERALL_LIMIT: Final = "connection-limit"
HEADER_TIMEOUT: Final = "header-timeout"
IDLE_TIMEOUT: Final = "idle-timeout"
REFUSAL_LINGER_SECONDS: Final = 1.0
"""How long a refused connection stays open after its 503 for the client to close its side (see
:meth:`GuardedConnection._drain`); at most ``max_connections`` of them at once, the rest closed at once."""
ANSWERED_LINGER_SECONDS: Final = 5.0
"""How long a connection closed after its answer (a 408) waits for the client to close its side
before it is closed anyway; what the client still sends meanwhile is read and dropped."""


class ConnectionGuard:
    """Counts open connections per peer and in all, and cuts the ones too slow to send a request.

    One per application (``create_app`` makes it, counting into the service's metrics), shared
    by its listening sockets; the site and the middleware find it under :data:`CONNECTION_GUARD`.
    """

    def __init__(self, settings: IngressConfig, metrics: GatewayMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self._per_peer: Counter[str] = Counter()
        self._open = 0
        self._by_handler: dict[asyncio.BaseProtocol, GuardedConnection] = {}
        self._refusals = {reason: _refusal(reason, settings) for reason in (PER_PEER_LIMIT, OVERALL_LIMIT)}
        self._lingering = 0
        """Refused connections kept open a moment so that their 503 is read, not lost to a reset."""

    @property
    def open(self) -> int:
        return self._open

    def protocol_factory(self, make_handler: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """Wraps aiohttp's protocol factory (the runner's server) for ``loop.create_server``."""
        return lambda: GuardedConnection(self, make_handler)

    def connection_of(self, handler: asyncio.BaseProtocol) -> GuardedConnection | None:
        """The guarded connection an aiohttp request arrived on (None: a socket not opened here)."""
        return self._by_handler.get(handler)

    def cut(self, reason: str) -> None:
        self.metrics.connections_cut.labels(reason).inc()

    # --- what GuardedConnection calls ------------------------------------------------

    def _admit(self, peer: str) -> str | None:
        """None and the connection counted, or why not."""
        if self._open >= self.settings.max_connections:
            return OVERALL_LIMIT
        if self._per_peer[peer] >= self.settings.max_connections_per_peer:
            return PER_PEER_LIMIT
        self._open += 1
        self._per_peer[peer] += 1
        self.metrics.connections_open.set(self._open)
        return None

    def _refuse(self, reason: str, transport: asyncio.Transport) -> bool:
        """Writes the 503; True when the connection may linger to let the client read it."""
        self.cut(reason)
        transport.write(self._refusals[reason])
        if self._lingering >= self.settings.max_connections:
            transport.close()
            return False
        self._lingering += 1
        return True

    def _stop_lingering(self) -> None:
        self._lingering -= 1

    def _register(self, handler: asyncio.BaseProtocol, connection: GuardedConnection) -> None:
        self._by_handler[handler] = connection

    def _release(self, peer: str, handler: asyncio.BaseProtocol) -> None:
        self._open -= 1
        self._per_peer[peer] -= 1
        if not self._per_peer[peer]:
            del self._per_peer[peer]
        self._by_handler.pop(handler, None)
        self.metrics.connections_open.set(self._open)


CONNECTION_GUARD = web.AppKey("connection_guard", ConnectionGuard)


class GuardedConnection(asyncio.Protocol):
    """One client connection: aiohttp's protocol inside, a limit and a deadline around it.

    States: waiting for a request's headers (deadline: header timeout), in a request (the
    handler runs; the body has its own deadline), idle between requests (deadline: idle
    timeout; the next request's first byte starts its header deadline).
    """

    def __init__(self, guard: ConnectionGuard, make_handler: Callable[[], asyncio.Protocol]) -> None:
        self._guard = guard
        self._make_handler = make_handler
        self._inner: asyncio.Protocol | None = None
        self._transport: asyncio.Transport | None = None
        self._peer = ""
        self._lingering = False
        self._requests_running = 0
        self._idle = False
        self._draining = False
        """Answered and half-closed: what still arrives is dropped until the client closes its side."""
        self._deadline: asyncio.TimerHandle | None = None

    # --- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # a stream server's
        self._peer = peer_of(transport)
        self._transport = transport
        refusal = self._guard._admit(self._peer)
        if refusal is not None:
            self._lingering = self._guard._refuse(refusal, transport)
            if self._lingering:
                self._drain(REFUSAL_LINGER_SECONDS)
            return
        self._inner = self._make_handler()
        self._guard._register(self._inner, self)
        self._inner.connection_made(cast(asyncio.Transport, _HandlerTransport(transport, self)))
        self._expect(self._guard.settings.header_timeout_seconds, HEADER_TIMEOUT)

    def data_received(self, data: bytes) -> None:
        if self._inner is None or self._draining:
            return  # refused, or answered for the last time: read and dropped (see _drain)
        if self._idle:
            self._idle = False
            self._expect(self._guard.settings.header_timeout_seconds, HEADER_TIMEOUT)
        started = now_ns()
        self._inner.data_received(data)
        self._guard.metrics.stages.since("http", started)

    def eof_received(self) -> bool | None:
        if self._inner is None or self._draining:
            return None  # the transport closes: the client has read what it was owed
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_deadline()
        self._transport = None
        if self._lingering:
            self._lingering = False
            self._guard._stop_lingering()
        if self._inner is None:
            return
        inner, self._inner = self._inner, None
        self._guard._release(self._peer, inner)
        inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    # --- what the middleware calls ---------------------------------------------------

    def request_started(self) -> None:
        """The headers are in; the handler runs (the body has its own deadline)."""
        self._requests_running += 1
        self._idle = False
        self._stop_deadline()

    def request_finished(self) -> None:
        """The handler answered; the connection waits for the next request."""
        self._requests_running -= 1
        if self._requests_running == 0 and self._inner is not None and not self._draining:
            self._idle = True
            self._expect(self._guard.settings.idle_timeout_seconds, IDLE_TIMEOUT)

    def close_after_answer(self) -> None:
        """The answer is written: the connection ends, gracefully (:meth:`_drain`, for up to
        :data:`ANSWERED_LINGER_SECONDS`)."""
        if self._transport is not None and not self._draining:
            self._drain(ANSWERED_LINGER_SECONDS)

    @property
    def stages(self) -> StageTimers:
        return self._guard.metrics.stages

    @property
    def draining(self) -> bool:
        return self._draining

    # --- deadlines -------------------------------------------------------------------

    def _expect(self, seconds: float, reason: str) -> None:
        self._stop_deadline()
        self._deadline = asyncio.get_running_loop().call_later(seconds, self._expired, reason)

    def _drain(self, seconds: float) -> None:
        """Ends the connection after what was last written (a 503 refusal, a 408), gracefully: a
        FIN follows it, what the client still sends is dropped, and the socket closes when the
        client closes its side, or after ``seconds``. Closing at once, with the client's unread
        bytes in the socket, would send a reset, which can destroy the answer before it is read."""
        transport = self._transport
        if transport is None:
            return
        self._draining = True
        if transport.can_write_eof():
            transport.write_eof()  # after what is buffered, i.e. after the answer
        self._stop_deadline()
        self._deadline = asyncio.get_running_loop().call_later(seconds, transport.close)

    def _stop_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, reason: str) -> None:
        self._deadline = None
        if self._transport is None or self._inner is None or self._requests_running or self._draining:
            return
        self._guard.cut(reason)
        self._transport.abort()  # nothing owed to a client that has not finished asking


class _HandlerTransport:
    """The transport aiohttp's protocol is given: the socket's own, except that closing it waits
    while the connection drains after its last answer (aiohttp closes as soon as the handler has
    answered; :meth:`GuardedConnection.close_after_answer` closes once the client has read)."""

    __slots__ = ("_transport", "_connection")

    def __init__(self, transport: asyncio.Transport, connection: GuardedConnection) -> None:
        self._transport = transport
        self._connection = connection

    def write(self, data: bytes | bytearray | memoryview) -> None:
        started = now_ns()
        self._transport.write(data)
        self._connection.stages.since("http", started)

    def writelines(self, chunks: Iterable[bytes | bytearray | memoryview]) -> None:
        started = now_ns()
        self._transport.writelines(chunks)
        self._connection.stages.since("http", started)

    def close(self) -> None:
        if not self._connection.draining:
            self._transport.close()

    def is_closing(self) -> bool:
        return self._connection.draining or self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def peer_of(transport: asyncio.BaseTransport) -> str:
    """The peer's IP address ('' for a socket without one, e.g. a Unix socket)."""
    peername = transport.get_extra_info("peername")
    return str(peername[0]) if isinstance(peername, tuple) and peername else ""


def _refusal(reason: str, settings: IngressConfig) -> bytes:
    """The whole HTTP answer to a connection refused for ``reason``, written before reading anything."""
    limit = settings.max_connections_per_peer if reason == PER_PEER_LIMIT else settings.max_connections
    scope = "from this address" if reason == PER_PEER_LIMIT else "in all"
    body = json.dumps({
        "type": "urn:x-dcc-gateway:problem:" + reason,
        "title": "Not decided; try again",
        "status": 503,
        "check": reason,
        "detail": f"{limit} connections are open {scope}, the most allowed; try again later",
    }).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "Content-Type: application/problem+json\r\n"
        f"Retry-After: {settings.retry_after_seconds}\r\n"
        "Connection: close\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


# --- the middleware: request boundaries, and closing after a 408 ------------------------


@web.middleware
async def track_requests(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Tells the connection when a request's headers are in and when it is answered; closes the
    connection after the answer when the handler asked for it (a body that came too slowly)."""
    guard = request.app.get(CONNECTION_GUARD)
    connection = guard.connection_of(request.protocol) if guard is not None else None
    if connection is not None:
        connection.request_started()
    try:
        response = await handler(request)
        reason = request.get(CLOSE_AFTER_ANSWER)
        if reason is not None:
            if guard is not None:
                guard.cut(reason)
            await _answer_and_close(request, response, connection)
        return response
    finally:
        if connection is not None:
            connection.request_finished()


async def _answer_and_close(
    request: web.Request, response: web.StreamResponse, connection: GuardedConnection | None
) -> None:
    """Writes the answer and ends the connection: gracefully where it is guarded (see
    :meth:`GuardedConnection.close_after_answer`), at once otherwise. aiohttp would instead read
    ("linger" over) the rest of the unread body for up to 10 s before closing."""
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    if connection is not None:
        connection.close_after_answer()
    else:
        request.protocol.force_close()


# --- the listening side -----------------------------------------------------------------


def server_options(settings: IngressConfig) -> dict[str, Any]:
    """aiohttp server settings that go with the guard (``AppRunner(app, **server_options(...))``).

    aiohttp's own keep-alive timer closes idle connections silently: it stays as a backstop behind
    the guard's deadlines, which count what they cut. Its "lingering" read of an unread body after
    an early answer (413, 415) is kept within the body timeout.
    """
    longest = max(settings.header_timeout_seconds, settings.idle_timeout_seconds)
    return {"keepalive_timeout": longest + 1.0, "lingering_time": min(10.0, settings.body_timeout_seconds)}


class GuardedSite(web.BaseSite):
    """A TCP site whose connections pass the :class:`ConnectionGuard` (aiohttp's TCPSite otherwise)."""

    __slots__ = ("_guard", "_host", "_port", "_reuse_port", "_bound")

    def __init__(
        self, runner: web.BaseRunner, guard: ConnectionGuard, host: str, port: int, *, reuse_port: bool = False
    ) -> None:
        super().__init__(runner)
        self._guard = guard
        self._host = host
        self._port = port
        self._reuse_port = reuse_port
        self._bound = port

    @property
    def port(self) -> int:
        """The port listened on (the one the OS chose, for port 0)."""
        return self._bound

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._bound}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        if server is None:
            raise RuntimeError("call runner.setup() before starting a site")
        self._server = await asyncio.get_running_loop().create_server(
            self._guard.protocol_factory(server),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_port=self._reuse_port or None,
        )
        if self._server.sockets:
            self._bound = int(self._server.sockets[0].getsockname()[1])


async def start_guarded(
    app: web.Application, host: str, port: int, *, reuse_port: bool = False
) -> tuple[web.AppRunner, GuardedSite]:
    """Sets the app up (its runtime starts) and listens through its guard; the caller cleans the
    runner up (which stops the site, finishes what is in flight and closes the runtime)."""
    guard = app[CONNECTION_GUARD]
    runner = web.AppRunner(app, access_log=None, handle_signals=False, **server_options(guard.settings))
    await runner.setup()
    try:
        site = GuardedSite(runner, guard, host, port, reuse_port=reuse_port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, site


def run_until_signalled(app: web.Application, host: str, port: int, *, announce: Callable[[str], None]) -> None:
    """Serves ``app`` until SIGINT or SIGTERM, then stops cleanly (what ``web.run_app`` does,
    with the guarded site)."""

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        runner, site = await start_guarded(app, host, port)
        try:
            announce(f"======== Running on {site.name} ========\n(Press CTRL+C to quit)")
            await stop.wait()
        finally:
            await runner.cleanup()  # finishes requests in flight and closes the runtime (store last)

    asyncio.run(serve())
