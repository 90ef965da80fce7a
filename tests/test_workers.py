"""``serve --workers 2`` on the real PostgreSQL server (issue #5): two processes, one truth.

Connections are spread over the workers by the kernel (SO_REUSEPORT); every
request here comes on a connection of its own, so both workers take part (the
test checks both logged requests). What must hold whichever worker answers:

* concurrent copies of one signed request -> exactly one I99, the rest E40;
* an ADT threshold of k -> exactly k accepted in the window, the rest E43;
* the accepted commands are executed (each by the worker whose shard holds its meter) and their
  results delivered;
* either worker shows a meter as the worker running it stored it (its command executed).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
import signal
from pathlib import Path

import aiohttp
import pytest

from tests.store_backends import PostgresOpener, fresh_schema_name, postgres_server_url, require_postgres
from tests.test_crash import Prepared, Receiver, free_port, prepare_requests, prepare_world, start_gateway

ADT_THRESHOLD = 5
_RESPONSE_CODE = re.compile(rb"<sr:ResponseCode>([^<]+)</sr:ResponseCode>")


async def post_alone(url: str, body: bytes) -> str:
    """One request on a connection of its own (so the kernel may hand it to either worker)."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        async with session.post(url, data=body, headers={"Content-Type": "application/xml"}) as reply:
            match = _RESPONSE_CODE.search(await reply.read())
            return match.group(1).decode() if match else f"HTTP {reply.status}"


async def get_alone(url: str) -> dict[str, object]:
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session, session.get(url) as reply:
        assert reply.status == 200
        return await reply.json()  # type: ignore[no-any-return]


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A fresh schema on the test server for the gateway's store, dropped afterwards."""
    server = postgres_server_url()
    await require_postgres(server)
    opener = PostgresOpener(server, fresh_schema_name())
    yield opener.url
    await opener.drop_schema()


async def test_two_workers_share_counters_windows_queue_and_meters(tmp_path: Path, postgres_url: str) -> None:
    receiver = Receiver()
    runner, receiver_port = await receiver.serve()
    world = tmp_path / "world"
    manifest = prepare_world(world, receiver_port, adt_threshold=ADT_THRESHOLD)
    requests = prepare_requests(manifest, 1 + 2 * ADT_THRESHOLD)
    port = free_port()
    log = tmp_path / "gateway.log"
    process = await asyncio.to_thread(start_gateway, world, port, "--store", postgres_url, "--workers", "2", log=log)
    base = f"http://127.0.0.1:{port}"
    try:
        await _both_workers_listening(log)  # the port answers once the first one does
        copies = await asyncio.gather(*(post_alone(f"{base}/api/v1/serviceS", requests[0].body) for _ in range(16)))
        assert sorted(copies) == ["E40"] * 15 + ["I99"]

        # one meter's requests in counter order (no replays), meters at once, each request on its own connection
        answers: dict[str, str] = {}

        async def send_in_order(queue: list[Prepared]) -> None:
            for prepared in queue:
                answers[prepared.request_id] = await post_alone(f"{base}/api/v1/serviceS", prepared.body)

        by_meter: dict[str, list[Prepared]] = {}
        for prepared in requests[1:]:
            by_meter.setdefault(prepared.target, []).append(prepared)
        await asyncio.gather(*(send_in_order(queue) for queue in by_meter.values()))
        codes = sorted(answers.values())
        assert codes.count("I99") == ADT_THRESHOLD - 1  # the first request counts in the window too
        assert codes.count("E43") == len(codes) - (ADT_THRESHOLD - 1)

        accepted = [requests[0].request_id] + [request_id for request_id, code in answers.items() if code == "I99"]
        for _ in range(300):
            if all(receiver.results[request_id] >= 1 for request_id in accepted):
                break
            await asyncio.sleep(0.1)
        assert all(receiver.results[request_id] >= 1 for request_id in accepted), "results were not delivered"

        executed_meter = requests[0].target
        views = await asyncio.gather(*(get_alone(f"{base}/sim/devices/{executed_meter}") for _ in range(8)))
        # whichever worker answered, it shows what the meter's worker stored: the command was executed
        assert all(requests[0].request_id in view["executed_request_ids"] for view in views)
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 60) == 0
        await runner.cleanup()
    text = log.read_text()
    assert re.search(r'\[worker 0\] \{"path":"serviceS"', text) and re.search(r'\[worker 1\] \{"path":"serviceS"', text)


async def _both_workers_listening(log: Path) -> None:
    for _ in range(600):
        text = log.read_text(errors="replace")
        if all(f"worker {index} of 2 serving" in text for index in (0, 1)):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the two workers did not both start:\n{log.read_text(errors='replace')}")
