"""``dcc-gateway demo [DIR]``: the SoLR story end to end, against a gateway it starts on loopback.

A supplier with prepayment customers fails. The Authority revokes its
licence and appoints a SoLR; the PMA delays the revocation of the failed
supplier's certificates (MP134A). Meter by meter, the SRP, as the failed
supplier's agent holding its keys, reads each meter's balance (SR 4.18),
grants emergency credit where the customer is below its threshold (SR 2.5:
SMETS1 by CV1, SMETS2 by CV4 then CV5 signed with the supplier's DS key)
and tops it up with a UTRN vended under the supplier's prepayment key (SR
2.2; the same UTRN sent twice is refused by the meter). Then MP134B: the
Authority enables the SRP's SoLR Contingency user; an ARO submits an ADT
file; the ``SC`` user switches the failed supplier's prepayment meters to
Credit (SMETS1 by CV1, SMETS2 by CV4 then CV5 signed with the failed
supplier's DS key that the SRP holds as its agent); the SoLR confirms the
takeover; the MPIDs transfer. Along the way a careless SRP meets each
refusal (before enablement E3, Prepayment E41, a read E2, over the ADT E43,
after the transfer E4). Alongside, the same weeks without the role: how
many of those meters would have lost supply.

Deliveries are at least once: results are counted by RequestID, never by delivery.

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
from gateway.devices.utrn import originator_counter, vend_utrn
from gateway.gbcs import GeneralCipheringApdu, GeneralSigningApdu, sign_apdu
from gateway.manifest import Actor, Device, Manifest, load_manifest
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
    """(actor, message kind) of every delivery, duplicates included (delivery is at least once)."""
    results: dict[str, set[str]] = field(default_factory=dict)
    """Actor -> the distinct RequestIDs whose async result (a ResponseMessage) reached it."""
    prepayment: dict[Eui64, list[str]] = field(default_factory=dict)
    """MP134A, per meter: what the SRP did as the supplier's agent and what the meter answered."""
    series: dict[Eui64, MeterSeries] = field(default_factory=dict)
    """Each meter's credit and supply over the horizon, with the role and without it (``--plot``)."""
    directives: list[DirectiveMark] = field(default_factory=list)


class Demo:
    def __init__(
        self,
        manifest: Manifest,
        base: str,
        session: aiohttp.ClientSession,
        clock: FixedClock,
        received: list[tuple[str, bytes]] | None = None,
    ) -> None:
        self.manifest = manifest
        self.base = base
        self.session = session
        self.clock = clock
        self.received = received if received is not None else []
        """What the users' receivers got (actor, signed document), as it arrives."""
        self.utrn_counters = itertools.count(1)
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
            if response.content_type == "application/problem+json":  # e.g. a simulator limit (501)
                problem = json.loads(reply)
                return f"HTTP {response.status} {problem.get('check', '')}", str(problem.get("detail", "")), etree.Element("problem")
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
        code, step = await self.critical("srp_sc", device, _credit(), "1.6")
        self.note(device, f"SRP: {step}")
        return code

    async def critical(self, actor: str, device: Device, body: etree._Element, srv: str) -> tuple[str, str]:
        """CV4 for the Pre-Command, signed with the failed supplier's DS key (the SRP holds it as its
        agent), then CV5: the final DUIS code and what happened."""
        counter = next(self.counter)
        code, _, answer = await self.request(actor, device, cv=4, body=body, srv=srv, counter=counter, path="serviceT")
        if code != "I0":
            return code, f"asks for the SR {srv} Pre-Command (CV4): {code}"
        payload = base64.b64decode(answer.findtext(f".//{_SR}PreCommand/{_SR}GBCSPayload") or "")
        supplier = self.supplier_of(device)
        signed = sign_apdu(GeneralSigningApdu.parse(payload), _private_key(supplier.digital_signing.key))  # type: ignore[union-attr]
        signed_body = etree.Element(f"{_SR}SignedPreCommand")
        etree.SubElement(signed_body, f"{_SR}GBCSPayload").text = base64.b64encode(signed.encode()).decode()
        code, _, _ = await self.request(actor, device, cv=5, body=signed_body, srv=srv, counter=counter)
        return code, f"CV4 Pre-Command (I0), signed with {supplier.party}'s DS key as its agent, CV5: {code}"

    def supplier_of(self, device: Device) -> Actor:
        return self.manifest.actor("failed_supplier_is" if device.type == "ESME" else "failed_supplier_gs")

    async def view(self, device: Device) -> dict[str, object]:
        """``GET /sim/devices/{id}``, as a harness sees the meter."""
        async with self.session.get(f"{self.base}/sim/devices/{device.device_id}") as response:
            view: dict[str, object] = await response.json()
            return view

    async def keep_on_supply(self, app: web.Application, device: Device) -> None:
        """MP134A: the SRP, with the failed supplier's keys, reads the balance, grants emergency
        credit if the customer is below its threshold, and tops the meter up."""
        supplier = self.supplier_of(device)
        as_agent = supplier.name
        done = self.story.prepayment.setdefault(device.device_id, [])
        code, _, _ = await self.request(as_agent, device, cv=1, srv="4.18", body=etree.Element(f"{_SR}ReadMeterBalance"))
        await self.settle(app)
        reported = _reported_balance(self.received, device)
        done.append(f"4.18 Read Meter Balance: {code}; the meter reports {reported}")
        view = await self.view(device)
        if int(view["credit_pence"]) < int(view["low_credit_threshold_pence"]) and not view["emergency_credit_active"]:  # type: ignore[call-overload]
            body = etree.Element(f"{_SR}ActivateEmergencyCredit")
            if device.smets == 1:
                code, _, _ = await self.request(as_agent, device, cv=1, srv="2.5", body=body)
                step = f"SR 2.5 (CV1): {code}"
            else:
                code, step = await self.critical(as_agent, device, body, "2.5")
            await self.settle(app)
            granted = (await self.view(device))["emergency_credit_active"]
            outcome = "granted" if granted else "refused by the meter (none left: the customer used it up)"
            done.append(f"2.5 Activate Emergency Credit, {step}; {outcome}")
        view = await self.view(device)
        pence = TOP_UP_PENCE + int(view["debt_pence"])  # type: ignore[call-overload]  # the emergency credit used is repaid first
        utrn, counter = self.vend(supplier, device, pence, view)
        code, _, _ = await self.request(as_agent, device, cv=1, srv="2.2", body=_top_up(utrn), counter=counter)
        await self.settle(app)
        after = await self.view(device)
        done.append(f"2.2 Top Up {pence}p, UTRN {utrn}: {code}; credit now {after['credit_pence']}p, supply {after['supply']}")
        if len(self.story.prepayment) == 1:  # once: the same UTRN again is the meter's to refuse
            code, _, _ = await self.request(as_agent, device, cv=1, srv="2.2", body=_top_up(utrn), counter=counter + 1)
            await self.settle(app)
            again = await self.view(device)
            done.append(f"the same UTRN again: {code}, refused by the meter (replay); credit still {again['credit_pence']}p")
        self.note(device, f"SRP as the supplier's agent (MP134A): {len(done)} requests, credit now {after['credit_pence']}p")

    def vend(self, supplier: Actor, device: Device, pence: int, view: dict[str, object]) -> tuple[str, int]:
        """A UTRN from the supplier's prepayment key, and the RequestID counter that carries it."""
        if supplier.prepayment_key_agreement is None:
            raise SystemExit(f"{supplier.name} has no prepayment key-agreement key: run init again")
        meter_key = ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), bytes.fromhex(str(view["key_agreement_public_key"]))
        )
        counter = next(self.utrn_counters)
        utrn = vend_utrn(
            supplier_prepayment_key=_private_key(supplier.prepayment_key_agreement.key),
            meter_key_agreement=meter_key,
            originator=supplier.user_id,
            target=device.device_id,
            utrn_counter=counter,
            value=pence,
        )
        return utrn, originator_counter(counter)

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
            demo = Demo(manifest, f"http://127.0.0.1:{runners[1][1]}", session, clock, received)
            story = await _play(demo, gateway_app)
            await demo.settle(gateway_app)
            story.deliveries = [(actor, _kind(body)) for actor, body in received]
            story.results = _results_by_request(received)
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
    await demo.direct("pma", d.DelayRevocation("failed-supplier", START + dt.timedelta(days=20), _PMA_CONSIDERED))
    story.refusals["before enablement"] = (await demo.request("srp_sc", meters[0], cv=1 if meters[0].smets == 1 else 4, body=_credit(), path="serviceS" if meters[0].smets == 1 else "serviceT"))[0]
    await demo.advance(app, 1)
    for meter in meters:  # MP134A: the SRP keeps each customer on supply with the supplier's keys
        await demo.keep_on_supply(app, meter)
    demo.sample(app)
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
    out("\nMP134A: the SRP, as the failed supplier's agent with its keys, meter by meter")
    for meter, steps in story.prepayment.items():
        device = devices[meter]
        out(f"  {meter} {device.type} SMETS{device.smets}")
        for step in steps:
            out(f"      {step}")
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
    out("  delivered (at least once each): " + ", ".join(f"{count} {what}" for what, count in sorted(kinds.items())))
    out("  results by RequestID: " + ", ".join(f"{len(ids)} -> {actor}" for actor, ids in sorted(story.results.items())))


# --- helpers --------------------------------------------------------------------------------------------

_XML = {"Content-Type": "application/xml"}
TOP_UP_PENCE = 500
_PMA_CONSIDERED = (
    "the failed supplier ceases to be eligible for certificates; its Customer Supply Continuity Plan; "
    "the SRP holds its keys and can send requests; a disorderly exit; prepayment customers on the estate; "
    "revocation would leave them unable to top up"
)


def _top_up(utrn: str) -> etree._Element:
    body = etree.Element(f"{_SR}TopUpDevice")
    etree.SubElement(body, f"{_SR}UTRN").text = utrn
    return body


def _results_by_request(received: list[tuple[str, bytes]]) -> dict[str, set[str]]:
    """Actor -> distinct RequestIDs of the async results it received (a re-delivery counts once)."""
    results: dict[str, set[str]] = {}
    for actor, body in received:
        root = etree.fromstring(body)
        if root.find(f"{_SR}Body/{_SR}ResponseMessage") is not None:
            results.setdefault(actor, set()).add(root.findtext(f"{_SR}Header/{_SR}RequestID") or "")
    return results


def _reported_balance(received: list[tuple[str, bytes]], device: Device) -> str:
    """The balance in the meter's latest SR 4.18 answer, read from its GBCS payload (ECS82/GCS60)."""
    for _actor, body in reversed(received):
        root = etree.fromstring(body)
        message = root.find(f"{_SR}Body/{_SR}ResponseMessage")
        request_id = root.findtext(f"{_SR}Header/{_SR}RequestID") or ""
        if message is None or message.findtext(f"{_SR}ServiceReferenceVariant") != "4.18":
            continue
        if request_id.split(":")[1:2] != [str(device.device_id)]:
            continue
        content = GeneralCipheringApdu.parse(base64.b64decode(message.findtext(f"{_SR}GBCSPayload") or "")).payload.content
        if device.type == "ESME":  # DA, invoke id, 00 00, 01 data, 05 double-long
            pence = int.from_bytes(content[9:13], "big", signed=True) // 1000
        else:  # the last attribute: Prepayment Credit Remaining (int32, little-endian)
            pence = int.from_bytes(content[-4:], "little", signed=True) // 1000
        return f"{pence}p in its GBCS answer"
    return "nothing (no answer yet)"


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

