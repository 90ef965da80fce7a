"""The 297 real DUIS templates, re-addressed to the default world, signed with its keys and sent.

Re-addressing, as a harness moved from DCC Boxed to a generated world would do it: every template
is sent by the failed supplier (its ``IS`` user to an electricity device or one of both fuels, its
``GS`` user to a gas meter or gas proxy), to one of its SMETS2 meters (ESME, or GSME for gas: the
default world has no comms hubs, proxies, PPMIDs or load switches, so the premises' meter stands
for them), and every DCC Boxed device ID in the body becomes that meter; non-device requests go to
the world's DCC. A CV4 answered I0 is followed by its CV5, signed with the failed supplier's DS key.

The contract: nothing is refused but for role eligibility (E2: the failed supplier's role may not
send that SRV); every accepted device request gets an I0 whose ``GBCSPayload`` the project's GBCS
reader reads as a response of the use case the catalogue picks for that request, from that meter to
that user for that request's counter, and the same in envelope, content kind and message code as
the catalogue's RTDS vector. The counts by code are printed (``-s``).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree

from gateway.clock import SystemClock
from gateway.eui64 import Eui64
from gateway.gbcs import CraFlag
from gateway.gbcs.reader import read_message
from gateway.gbcs.rtds import RTDS_DEVICE_TYPES, RtdsCatalogue, VectorKind
from gateway.manifest import Device, Manifest
from gateway.namespaces import SR
from gateway.schema import load_schemas
from gateway.signing import SigningKey, sign_tree, to_bytes
from gateway.checks import VerificationError
from gateway.world import init_world
from tests.boxed_client import ToolResult
from tests.boxed_client.sweep import Outcome, counts, receiving, run_sweep
from tests.shared_data import shared_path

_SR = f"{{{SR}}}"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True)
_BOXED_ID = re.compile(r"00-DB-12-34-56-78-90-A[0-6]", re.IGNORECASE)
_GAS = frozenset({"GSME", "GPF"})
_BOXED_DSP = "90-B3-D5-1F-30-00-00-02"


@dataclass(frozen=True)
class Addressed:
    """A template as re-addressed: the bytes to sign, and the meter it now targets."""

    name: str
    document: bytes
    meter: Device | None


class WorldSigner:
    """Signs as the sweep's client would, with the world's keys: a fresh counter unless told to keep it."""

    def __init__(self, manifest: Manifest) -> None:
        self._keys = {
            str(actor.user_id): SigningKey.load(actor.xml_sign.key, actor.xml_sign.cert)
            for actor in manifest.actors.values()
            if actor.role is not None
        }
        self._counters = itertools.count(1_700_000_000_000)

    def sign(self, documents: Sequence[bytes], *, preserve_counter: bool = False) -> list[ToolResult]:
        return [self._sign(document, preserve_counter) for document in documents]

    def _sign(self, document: bytes, preserve_counter: bool) -> ToolResult:
        root = etree.fromstring(document, _PARSER)
        request_id = root.find(f"{_SR}Header/{_SR}RequestID")
        assert request_id is not None and request_id.text
        originator, target, counter = request_id.text.split(":")
        if not preserve_counter:
            request_id.text = f"{originator}:{target}:{next(self._counters)}"
        return ToolResult(0, to_bytes(sign_tree(root, self._keys[originator])), "")


def _meters(manifest: Manifest) -> dict[str, Device]:
    def first(device_type: str, mpid: str) -> Device:
        return next(d for d in manifest.devices if (d.type, d.smets, d.supplier_mpid) == (device_type, 2, mpid))

    return {"electricity": first("ESME", "FAIL"), "gas": first("GSME", "FALG")}


def readdress(template: Path, manifest: Manifest) -> Addressed:
    """The template sent by the failed supplier to its meter of the template's fuel (see the module docstring)."""
    text = template.read_text(encoding="utf-8")
    root = etree.fromstring(text.encode(), _PARSER)
    request_id = root.findtext(f"{_SR}Header/{_SR}RequestID") or ""
    _, target, counter = request_id.split(":")
    boxed_type = RTDS_DEVICE_TYPES.get(Eui64.parse(target))
    fuel = "gas" if boxed_type in _GAS else "electricity"
    user = manifest.actor("failed_supplier_gs" if fuel == "gas" else "failed_supplier_is")
    meter = None if target.upper() == _BOXED_DSP else _meters(manifest)[fuel]
    new_target = str(manifest.gateway.dsp_user_id) if meter is None else str(meter.device_id)
    body_meter = str(_meters(manifest)[fuel].device_id)
    text = text.replace(request_id, f"{user.user_id}:{new_target}:{counter}")
    text = _BOXED_ID.sub(body_meter, text)
    return Addressed(template.name, text.encode(), meter)


SUPPLIER_USERS = ("failed_supplier_is", "failed_supplier_gs")


def _ds_key(manifest: Manifest, actor: str) -> ec.EllipticCurvePrivateKey:
    pair = manifest.actor(actor).digital_signing
    assert pair is not None
    key = serialization.load_pem_private_key(pair.key.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


async def _run(world: Path, manifest: Manifest, addressed: list[Addressed], folder: Path) -> list[Outcome]:
    async with receiving(world) as receiver:
        keys = {str(manifest.actor(name).user_id): _ds_key(manifest, name) for name in SUPPLIER_USERS}
        paths = []
        for item in addressed:
            path = folder / item.name
            path.write_bytes(item.document)
            paths.append(path)
        return await run_sweep(
            WorldSigner(manifest), world, paths, clock=SystemClock(), receiver=receiver,  # type: ignore[arg-type]
            supplier_ds_key=keys[str(manifest.actor("failed_supplier_is").user_id)], ds_keys=keys,
        )  # fmt: skip


@dataclass(frozen=True)
class Sweep:
    manifest: Manifest
    catalogue: RtdsCatalogue
    addressed: dict[str, Addressed]
    outcomes: list[Outcome]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Sweep:
    templates = sorted(shared_path("duis", "templates").iterdir())
    catalogue = RtdsCatalogue.load(shared_path("gbcs", "rtds-4.5.0"))
    world = tmp_path_factory.mktemp("default-sweep") / "world"
    manifest = init_world(world)
    addressed = [readdress(template, manifest) for template in templates]
    folder = tmp_path_factory.mktemp("readdressed")
    outcomes = asyncio.run(_run(world, manifest, addressed, folder))
    print(f"\ndefault-world template sweep: {dict(sorted(counts(outcomes).items()))}")
    return Sweep(manifest, catalogue, {a.name: a for a in addressed}, outcomes)


def test_every_template_is_sent_and_nothing_is_refused_but_for_role_eligibility(sweep: Sweep) -> None:
    assert len(sweep.outcomes) == 297
    codes = counts(sweep.outcomes)
    assert set(codes) <= {"I0", "I99", "E2"}, codes
    assert codes["I99"] >= 250
    undelivered = [o.name for o in sweep.outcomes if o.code == "I99" and not any(b"<sr:ResponseCode>I0<" in d for d in o.deliveries)]
    assert undelivered == []


def test_a_critical_request_goes_through_its_pre_command(sweep: Sweep) -> None:
    """Every CV4 the role may send is answered with its use case's Pre-Command, addressed from the user to
    the meter for the request's counter, and its CV5 signed with the supplier's DS key is accepted."""
    critical = [o for o in sweep.outcomes if o.cv == 4 and o.code != "E2"]
    assert len(critical) >= 90
    assert [o.name for o in critical if o.cv5 is None] == []
    through = [o for o in sweep.outcomes if o.cv5 is not None]
    assert {o.cv5.code for o in through if o.cv5 is not None} == {"I99"}
    for outcome in through:
        assert outcome.first is not None
        precommand = etree.fromstring(outcome.first.answer, _PARSER).findtext(f".//{_SR}PreCommand/{_SR}GBCSPayload")
        message = read_message(base64.b64decode(precommand or ""))
        counter = int((outcome.request_id or "::0").split(":")[2])
        assert (message.cra_flag, message.counter) == (CraFlag.COMMAND, counter), outcome.name
        assert (str(message.originator), str(message.recipient)) == (outcome.originator, outcome.target), outcome.name


def test_each_device_answer_reads_as_its_use_case_from_that_meter(sweep: Sweep) -> None:
    checked = 0
    wrong: dict[str, str] = {}
    for outcome in sweep.outcomes:
        addressed = sweep.addressed[outcome.name]
        if outcome.code != "I99" or addressed.meter is None:
            continue
        results = [d for d in outcome.deliveries if b"<sr:ResponseCode>I0<" in d]
        payloads = [payload for d in results if (payload := _payload(d)) is not None]
        if not payloads:
            wrong[outcome.name] = "no I0 with a GBCSPayload"
            continue
        got = read_message(payloads[0])
        body = etree.fromstring(addressed.document, _PARSER).find(f"{_SR}Body")
        assert body is not None
        use_case = sweep.catalogue.use_case_for(outcome.srv, addressed.meter.type, body[0])
        assert use_case is not None, outcome.name
        vector = sweep.catalogue.vector(use_case, VectorKind.RESPONSE, addressed.meter.type, body[0])
        assert vector is not None, outcome.name
        counter = int((outcome.request_id or "::0").split(":")[2])
        facts = (got.cra_flag, str(got.originator), str(got.recipient), got.counter, got.message_code,
                 got.envelope, got.content_kind)  # fmt: skip
        want = (CraFlag.RESPONSE, outcome.target, outcome.originator, counter, vector.message.message_code,
                vector.message.envelope, vector.message.content_kind)  # fmt: skip
        if facts != want:
            wrong[outcome.name] = f"{facts} != {want}"
        checked += 1
    assert wrong == {}
    assert checked >= 250


def _payload(document: bytes) -> bytes | None:
    text = etree.fromstring(document, _PARSER).findtext(f"{_SR}Body/{_SR}ResponseMessage/{_SR}GBCSPayload")
    return None if text is None else base64.b64decode("".join(text.split()))


def test_every_answer_and_delivery_is_valid_under_the_official_duis_xsd(sweep: Sweep) -> None:
    schemas = load_schemas(shared_path("duis", "xsd", "DUIS-Schema-V5.4.xsd"))
    documents = [document for outcome in sweep.outcomes for document in outcome.answers()]
    assert len(documents) > 500
    invalid = {}
    for document in documents:
        try:
            schemas.validate(etree.fromstring(document, _PARSER))
        except VerificationError as error:
            invalid[document[200:400]] = str(error.detail)[-300:]
    assert invalid == {}


def test_non_device_requests_are_answered_with_the_payload_the_xsd_defines(sweep: Sweep) -> None:
    by_name = {o.name: o for o in sweep.outcomes}
    expected = {"8.2_READ_INVENTORY_REQUEST_DUIS.XML": "DSPInventory", "ECS21a_5.1._DCC_SCHEDULED_REQUEST_DUIS.XML": "DSPScheduleID"}
    for name, payload in expected.items():
        outcome = by_name[name]
        results = [etree.fromstring(d, _PARSER) for d in outcome.deliveries if b"<sr:ResponseCode>I0<" in d]
        assert [r.find(f"{_SR}Body/{_SR}ResponseMessage/{_SR}{payload}") is not None for r in results] == [True], name
    inventory = etree.fromstring(by_name["8.2_READ_INVENTORY_REQUEST_DUIS.XML"].deliveries[0], _PARSER)
    meter = _meters(sweep.manifest)["electricity"]
    device = inventory.find(f"{_SR}Body/{_SR}ResponseMessage/{_SR}DSPInventory/{_SR}Device")
    assert device is not None
    assert (device.findtext(f"{_SR}DeviceID"), device.findtext(f"{_SR}DeviceType"), device.findtext(f"{_SR}ImportMPxN")) == (
        str(meter.device_id), meter.type, meter.mpxn
    )
