"""Top-ups, emergency credit and the balance over real HTTP: the meter changes, answers in GBCS, and remembers.

A harness vends UTRNs as a supplier does: with the supplier's prepayment key-agreement
key (``manifest.json``) and the meter's key-agreement public key (``/sim/devices``).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree

from gateway.app import RUNTIME
from gateway.server import create_app
from gateway.cli import main as cli_main
from gateway.devices.utrn import originator_counter, vend_utrn
from gateway.eui64 import Eui64
from gateway.gbcs import GeneralCipheringApdu, GeneralSigningApdu, sign_apdu, verify_apdu_signature
from gateway.manifest import Device
from gateway.namespaces import SR
from gateway.runtime import open_world
from gateway.world import init_world
from tests.scenario import make_scenario
from tests.test_service_http import Harness, Receiver, receiver_server, signed_precommand_body, world_sending_to

_SR = f"{{{SR}}}"


@pytest.fixture(scope="module")
def prepay_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("prepay-world")
    init_world(directory, devices=16, seed="prepay-tests")
    return directory


@pytest.fixture
async def gateway(prepay_world: Path, tmp_path: Path) -> AsyncIterator[tuple[Harness, Receiver, Path]]:
    receiver = Receiver()
    async with receiver_server(receiver) as server:
        world = world_sending_to(prepay_world, tmp_path / "world", server.port)
        scenario = make_scenario(world)
        app = create_app(open_world(world), clock=scenario.clock, store_url=f"sqlite:///{tmp_path / 'store.db'}")
        async with TestClient(TestServer(app)) as client:
            yield Harness(client, scenario), receiver, world


def _meter(h: Harness, device_type: str, smets: int) -> Device:
    return next(
        d for d in h.scenario.devices(mpid_of="failed-supplier", device_type=device_type, smets=smets)
        if d.payment_mode == "Prepayment"
    )  # fmt: skip


def _supplier(device: Device) -> str:
    return "failed_supplier_is" if device.type == "ESME" else "failed_supplier_gs"


async def _view(h: Harness, device: Device) -> dict[str, object]:
    response = await h.client.get(f"/sim/devices/{device.device_id}")
    assert response.status == 200
    view: dict[str, object] = await response.json()
    return view


async def _utrn(h: Harness, device: Device, counter: int, pence: int) -> str:
    supplier = h.scenario.actor(_supplier(device))
    assert supplier.prepayment_key_agreement is not None
    key = serialization.load_pem_private_key(supplier.prepayment_key_agreement.key.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    point = bytes.fromhex(str((await _view(h, device))["key_agreement_public_key"]))
    return vend_utrn(
        supplier_prepayment_key=key,
        meter_key_agreement=ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point),
        originator=supplier.user_id,
        target=device.device_id,
        utrn_counter=counter,
        value=pence,
    )


def _top_up_body(utrn: str) -> etree._Element:
    body = etree.Element(f"{_SR}TopUpDevice")
    etree.SubElement(body, f"{_SR}UTRN").text = utrn
    return body


async def _result(h: Harness, receiver: Receiver, request_counter: int) -> tuple[str, bytes]:
    """The async result of the request with that counter: its DUIS code and its GBCS payload."""
    for _ in range(100):
        for _actor, body in receiver.received:
            answer = h.read_answer(body)
            request_id = answer.request_id
            if request_id is not None and request_id.counter == request_counter and etree.QName(answer.body).localname == "ResponseMessage":
                payload = answer.body.findtext(f"{_SR}GBCSPayload") or ""
                return answer.response_code, base64.b64decode(payload)
        await receiver.wait_for(len(receiver.received) + 1)
    pytest.fail(f"no result for counter {request_counter}")


async def _audit(h: Harness, request_counter: int) -> list[tuple[str, str]]:
    store = h.client.app[RUNTIME].store  # type: ignore[union-attr]
    return [
        (record.entry.outcome, record.entry.reason)
        async for record in store.audit_records()
        if record.entry.kind == "device-result" and record.entry.subject.endswith(f":{request_counter}")
    ]


@pytest.mark.parametrize(("device_type", "smets"), [("ESME", 2), ("GSME", 1)])
async def test_a_top_up_credits_the_meter_once_and_a_replay_is_refused_with_its_reason(
    gateway: tuple[Harness, Receiver, Path], device_type: str, smets: int
) -> None:
    h, receiver, _ = gateway
    meter = _meter(h, device_type, smets)
    before = await _view(h, meter)
    utrn = await _utrn(h, meter, counter=3, pence=1250)
    counter = originator_counter(3)  # the RequestID counter of a top-up is its UTRN's (as the CS01a template)

    code, _, _ = await h.send("serviceS", _supplier(meter), meter.device_id, srv="2.2", body=_top_up_body(utrn), counter=counter)
    assert code == "I99"
    code, gbcs = await _result(h, receiver, counter)
    answer = GeneralCipheringApdu.parse(gbcs).payload
    assert code == "I0" and answer.recipient == h.scenario.actor(_supplier(meter)).user_id
    assert answer.originator == meter.device_id and answer.counter == counter
    after = await _view(h, meter)
    assert after["utrn_counters"] == [3]
    assert int(after["credit_pence"]) > int(before["credit_pence"]) + 1200  # type: ignore[call-overload]  # minus a few seconds' use
    if device_type == "GSME":  # the ZCL answer says what it applied and what is left
        assert (1250 * 1000).to_bytes(4, "little") in answer.content
        assert (int(after["credit_pence"]) * 1000).to_bytes(4, "little") in answer.content  # type: ignore[call-overload]

    # The same UTRN again (a fresh RequestID): the meter answers, refusing it; nothing changes; the reason is audited.
    code, _, _ = await h.send(
        "serviceS", _supplier(meter), meter.device_id, srv="2.2", body=_top_up_body(utrn), counter=counter + 1
    )
    assert code == "I99"
    code, gbcs = await _result(h, receiver, counter + 1)
    refused = GeneralCipheringApdu.parse(gbcs).payload
    assert code == "I0" and refused.content != answer.content
    if device_type == "GSME":  # ZCL Consumer Top Up Response: Rejected - Duplicate Top Up
        assert refused.content[11] == 0x02
    assert (await _view(h, meter))["credit_pence"] == after["credit_pence"]
    [(outcome, reason)] = await _audit(h, counter + 1)
    assert outcome == "I0" and "refused by the meter" in reason and "replay" in reason


async def test_a_utrn_for_another_meter_is_refused_and_the_balance_is_the_meters(
    gateway: tuple[Harness, Receiver, Path],
) -> None:
    h, receiver, _ = gateway
    meter, other = _meter(h, "ESME", 1), _meter(h, "ESME", 2)
    utrn = await _utrn(h, other, counter=5, pence=900)
    counter = originator_counter(5)
    await h.send("serviceS", "failed_supplier_is", meter.device_id, srv="2.2", body=_top_up_body(utrn), counter=counter)
    await _result(h, receiver, counter)
    [(_, reason)] = await _audit(h, counter)
    assert "MAC" in reason
    assert (await _view(h, meter))["utrn_counters"] == []

    await h.send("serviceS", "failed_supplier_is", meter.device_id, srv="4.18", body=etree.Element(f"{_SR}ReadMeterBalance"), counter=counter + 7)
    code, gbcs = await _result(h, receiver, counter + 7)
    content = GeneralCipheringApdu.parse(gbcs).payload.content
    balance = int((await _view(h, meter))["meter_balance_pence"])  # type: ignore[call-overload]
    assert code == "I0" and (balance * 1000).to_bytes(4, "big", signed=True) == content[9:13]


async def test_emergency_credit_is_granted_to_a_low_meter_and_everything_survives_a_restart(
    gateway: tuple[Harness, Receiver, Path], tmp_path: Path
) -> None:
    h, receiver, world = gateway
    meter = _meter(h, "ESME", 1)
    view = await _view(h, meter)
    hours = (int(view["credit_pence"]) - 50) / int(view["consumption_pence_per_hour"])  # type: ignore[call-overload]
    h.scenario.clock.set(h.scenario.clock.now() + dt.timedelta(hours=hours))
    assert int((await _view(h, meter))["credit_pence"]) < 100  # type: ignore[call-overload]  # below the emergency credit threshold

    code, _, _ = await h.send("serviceS", "failed_supplier_is", meter.device_id, srv="2.5", body=etree.Element(f"{_SR}ActivateEmergencyCredit"), counter=4242)
    assert code == "I99"
    code, gbcs = await _result(h, receiver, 4242)
    signed = GeneralSigningApdu.parse(gbcs)  # a critical answer: signed by the meter itself
    meter_key = bytes.fromhex(str(view["device_signing_public_key"]))
    verify_apdu_signature(signed, ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), meter_key))
    granted = await _view(h, meter)
    assert code == "I0" and granted["emergency_credit_active"] is True

    # Asked again: refused by the meter (active already), audited, unchanged.
    await h.send("serviceS", "failed_supplier_is", meter.device_id, srv="2.5", body=etree.Element(f"{_SR}ActivateEmergencyCredit"), counter=4243)
    await _result(h, receiver, 4243)
    [(_, reason)] = await _audit(h, 4243)
    assert "active already" in reason

    # A restart reads the meter back from the store.
    await h.client.close()
    restarted = create_app(open_world(world), clock=h.scenario.clock, store_url=f"sqlite:///{tmp_path / 'store.db'}")
    async with TestClient(TestServer(restarted)) as client:
        again = await (await client.get(f"/sim/devices/{meter.device_id}")).json()
    assert again["emergency_credit_active"] is True and again["credit_pence"] == granted["credit_pence"]
    assert Eui64.parse(str(again["device_id"])) == meter.device_id


@pytest.mark.parametrize("device_type", ["ESME", "GSME"])
async def test_a_smets2_meter_grants_emergency_credit_only_from_its_suppliers_signed_precommand(
    gateway: tuple[Harness, Receiver, Path], device_type: str
) -> None:
    h, receiver, _ = gateway
    meter = _meter(h, device_type, 2)
    view = await _view(h, meter)
    hours = (int(view["credit_pence"]) - 50) / int(view["consumption_pence_per_hour"])  # type: ignore[call-overload]
    h.scenario.clock.set(h.scenario.clock.now() + dt.timedelta(hours=hours))
    supplier = h.scenario.actor(_supplier(meter))
    body = etree.Element(f"{_SR}ActivateEmergencyCredit")

    code, _, answer = await h.send("serviceT", supplier.name, meter.device_id, srv="2.5", cv=4, counter=7000, body=body)
    assert code == "I0"
    issued = GeneralSigningApdu.parse(base64.b64decode(answer.body.findtext(f".//{_SR}PreCommand/{_SR}GBCSPayload") or ""))
    assert issued.message_code == (0x0020 if device_type == "ESME" else 0x0070) and issued.recipient == meter.device_id
    assert supplier.digital_signing is not None
    key = serialization.load_pem_private_key(supplier.digital_signing.key.read_bytes(), password=None)
    signed = sign_apdu(issued, key)  # type: ignore[arg-type]
    code, _, _ = await h.send("serviceS", supplier.name, meter.device_id, srv="2.5", cv=5, counter=7000, body=signed_precommand_body(signed.encode()))
    assert code == "I99"
    code, gbcs = await _result(h, receiver, 7000)
    assert code == "I0" and GeneralSigningApdu.parse(gbcs).cra_flag.name == "RESPONSE"
    assert (await _view(h, meter))["emergency_credit_active"] is True


async def test_the_cli_vends_a_utrn_the_meter_accepts(
    gateway: tuple[Harness, Receiver, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    h, receiver, world = gateway
    meter = _meter(h, "GSME", 2)
    args = ["utrn", str(world), "--as", "failed_supplier_gs", "--device", str(meter.device_id), "--value", "3", "--pounds"]
    assert cli_main([*args, "--counter", "11"]) == 0
    vended = json.loads(capsys.readouterr().out)
    assert vended["request_counter"] == originator_counter(11)
    before = int((await _view(h, meter))["credit_pence"])  # type: ignore[call-overload]
    await h.send("serviceS", "failed_supplier_gs", meter.device_id, srv="2.2", body=_top_up_body(vended["utrn"]), counter=vended["request_counter"])
    await _result(h, receiver, vended["request_counter"])
    assert before + 290 < int((await _view(h, meter))["credit_pence"]) <= before + 300  # type: ignore[call-overload]

    assert cli_main(["utrn", str(world), "--as", "srp_sc", "--device", str(meter.device_id), "--value", "1", "--counter", "1"]) == 2
    assert "no prepayment key" in capsys.readouterr().err


async def test_the_prepayment_configuration_read_reports_the_meters_emergency_credit(
    gateway: tuple[Harness, Receiver, Path],
) -> None:
    h, receiver, _ = gateway
    meter = _meter(h, "GSME", 2)
    view = await _view(h, meter)
    body = etree.Element(f"{_SR}ReadPrepaymentConfiguration")
    assert (await h.send("serviceS", "failed_supplier_gs", meter.device_id, srv="4.13", body=body, counter=5100))[0] == "I99"
    code, gbcs = await _result(h, receiver, 5100)
    limit = int(view["emergency_credit_pence"]) + int(view["debt_pence"])  # type: ignore[call-overload]
    record = b"\x10\x00\x00\x23" + (limit * 1000).to_bytes(4, "little")  # Emergency Credit Limit Allowance
    assert code == "I0" and record in GeneralCipheringApdu.parse(gbcs).payload.content
