"""A gateway app served on a free loopback port from a background thread, for tests that talk HTTP to it."""

from __future__ import annotations

import asyncio
import http.client
import socket
import threading

from aiohttp import web


class LiveGateway:
    """The app served on 127.0.0.1 from a daemon thread's event loop."""

    def __init__(self, app: web.Application, *, timeout: float = 15.0) -> None:
        self._app = app
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self._thread = threading.Thread(target=self._run, name="live-gateway", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._runner = web.AppRunner(self._app, access_log=None)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", self.port)
            self._loop.run_until_complete(site.start())
        except BaseException as exc:  # noqa: BLE001  (reported to the test thread)
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the gateway did not start")
        if self._error is not None:
            raise RuntimeError(f"the gateway did not start: {self._error!r}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)

    def post(self, path: str, body: bytes, content_type: str) -> tuple[int, str, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        try:
            headers = {"Content-Type": content_type} if content_type else {}
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheader("Content-Type", ""), response.read()
        finally:
            connection.close()
