"""The HTTP floor: a bare aiohttp server on loopback that reads each POST's body and answers it
with a fixed body, nothing else (no parsing, no middlewares, no logging). What ``bench/load.py
--http-floor`` measures it with is the least CPU per request any aiohttp service answering these
requests can use on this machine: the part of the gateway's cost that is its HTTP server.

    python bench/_http_floor.py PORT ANSWER_BYTES
"""

from __future__ import annotations

import sys

from aiohttp import web


def main() -> None:
    port, answer_bytes = int(sys.argv[1]), int(sys.argv[2])
    answer = b"<a>" + b"x" * max(0, answer_bytes - 7) + b"</a>"

    async def answer_post(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=answer, content_type="application/xml")

    app = web.Application()
    app.router.add_post("/{path:.*}", answer_post)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, handle_signals=True)


if __name__ == "__main__":
    main()
