"""Reading a request body where its bytes arrive: media type, size and time, checked before parsing."""

from __future__ import annotations

import asyncio

from aiohttp import web

from gateway.checks import Check
from gateway.service import Reply, problem

XML_TYPES = frozenset({"application/xml", "text/xml"})
CHUNK_BYTES = 65536

CLOSE_AFTER_ANSWER = web.RequestKey("close_after_answer", str)
"""Set on a request whose connection must not carry another one: the reason, for the metric."""


async def read_body(request: web.Request, *, max_bytes: int, timeout: float) -> bytes | Reply:
    """The body, or a problem: media type first, then the size (before reading it all), then the
    time it takes to arrive: ``timeout`` seconds from the end of the headers. A body that takes
    longer is answered 408 and its connection closed (see :data:`CLOSE_AFTER_ANSWER`): a client
    sending a byte now and then would otherwise hold a connection and a handler for ever."""
    if request.content_type not in XML_TYPES:
        return _problem(Check.MEDIA_TYPE, f"send application/xml, not {request.content_type or 'nothing'}")
    if request.content_length is not None and request.content_length > max_bytes:
        return _problem(Check.SIZE_LIMIT, f"body of {request.content_length} bytes; the limit is {max_bytes}")
    chunks = []
    received = 0
    try:
        async with asyncio.timeout(timeout):
            while chunk := await request.content.read(CHUNK_BYTES):
                received += len(chunk)
                if received > max_bytes:
                    return _problem(Check.SIZE_LIMIT, f"body exceeds {max_bytes} bytes")
                chunks.append(chunk)
    except TimeoutError:
        request[CLOSE_AFTER_ANSWER] = Check.BODY_TIMEOUT.check_id
        return _problem(Check.BODY_TIMEOUT, f"the body did not arrive within {timeout:g} s ({received} bytes did)")
    return b"".join(chunks)


def _problem(check: Check, detail: str) -> Reply:
    return problem(check.http_status, check.check_id, detail)
