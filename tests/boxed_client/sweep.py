"""The template sweep: every real DUIS template, signed by DCC Boxed's own tool, sent unchanged to a
``--boxed`` gateway, as a DCC Boxed harness would.

For each template: the tool signs it (with the ZAZ1 key of its originator and a fresh counter); it
goes to the path of its command variant; a CV4 answered I0 is followed by its CV5 (the returned
Pre-Command signed with the Boxed supplier's ZAZ1 DS key, the request signed by the tool with the
same RequestID); then every async delivery the gateway POSTs to the user's response URL is
collected. Nothing is judged here: :class:`Outcome` records what happened.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import socket
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree

from gateway.server import create_app
from gateway.clock import Clock
from gateway.gbcs import GeneralSigningApdu, sign_apdu
from gateway.namespaces import DS, SR
from gateway.runtime import open_world
from tests.boxed_client import BoxedClient, ToolResult
from tests.scenario import point_response_urls

_SR = f"{{{SR}}}"
PATHS = {1: "serviceS", 3: "serviceS", 5: "serviceS", 7: "serviceS", 4: "serviceT", 2: "serviceD", 6: "serviceD", 8: "serviceD"}
"""DUIS: which web service takes which command variant (SPEC §5)."""
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True)


@dataclass
class Exchange:
    """One request the harness sent and the gateway's synchronous answer."""

    request: bytes
    status: int
    answer: bytes

    @property
    def code(self) -> str:
        """The DUIS response code, or ``HTTP <status>`` for a problem answer."""
        if self.status != 200:
            return f"HTTP {self.status}"
        found = etree.fromstring(self.answer, _PARSER).findtext(f"{_SR}Header/{_SR}ResponseCode")
        return found or "no code"


@dataclass
class Outcome:
    """What became of one template."""

    name: str
    originator: str
    target: str
    cv: int
    srv: str
    signed: ToolResult
    first: Exchange | None = None
    """The template itself (CV as written), when the tool could sign it."""
    cv5: Exchange | None = None
    """For a CV4 answered I0: the Signed Pre-Command."""
    deliveries: list[bytes] = field(default_factory=list)

    @property
    def request_id(self) -> str | None:
        if not self.signed.ok:
            return None
        return etree.fromstring(self.signed.output, _PARSER).findtext(f"{_SR}Header/{_SR}RequestID")

    @property
    def final(self) -> Exchange | None:
        """The exchange that decides the template: the CV5 after a CV4, else the first."""
        return self.cv5 if self.cv5 is not None else self.first

    @property
    def code(self) -> str:
        """How the template was answered: the final DUIS code, ``HTTP <status>``, or ``unsigned``."""
        final = self.final
        return final.code if final is not None else "unsigned"

    def answers(self) -> list[bytes]:
        """Every signed document the gateway sent about this template (synchronous and async)."""
        sync = [e.answer for e in (self.first, self.cv5) if e is not None and e.status == 200]
        return sync + self.deliveries


def header(document: bytes) -> tuple[str, int, str]:
    root = etree.fromstring(document, _PARSER)
    request_id = root.findtext(f"{_SR}Header/{_SR}RequestID") or ""
    return request_id, int(root.findtext(f"{_SR}Header/{_SR}CommandVariant") or 0), root.findtext(
        f"{_SR}Header/{_SR}ServiceReferenceVariant"
    ) or ""


class Receiver:
    """The users' Receive Response Service: every signed document the gateway POSTs, by RequestID.

    :func:`receiving` runs one on loopback for a world."""

    def __init__(self) -> None:
        self.documents: list[bytes] = []

    async def accept(self, request: web.Request) -> web.Response:
        self.documents.append(await request.read())
        return web.Response()

    def for_request(self, request_id: str) -> list[bytes]:
        needle = f"<sr:RequestID>{request_id}</sr:RequestID>".encode()
        return [document for document in self.documents if needle in document]


@contextlib.asynccontextmanager
async def receiving(world: Path) -> AsyncIterator[Receiver]:
    """A Receiver on a free loopback port, with every response_url of ``world`` pointed at it."""
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/receive/{actor}", receiver.accept)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        point_response_urls(world, port)
        yield receiver
    finally:
        await runner.cleanup()


def signed_precommand_request(cv4_request: bytes, precommand: bytes, key: ec.EllipticCurvePrivateKey) -> bytes:
    """The CV5 for an answered CV4: same header and RequestID, CV 5, the Pre-Command signed with ``key``."""
    root = etree.fromstring(cv4_request, _PARSER)
    for signature in root.findall(f"{{{DS}}}Signature"):
        root.remove(signature)
    root.find(f"{_SR}Header/{_SR}CommandVariant").text = "5"  # type: ignore[union-attr]
    body = root.find(f"{_SR}Body")
    assert body is not None
    original = copy.deepcopy(body[0])
    body.clear()
    signed = etree.SubElement(body, f"{_SR}SignedPreCommand")
    when = original.find(f"{_SR}ExecutionDateTime")
    if when is not None:
        etree.SubElement(signed, f"{_SR}ExecutionDateTime").text = when.text
    apdu = sign_apdu(GeneralSigningApdu.parse(precommand), key)
    etree.SubElement(signed, f"{_SR}GBCSPayload").text = base64.b64encode(apdu.encode()).decode()
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def precommand_of(answer: bytes) -> bytes | None:
    payload = etree.fromstring(answer, _PARSER).findtext(f".//{_SR}PreCommand/{_SR}GBCSPayload")
    return base64.b64decode("".join(payload.split())) if payload else None


async def run_sweep(
    client: BoxedClient,
    world: Path,
    templates: Sequence[Path],
    *,
    clock: Clock,
    receiver: Receiver,
    supplier_ds_key: ec.EllipticCurvePrivateKey,
    settle_seconds: float = 30.0,
    ds_keys: Mapping[str, ec.EllipticCurvePrivateKey] | None = None,
) -> list[Outcome]:
    """Signs every template with the tool, sends each in order, then each CV5, and waits for deliveries.

    A CV5 is signed with ``ds_keys[originator]`` when given, else ``supplier_ds_key``."""
    signed = client.sign([path.read_bytes() for path in templates])
    outcomes = []
    for path, result in zip(templates, signed, strict=True):
        request_id, cv, srv = header(result.output if result.ok else path.read_bytes())
        originator, target, _ = request_id.split(":")
        outcomes.append(Outcome(path.name, originator, target, cv, srv, result))
    app = create_app(open_world(world), clock=clock, store_url=f"sqlite:///{world / 'sweep.db'}")
    async with TestClient(TestServer(app)) as http:

        async def post(path: str, document: bytes) -> Exchange:
            response = await http.post(f"/api/v1/{path}", data=document, headers={"Content-Type": "application/xml"})
            return Exchange(document, response.status, await response.read())

        for outcome in outcomes:
            if outcome.signed.ok:
                outcome.first = await post(PATHS.get(outcome.cv, "serviceS"), outcome.signed.output)
        critical = [o for o in outcomes if o.cv == 4 and o.first is not None and o.first.code == "I0"]
        cv5_requests = []
        for outcome in critical:
            precommand = precommand_of(outcome.first.answer)  # type: ignore[union-attr]
            cv5_requests.append(
                signed_precommand_request(
                    outcome.signed.output, precommand, (ds_keys or {}).get(outcome.originator, supplier_ds_key)
                )
                if precommand
                else None
            )
        resigned = client.sign([r for r in cv5_requests if r is not None], preserve_counter=True)
        resigned_iter = iter(resigned)
        for outcome, cv5 in zip(critical, cv5_requests, strict=True):
            if cv5 is None:
                continue
            tool = next(resigned_iter)
            if tool.ok:
                outcome.cv5 = await post("serviceS", tool.output)
        await _settle(outcomes, receiver, settle_seconds)
    for outcome in outcomes:
        if outcome.request_id is not None:
            outcome.deliveries = receiver.for_request(outcome.request_id)
    return outcomes


async def _settle(outcomes: list[Outcome], receiver: Receiver, seconds: float) -> None:
    """Waits until every accepted request has a delivery, or ``seconds`` have passed."""
    waiting = [o for o in outcomes if o.code == "I99"]
    for _ in range(int(seconds / 0.1)):
        if all(receiver.for_request(o.request_id or "") for o in waiting):
            return
        await asyncio.sleep(0.1)


def counts(outcomes: Sequence[Outcome]) -> Counter[str]:
    return Counter(outcome.code for outcome in outcomes)
