"""``dcc-gateway demo [DIR]``: the SoLR story end to end, against a gateway it starts on loopback.

A supplier with prepayment customers fails. The Authority revokes its
licence, appoints a SoLR and enables the SRP's SoLR Contingency user; an ARO
submits an ADT file; the SRP switches the failed supplier's prepayment meters
to Credit (SMETS1 by CV1, SMETS2 by CV4 then CV5 signed with the failed
supplier's DS key that the SRP holds as its agent); the SoLR confirms the
takeover; the MPIDs transfer. Along the way a careless SRP meets each
refusal (before enablement E3, Prepayment E41, a read E2, over the ADT E43,
after the transfer E4). Alongside, the same weeks without the role: how
many of those meters would have lost supply.

The demo drives the gateway's clock itself (simulated weeks pass in
seconds); everything else goes through HTTP exactly as a harness would.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import itertools
import json
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree

from gateway.app import FLEET, FORWARDER, OUTBOX
from gateway.server import create_app
from gateway.clock import FixedClock
from gateway.demo_plot import DirectiveMark, MeterSeries, Sample
from gateway.devices import AlertKind, MeterState, run_down
from gateway.duis_request import payment_mode_element, request_tree
from gateway.eui64 import Eui64
from gateway.gbcs import GeneralSigningApdu, sign_apdu
from gateway.manifest import Device, Manifest, load_manifest
from gateway.namespaces import SR
from gateway.policy import directives as d
from gateway.runtime import open_world
from gateway.signing import SigningKey, sign_tree, to_bytes
from gateway.world import init_world

START = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.timezone.utc)
HORIZON_DAYS = 28
_SR = f"{{{SR}}}"


@dataclass
class Story:
    """What happened, for the report (and for the demo's test)."""

    events: list[tuple[float, str, str]] = field(default_factory=list)
    """(day, who, what happened)."""
    meters: dict[Eui64, list[tuple[float, str]]] = field(default_factory=dict)
    refusals: dict[str, str] = field(default_factory=dict)
    """Careless request -> the DUIS code it got."""
    with_role: dict[Eui64, str] = field(default_factory=dict)
    """Supply state at the horizon, with the SoLR Contingency role."""
    without_role: dict[Eui64, float | None] = field(default_factory=dict)
    """Day supply would have been lost without the role (None: never within the horizon)."""
    deliveries: list[tuple[str, str]] = field(default_factory=list)
    series: dict[Eui64, MeterSeries] = field(default_factory=dict)
    """Each meter's credit and supply over the horizon, with the role and without it (``--plot``)."""
    directives: list[DirectiveMark] = field(default_factory=list)


class Demo:
    def __init__(self, manifest: Manifest, base: str, session: aiohttp.ClientSession, clock: FixedClock) -> None:
        self.manifest = manifest
        self.base = base
        self.session = session
        self.clock = clock
        self.story = Story()
        self.counter = itertools.count(1000)
        self.samples: dict[Eui64, list[Sample]] = {}
        """The followed meters as the gateway's fleet has them, every six simulated hours."""

    def day(self) -> float:
        return round((self.clock.now() - START).total_seconds() / 86400, 2)

    async def direct(self, actor: str, directive: d.Directive) -> bool:
        issuer = self.manifest.actor(actor)
        directive_id = f"{issuer.user_id}:{self.manifest.gateway.dsp_user_id}:{next(self.counter)}"
        body = to_bytes(sign_tree(d.directive_tree(directive, directive_id), _key(issuer.xml_sign.key, issuer.xml_sign.cert)))
        async with self.session.post(f"{self.base}/api/v1/admin", data=body, headers=_XML) as response:
            answer = json.loads(await response.read())
        verdict = "accepted" if answer["accepted"] else "refused"
        self.story.directives.append(DirectiveMark(self.day(), d.command_name(directive), bool(answer["accepted"])))
        self.story.events.append((self.day(), actor, f"{d.command_name(directive)}: {verdict} ({answer['reason']})"))
        return bool(answer["accepted"])

    async def request(self, actor: str, device: Device, *, cv: int, body: etree._Element, srv: str = "1.6",
                      counter: int | None = None, path: str = "serviceS") -> tuple[str, str, etree._Element]:
        sender = self.manifest.actor(actor)
        root = request_tree(
            originator=sender.user_id,
            target=device.device_id,
            counter=counter or next(self.counter),
            command_variant=cv,
            service_reference_variant=srv,
            body=body,
        )
        data = to_bytes(sign_tree(root, _key(sender.xml_sign.key, sender.xml_sign.cert)))
        async with self.session.post(f"{self.base}/api/v1/{path}", data=data, headers=_XML) as response:
            reply = await response.read()
            reason = response.headers.get("DUIS-Reason", "")
        answer = etree.fromstring(reply)
        code = answer.findtext(f"{_SR}Header/{_SR}ResponseCode") or f"HTTP {response.status}"
        return code, reason, answer

    def note(self, device: Device, what: str) -> None:
        self.story.meters.setdefault(device.device_id, []).append((self.day(), what))

    async def switch_to_credit(self, device: Device) -> str:
        """SMETS1: the SR itself (CV1). SMETS2: CV4 for the Pre-Command, sign it, CV5."""
        if device.smets == 1:
            code, _, _ = await self.request("srp_sc", device, cv=1, body=_credit())
            self.note(device, f"SRP sends SR 1.6 Credit (CV1): {code}")
            return code
        counter = next(self.counter)
        code, _, answer = await self.request("srp_sc", device, cv=4, body=_credit(), counter=counter, path="serviceT")
        if code != "I0":
            self.note(device, f"SRP asks for the Pre-Command (CV4): {code}")
            return code
        payload = base64.b64decode(answer.findtext(f".//{_SR}PreCommand/{_SR}GBCSPayload") or "")
        supplier = self.manifest.actor("failed_supplier_is" if device.type == "ESME" else "failed_supplier_gs")
        signed = sign_apdu(GeneralSigningApdu.parse(payload), _private_key(supplier.digital_signing.key))  # type: ignore[union-attr]
        body = etree.Element(f"{_SR}SignedPreCommand")
        etree.SubElement(body, f"{_SR}GBCSPayload").text = base64.b64encode(signed.encode()).decode()
        code, _, _ = await self.request("srp_sc", device, cv=5, body=body, counter=counter)
        self.note(device, f"SRP: CV4 Pre-Command (I0), signed with {supplier.party}'s DS key as its agent, CV5: {code}")
        return code

    async def advance(self, app: web.Application, days: float) -> None:
        """Moves simulated time, running the meters down (their alerts are routed as they happen)."""
        await self.settle(app)
        target = self.clock.now() + dt.timedelta(days=days)
        while self.clock.now() < target:
            self.clock.set(min(target, self.clock.now() + dt.timedelta(hours=6)))
            await app[FORWARDER].tick()
            await self.settle(app)
            self.sample(app)

    def sample(self, app: web.Application) -> None:
        for device_id, samples in self.samples.items():
            state = app[FLEET].state(device_id)
            if state is not None:
                samples.append(_sample(run_down(state, self.clock.now())[0], self.day()))

    async def settle(self, app: web.Application) -> None:
        """Before simulated time jumps: commands reach their meters, deliveries get their attempt."""
        await app[FORWARDER].drain()
        await app[OUTBOX].run_once()


async def run_demo(world: Path, out: Callable[[str], None] = print, plot: Path | None = None) -> Story:
    manifest = load_manifest(world)
    clock = FixedClock(START)
    received: list[tuple[str, bytes]] = []
    receiver_app = web.Application()

    async def receive(request: web.Request) -> web.Response:
        received.append((request.match_info["actor"], await request.read()))
        return web.Response()

    receiver_app.router.add_post("/receive/{actor}", receive)
    receiver_port = _port_of_response_urls(manifest)
    for stale in world.glob("demo-store.db*"):
        stale.unlink()  # each run tells the story from the start
    gateway_app = create_app(open_world(world), clock=clock, store_url="sqlite:///demo-store.db")
    runners = []
    try:
        for app, port in ((receiver_app, receiver_port), (gateway_app, _free_port())):
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            runners.append((runner, port))
        async with aiohttp.ClientSession() as session:
            demo = Demo(manifest, f"http://127.0.0.1:{runners[1][1]}", session, clock)
            story = await _play(demo, gateway_app)
            await demo.settle(gateway_app)
            story.deliveries = [(actor, _kind(body)) for actor, body in received]
            _note_alerts(demo, received)
    finally:
        for runner, _ in reversed(runners):
            await runner.cleanup()
    _report(story, manifest, out)
    if plot is not None:
        from gateway.demo_plot import write_consumer_impact  # matplotlib only when a picture is asked for

        write_consumer_impact(plot, list(story.series.values()), story.directives, HORIZON_DAYS)
        out(f"\n  plot written to {plot}")
    return story


async def _play(demo: Demo, app: web.Application) -> Story:
    story, manifest = demo.story, demo.manifest
    failed_mpids = set(manifest.party("failed-supplier").mpids)
    meters = [x for x in manifest.devices if x.supplier_mpid in failed_mpids and x.payment_mode == "Prepayment"]
    fleet = app[FLEET]
    initial = {m.device_id: fleet.state(m.device_id) for m in meters}
    sc_user = manifest.actor("srp_sc").user_id
    demo.samples = {meter.device_id: [] for meter in meters}
    demo.sample(app)

    await demo.direct("authority", d.RevokeLicence("failed-supplier"))
    await demo.direct("authority", d.AppointSolr("failed-supplier", "solr-supplier"))
    story.refusals["before enablement"] = (await demo.request("srp_sc", meters[0], cv=1 if meters[0].smets == 1 else 4, body=_credit(), path="serviceS" if meters[0].smets == 1 else "serviceT"))[0]
    await demo.advance(app, 1)
    await demo.direct("authority", d.EnableContingency("failed-supplier", sc_user, START + dt.timedelta(days=60)))
    await demo.direct("srp_aro", d.SubmitAdt("failed-supplier", 7 * 86400, {"1.6": len(meters)}))
    await demo.advance(app, 1)
    for meter in meters:
        await demo.switch_to_credit(meter)
    await demo.settle(app)
    demo.sample(app)  # the switches as they take effect, not six hours later
    smets1 = next(m for m in meters if m.smets == 1)
    story.refusals["Prepayment"] = (await demo.request("srp_sc", smets1, cv=1, body=_prepayment()))[0]
    story.refusals["a read (SRV 4.1.1)"] = (await demo.request("srp_sc", smets1, cv=1, body=_credit(), srv="4.1.1"))[0]
    story.refusals["over the ADT threshold"] = (await demo.request("srp_sc", smets1, cv=1, body=_credit()))[0]
    await demo.advance(app, 18)
    await demo.direct("solr_is", d.ConfirmTakeover("failed-supplier", f"{len(meters)} prepayment meters enrolled",
                                                   "two staff seconded", "SRP holds the keys and the SC user",
                                                   "no device issues known", "four weeks"))
    await demo.advance(app, 1)
    await demo.direct("dcc_operator", d.TransferMpids("failed-supplier", "solr-supplier"))
    await demo.direct("dcc_operator", d.RevokeCertificates("failed-supplier"))
    story.refusals["after the MPID transfer"] = (await demo.request("srp_sc", smets1, cv=1, body=_credit()))[0]
    await demo.advance(app, HORIZON_DAYS - demo.day())
    for meter in meters:
        state = fleet.state(meter.device_id)
        story.with_role[meter.device_id] = state.supply if state else "?"
        story.without_role[meter.device_id] = _day_supply_lost(initial[meter.device_id])
        story.series[meter.device_id] = MeterSeries(
            str(meter.device_id), f"{meter.type} SMETS{meter.smets}",
            tuple(demo.samples[meter.device_id]), _left_alone(initial[meter.device_id]),
        )
    return story


_ALERT_NAMES = {kind.code: kind.value for kind in AlertKind}


def _note_alerts(demo: Demo, received: list[tuple[str, bytes]]) -> None:
    """Adds each meter's delivered alerts (who got them, when) to its timeline."""
    for actor, body in received:
        root = etree.fromstring(body)
        message = root.find(f"{_SR}Body/{_SR}DeviceAlertMessage")
        if message is None:
            continue
        device = Eui64.parse((root.findtext(f"{_SR}Header/{_SR}ResponseID") or "").split(":")[0])
        code = int(message.findtext(f"{_SR}AlertCode") or "0", 16)
        when = dt.datetime.fromisoformat((root.findtext(f"{_SR}Header/{_SR}ResponseDateTime") or "").replace("Z", "+00:00"))
        demo.story.meters.setdefault(device, []).append(
            (round((when - START).total_seconds() / 86400, 2), f"alert {_ALERT_NAMES.get(code, hex(code))} -> {actor}")
        )
    for notes in demo.story.meters.values():
        notes.sort()


def _day_supply_lost(state: object) -> float | None:
    """Runs an untouched copy of the meter down day by day: when would it have lost supply?"""
    if state is None:
        return None
    for hours in range(0, HORIZON_DAYS * 24 + 1, 6):
        later, _ = run_down(state, START + dt.timedelta(hours=hours))  # type: ignore[arg-type]
        if later.supply == "Disabled":
            return round(hours / 24, 2)
    return None


def _left_alone(state: MeterState | None) -> tuple[Sample, ...]:
    """The meter without the role: its installed state run down every six hours of the horizon."""
    if state is None:
        return ()
    return tuple(
        _sample(run_down(state, START + dt.timedelta(hours=hours))[0], round(hours / 24, 2))
        for hours in range(0, HORIZON_DAYS * 24 + 1, 6)
    )


def _sample(state: MeterState, day: float) -> Sample:
    return Sample(day, state.credit_pence, state.emergency_credit_pence, state.supply, state.payment_mode)


def _report(story: Story, manifest: Manifest, out: Callable[[str], None]) -> None:
    out("SoLR Contingency demo: a supplier fails; its prepayment customers stay on supply\n")
    out("Timeline")
    for day, who, what in story.events:
        out(f"  day {day:5.2f}  {who:<13} {what}")
    out("\nPer meter (the failed supplier's prepayment meters)")
    devices = {x.device_id: x for x in manifest.devices}
    for meter, notes in story.meters.items():
        device = devices[meter]
        out(f"  {meter} {device.type} SMETS{device.smets}, {device.credit_pence} p at install")
        for day, what in notes:
            out(f"      day {day:5.2f}  {what}")
    out("\nCareless SRP")
    for what, code in story.refusals.items():
        out(f"  {what:<26} -> {code}")
    out(f"\nSummary at day {HORIZON_DAYS}")
    out(f"  {'meter':<24} {'type':<5} {'SMETS':<6} {'with SC role':<14} without the role")
    for meter, supply in story.with_role.items():
        device = devices[meter]
        lost = story.without_role[meter]
        without = f"supply lost on day {lost}" if lost is not None else "still on supply"
        out(f"  {str(meter):<24} {device.type:<5} {device.smets:<6} {supply:<14} {without}")
    lost = [m for m, day in story.without_role.items() if day is not None]
    kept = [m for m, supply in story.with_role.items() if supply == "Enabled"]
    out(f"\n  with the role: {len(kept)} of {len(story.with_role)} meters on supply; "
        f"without it: {len(lost)} of {len(story.without_role)} would have lost supply within {HORIZON_DAYS} days")
    kinds: dict[str, int] = {}
    for actor, kind in story.deliveries:
        kinds[f"{kind} -> {actor}"] = kinds.get(f"{kind} -> {actor}", 0) + 1
    out("  delivered: " + ", ".join(f"{count} {what}" for what, count in sorted(kinds.items())))


# --- helpers --------------------------------------------------------------------------------------------

_XML = {"Content-Type": "application/xml"}


def _credit() -> etree._Element:
    return payment_mode_element("Credit")


def _prepayment() -> etree._Element:
    return payment_mode_element("Prepayment")


def _key(key: Path, cert: Path) -> SigningKey:
    return SigningKey.load(key, cert)


def _private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path}: not an EC key")
    return key


def _kind(body: bytes) -> str:
    root = etree.fromstring(body)
    message = root.find(f"{_SR}Body")[0]  # type: ignore[index]
    return etree.QName(message).localname


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_of_response_urls(manifest: Manifest) -> int:
    from urllib.parse import urlparse

    ports = {urlparse(a.response_url).port for a in manifest.actors.values() if a.response_url}
    if len(ports) != 1:
        raise SystemExit("the demo expects one local receiver for every response_url")
    return int(ports.pop() or 80)


def main(directory: Path | None, out: Callable[[str], None] = print, plot: Path | None = None) -> Story:
    """``plot``: also write the consumer-impact picture there (PNG or SVG, from its name)."""
    if directory is None:
        with tempfile.TemporaryDirectory() as scratch:
            world = Path(scratch) / "world"
            init_world(world, devices=20)
            return asyncio.run(run_demo(world, out, plot))
    if not (directory / "manifest.json").exists():
        init_world(directory, devices=20)
    return asyncio.run(run_demo(directory, out, plot))

