"""The gateway over real HTTP (aiohttp test server): pre-authentication problems, signed answers, CV4/CV5."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives import serialization
from lxml import etree

from gateway.app import FORWARDER
from gateway.server import create_app
from gateway.eui64 import Eui64
from gateway.gbcs import GeneralSigningApdu, sign_apdu
from gateway.namespaces import SR
from gateway.policy import directives as d
from gateway.runtime import open_world
from gateway.schema import load_schemas
from gateway.store.postgresql import PostgresLocation, PostgresStore
from gateway.verify.documents import VerifiedResponse
from gateway.world import init_world
from tests.scenario import START, Scenario, make_scenario, point_response_urls, prepayment_body
from tests.shared_data import shared_path
from tests.store_backends import store_opener, with_schema

_SR = f"{{{SR}}}"


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("http-world")
    init_world(directory, devices=12, seed="http-tests")
    return directory


class Harness:
    def __init__(self, client: TestClient, scenario: Scenario) -> None:
        self.client = client
        self.scenario = scenario

    async def post(self, path: str, body: bytes, content_type: str = "application/xml") -> tuple[int, dict[str, str], bytes]:
        response = await self.client.post(f"/api/v1/{path}", data=body, headers={"Content-Type": content_type})
        return response.status, dict(response.headers), await response.read()

    async def direct(self, actor: str, directive: d.Directive) -> dict[str, object]:
        status, _, body = await self.post("admin", self.scenario.signed_directive(actor, directive))
        assert status == 200, body
        answer: dict[str, object] = json.loads(body)
        return answer

    async def must(self, actor: str, directive: d.Directive) -> None:
        answer = await self.direct(actor, directive)
        assert answer["accepted"], answer

    def read_answer(self, body: bytes) -> VerifiedResponse:
        """Every answer must be signed by the gateway's 89 certificate (and valid under our schema)."""
        verified = self.scenario.world.verifier(self.scenario.clock).verify(body)
        assert isinstance(verified, VerifiedResponse)
        return verified

    async def send(self, path: str, actor: str, target: object, **fields: object) -> tuple[str, str, VerifiedResponse]:
        status, headers, body = await self.post(path, self.scenario.signed_request(actor, target, **fields))  # type: ignore[arg-type]
        assert status == 200, body
        answer = self.read_answer(body)
        return answer.response_code, headers["DUIS-Reason"], answer


@pytest.fixture
async def harness(world_dir: Path, tmp_path: Path) -> AsyncIterator[Harness]:
    scenario = make_scenario(world_dir)
    app = create_app(open_world(world_dir), clock=scenario.clock, store_url=f"sqlite:///{tmp_path / 'store.db'}")
    async with TestClient(TestServer(app)) as client:
        yield Harness(client, scenario)


async def contingency_ready(h: Harness, adt: dict[str, int] | None = None) -> None:
    sc_user = h.scenario.actor("srp_sc").user_id
    await h.must("authority", d.RevokeLicence("failed-supplier"))
    await h.must("authority", d.AppointSolr("failed-supplier", "solr-supplier"))
    await h.must("authority", d.EnableContingency("failed-supplier", sc_user, START + dt.timedelta(days=30)))
    await h.must("srp_aro", d.SubmitAdt("failed-supplier", 3600, adt or {"1.6": 10}))


async def test_healthz_and_metrics(harness: Harness) -> None:
    assert (await harness.client.get("/healthz")).status == 200
    await harness.send("serviceS", "failed_supplier_is", harness.scenario.device(smets=1).device_id)
    metrics = await (await harness.client.get("/metrics")).text()
    assert 'dcc_gateway_requests_total{outcome="I99",path="serviceS"} 1.0' in metrics
    assert 'dcc_gateway_queue_depth{queue="forward"}' in metrics


async def test_accepted_request_gets_a_signed_schema_valid_i99(harness: Harness) -> None:
    code, reason, answer = await harness.send("serviceS", "failed_supplier_is", harness.scenario.device(smets=1).device_id)
    assert code == "I99" and "queued" in reason
    assert answer.request_id is not None and answer.response_id == answer.request_id.swapped()


@pytest.mark.interop
async def test_every_answer_is_valid_against_the_official_xsd(harness: Harness) -> None:
    official = load_schemas(shared_path("duis", "xsd", "DUIS-Schema-V5.4.xsd"))
    meter = harness.scenario.device(smets=1).device_id
    for fields in ({}, {"srv": "4.1.1"}, {"cv": 4}):
        status, _, body = await harness.post("serviceS", harness.scenario.signed_request("failed_supplier_is", meter, **fields))
        official.validate(etree.fromstring(body))


@pytest.mark.parametrize(
    ("mutate", "status", "check"),
    [
        pytest.param(lambda b: b.replace(b":1000<", b":1001<"), 401, "digest-mismatch", id="tampered"),
        pytest.param(lambda b: b.replace(b"?>", b"?><!DOCTYPE x>", 1), 400, "dtd", id="dtd"),
        pytest.param(lambda b: b[:-20], 400, "not-well-formed", id="truncated"),
        pytest.param(lambda b: b + b" " * 300_000, 413, "size-limit", id="oversize"),
    ],
)
async def test_pre_authentication_failures_are_problems(harness: Harness, mutate, status: int, check: str) -> None:  # type: ignore[no-untyped-def]
    signed = harness.scenario.signed_request("failed_supplier_is", harness.scenario.device().device_id, counter=1000)
    got_status, headers, body = await harness.post("serviceS", mutate(signed))
    assert got_status == status
    assert headers["Content-Type"].startswith("application/problem+json")
    problem = json.loads(body)
    assert problem["check"] == check and problem["status"] == status and problem["detail"]


async def test_wrong_media_type_is_415(harness: Harness) -> None:
    status, _, body = await harness.post("serviceS", b"{}", content_type="application/json")
    assert status == 415 and json.loads(body)["check"] == "media-type"


async def test_e13_request_type_not_for_this_url(harness: Harness) -> None:
    meter = harness.scenario.device(smets=2).device_id
    code, reason, _ = await harness.send("serviceS", "failed_supplier_is", meter, cv=4)
    assert code == "E13" and "serviceS" in reason


async def test_the_careless_srp_meets_its_refusals(harness: Harness) -> None:
    meter = harness.scenario.device(smets=1).device_id
    assert (await harness.send("serviceS", "srp_sc", meter))[0] == "E3"  # before enablement
    await contingency_ready(harness)
    assert (await harness.send("serviceS", "srp_sc", meter))[0] == "I99"
    assert (await harness.send("serviceS", "srp_sc", meter, body=prepayment_body()))[0] == "E41"
    assert (await harness.send("serviceS", "srp_sc", meter, srv="4.1.1"))[0] == "E2"


async def test_directive_answers_are_json_and_refusals_explain(harness: Harness) -> None:
    answer = await harness.direct("pma", d.RevokeLicence("failed-supplier"))
    assert answer == {"accepted": False, "reason": "revoke-licence may only be issued by the authority"}


def precommand_of(answer: VerifiedResponse) -> bytes:
    payload = answer.body.find(f"{_SR}PreCommand/{_SR}GBCSPayload")
    assert payload is not None and payload.text
    return base64.b64decode(payload.text)


def signed_precommand_body(apdu: bytes) -> etree._Element:
    body = etree.Element(f"{_SR}SignedPreCommand")
    etree.SubElement(body, f"{_SR}GBCSPayload").text = base64.b64encode(apdu).decode()
    return body


@pytest.mark.parametrize("device_type", ["ESME", "GSME"])
async def test_critical_flow_cv4_then_cv5_for_the_sc_role(harness: Harness, device_type: str) -> None:
    scenario = harness.scenario
    await contingency_ready(harness)
    meter = scenario.device(device_type=device_type, smets=2).device_id
    code, _, answer = await harness.send("serviceT", "srp_sc", meter, cv=4, counter=4242)
    assert code == "I0"
    precommand = GeneralSigningApdu.parse(precommand_of(answer))
    assert precommand.counter == 4242 and precommand.recipient == meter and not precommand.is_signed
    assert precommand.message_code == (0x001A if device_type == "ESME" else 0x006C)

    # The SRP holds the failed supplier's DS key as its agent (MP134A); SC has none of its own (MP134B R2).
    supplier = scenario.actor("failed_supplier_is" if device_type == "ESME" else "failed_supplier_gs")
    assert supplier.digital_signing is not None
    key = serialization.load_pem_private_key(supplier.digital_signing.key.read_bytes(), password=None)
    signed = sign_apdu(precommand, key).encode()  # type: ignore[arg-type]
    code, _, _ = await harness.send("serviceS", "srp_sc", meter, cv=5, counter=4242, body=signed_precommand_body(signed))
    assert code == "I99"
    code, reason, _ = await harness.send("serviceS", "srp_sc", meter, cv=5, counter=4242, body=signed_precommand_body(signed))
    assert code == "E42" and "no Pre-Command was issued" in reason


async def test_cv5_that_is_not_the_issued_precommand_is_e42(harness: Harness) -> None:
    scenario = harness.scenario
    await contingency_ready(harness)
    meter = scenario.device(smets=2).device_id
    _, _, answer = await harness.send("serviceT", "srp_sc", meter, cv=4, counter=777)
    tampered = bytearray(precommand_of(answer))
    tampered[-1] ^= 0x01
    code, reason, _ = await harness.send(
        "serviceS", "srp_sc", meter, cv=5, counter=777, body=signed_precommand_body(bytes(tampered) + b"\x40" + b"\x01" * 64)
    )
    assert code == "E42" and "differs" in reason


# --- devices and delivery, with a real local receiver ---------------------------------------------------


class Receiver:
    """A DUIS user's Receive Response Service on loopback: keeps what the gateway POSTs."""

    def __init__(self) -> None:
        self.received: list[tuple[str, bytes]] = []
        self.arrived = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((request.match_info["actor"], await request.read()))
        self.arrived.set()
        return web.Response(status=200)

    async def wait_for(self, count: int, timeout: float = 10.0) -> None:
        async def enough() -> None:
            while len(self.received) < count:
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(enough(), timeout)


@pytest.fixture
async def receiving(world_dir: Path, tmp_path: Path) -> AsyncIterator[tuple[Harness, Receiver]]:
    """The world with every response_url pointed at a receiver on a free loopback port."""
    receiver = Receiver()
    async with receiver_server(receiver) as server:
        world = world_sending_to(world_dir, tmp_path / "world", server.port)
        scenario = make_scenario(world)
        app = create_app(open_world(world), clock=scenario.clock, store_url=f"sqlite:///{tmp_path / 'store.db'}")
        async with TestClient(TestServer(app)) as client:
            yield Harness(client, scenario), receiver


def receiver_server(receiver: Receiver) -> TestServer:
    receiver_app = web.Application()
    receiver_app.router.add_post("/receive/{actor}", receiver.handle)
    return TestServer(receiver_app)


def world_sending_to(world_dir: Path, world: Path, port: int) -> Path:
    """A copy of the world with every response_url pointed at a receiver on ``port``."""
    shutil.copytree(world_dir, world)
    point_response_urls(world, port)
    return world


async def test_sc_switches_smets1_and_smets2_meters_to_credit_end_to_end(receiving: tuple[Harness, Receiver]) -> None:
    harness, receiver = receiving
    scenario = harness.scenario
    await contingency_ready(harness)
    smets1 = scenario.device(device_type="ESME", smets=1).device_id
    smets2 = scenario.device(device_type="GSME", smets=2).device_id

    assert (await harness.send("serviceS", "srp_sc", smets1))[0] == "I99"
    _, _, answer = await harness.send("serviceT", "srp_sc", smets2, cv=4, counter=9000)
    supplier = scenario.actor("failed_supplier_gs")
    assert supplier.digital_signing is not None
    key = serialization.load_pem_private_key(supplier.digital_signing.key.read_bytes(), password=None)
    signed = sign_apdu(GeneralSigningApdu.parse(precommand_of(answer)), key).encode()  # type: ignore[arg-type]
    assert (await harness.send("serviceS", "srp_sc", smets2, cv=5, counter=9000, body=signed_precommand_body(signed)))[0] == "I99"

    # Two results for the SRP, plus the payment-mode alerts, which go to the SRP too (MP134B R7).
    await receiver.wait_for(4)
    by_kind: dict[str, list[VerifiedResponse]] = {}
    for actor, body in receiver.received:
        assert actor == "srp_sc"
        verified = harness.read_answer(body)  # signed by the gateway's 89 certificate
        by_kind.setdefault(etree.QName(verified.body).localname, []).append(verified)
    assert [r.response_code for r in by_kind["ResponseMessage"]] == ["I0", "I0"]
    assert len(by_kind["DeviceAlertMessage"]) >= 2

    for meter in (smets1, smets2):
        state = await (await harness.client.get(f"/sim/devices/{meter}")).json()
        assert state["payment_mode"] == "Credit", state
    assert (await harness.client.get("/sim/devices/00-DB-12-FF-FF-FF-FF-FF")).status == 404


async def test_quarantine_sends_an_ad1_alert(receiving: tuple[Harness, Receiver]) -> None:
    harness, receiver = receiving
    sc_user = harness.scenario.actor("srp_sc").user_id
    await harness.must("authority", d.RevokeLicence("failed-supplier"))
    await harness.must("authority", d.AppointSolr("failed-supplier", "solr-supplier"))
    await harness.must("authority", d.EnableContingency("failed-supplier", sc_user, START + dt.timedelta(days=30)))
    await harness.must("srp_aro", d.SubmitAdt("failed-supplier", 3600, {"1.6": 0}))
    code, _, _ = await harness.send("serviceS", "srp_sc", harness.scenario.device(smets=1).device_id)
    assert code == "E43"
    await receiver.wait_for(1)
    alert = harness.read_answer(receiver.received[0][1])
    assert etree.QName(alert.body).localname == "DCCAlertMessage"
    assert alert.body.findtext(f"{_SR}DCCAlertCode") == "AD1"


async def test_an_ad1_alert_due_when_the_gateway_died_is_sent_after_the_restart(
    world_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """E43 is answered once the quarantine is committed; the alert is queued after. The gateway
    dying in between is played by a forwarder that never hears of the quarantine: the alert is not
    sent, and the next gateway on the same store sends it (once) all the same."""
    receiver = Receiver()
    async with receiver_server(receiver) as server:
        world = world_sending_to(world_dir, tmp_path / "world", server.port)
        scenario = make_scenario(world)
        store_url = f"sqlite:///{tmp_path / 'store.db'}"
        app = create_app(open_world(world), clock=scenario.clock, store_url=store_url)
        async with TestClient(TestServer(app)) as client:
            harness = Harness(client, scenario)
            monkeypatch.setattr(app[FORWARDER], "quarantined", lambda: None)
            monkeypatch.setattr(app[FORWARDER], "queue_quarantine_alerts", _never_runs)
            await contingency_ready(harness, adt={"1.6": 0})
            code, _, answer = await harness.send("serviceS", "srp_sc", scenario.device(smets=1).device_id)
            assert code == "E43"
        assert receiver.received == []

        restarted = create_app(open_world(world), clock=scenario.clock, store_url=store_url)
        async with TestClient(TestServer(restarted)) as client:
            await receiver.wait_for(1)
            harness = Harness(client, scenario)
            ((actor, body),) = receiver.received
            alert = harness.read_answer(body)
            assert actor == "srp_sc" and alert.body.findtext(f"{_SR}DCCAlertCode") == "AD1"
            assert list(alert.body.iter(f"{_SR}RequestID"))[0].text == str(answer.request_id)
            assert await restarted[FORWARDER].queue_quarantine_alerts() == 0  # due once, sent once


async def _never_runs() -> int:
    return 0


@pytest.mark.parametrize(
    ("actor", "pick", "fields", "code"),
    [
        pytest.param("authority", lambda s: s.device(), {}, "E1", id="E1-not-a-duis-user"),
        pytest.param("failed_supplier_is", lambda s: s.device(device_type="GSME", smets=1), {}, "E4", id="E4-not-its-meter"),
        pytest.param("failed_supplier_is", lambda s: s.device(device_type="GSME", smets=1), {"srv": "1.1.2"}, "E11", id="E11-srv-for-esme"),
        pytest.param("failed_supplier_is", lambda s: s.device(smets=2), {"cv": 1}, "E12", id="E12-critical-smets2-cv1"),
    ],
)
async def test_spec_codes_over_http(harness: Harness, actor: str, pick, fields: dict[str, object], code: str) -> None:  # type: ignore[no-untyped-def]
    got, reason, _ = await harness.send("serviceS", actor, pick(harness.scenario).device_id, **fields)
    assert got == code and reason


async def test_e19_and_e40_over_http(harness: Harness) -> None:
    assert (await harness.send("serviceS", "failed_supplier_is", Eui64.parse("00-DB-12-FF-FF-FF-FF-FF")))[0] == "E19"
    meter = harness.scenario.device(smets=1).device_id
    assert (await harness.send("serviceS", "failed_supplier_is", meter, counter=50))[0] == "I99"
    code, reason, _ = await harness.send("serviceS", "failed_supplier_is", meter, counter=50)
    assert code == "E40" and "not greater" in reason


async def test_meter_refusing_a_foreign_signature_reports_e21(receiving: tuple[Harness, Receiver]) -> None:
    """The gateway does not verify GBCS signatures; the meter does, against its trust anchor."""
    harness, receiver = receiving
    scenario = harness.scenario
    await contingency_ready(harness)
    meter = scenario.device(device_type="ESME", smets=2).device_id
    _, _, answer = await harness.send("serviceT", "srp_sc", meter, cv=4, counter=6000)
    outsider = scenario.actor("solr_is")  # a real DS key, but not the meter's trust anchor
    assert outsider.digital_signing is not None
    key = serialization.load_pem_private_key(outsider.digital_signing.key.read_bytes(), password=None)
    signed = sign_apdu(GeneralSigningApdu.parse(precommand_of(answer)), key).encode()  # type: ignore[arg-type]
    assert (await harness.send("serviceS", "srp_sc", meter, cv=5, counter=6000, body=signed_precommand_body(signed)))[0] == "I99"
    await receiver.wait_for(1)
    result = harness.read_answer(receiver.received[0][1])
    assert result.response_code == "E21"
    state = await (await harness.client.get(f"/sim/devices/{meter}")).json()
    assert state["payment_mode"] == "Prepayment"


async def test_registered_device_without_a_meter_reports_e20(receiving: tuple[Harness, Receiver]) -> None:
    harness, receiver = receiving
    ghost = Eui64.parse("00-DB-12-EE-00-00-00-01")
    await harness.must("dcc_operator", d.RegisterDevice(ghost, "ESME", 1, "FAIL"))
    assert (await harness.send("serviceS", "failed_supplier_is", ghost))[0] == "I99"
    await receiver.wait_for(1)
    assert harness.read_answer(receiver.received[0][1]).response_code == "E20"


async def test_released_quarantined_request_reaches_its_meter(receiving: tuple[Harness, Receiver]) -> None:
    harness, receiver = receiving
    scenario = harness.scenario
    sc_user = scenario.actor("srp_sc").user_id
    await harness.must("authority", d.RevokeLicence("failed-supplier"))
    await harness.must("authority", d.AppointSolr("failed-supplier", "solr-supplier"))
    await harness.must("authority", d.EnableContingency("failed-supplier", sc_user, START + dt.timedelta(days=30)))
    await harness.must("srp_aro", d.SubmitAdt("failed-supplier", 3600, {"1.6": 0}))
    meter = scenario.device(device_type="ESME", smets=1).device_id
    assert (await harness.send("serviceS", "srp_sc", meter))[0] == "E43"
    await receiver.wait_for(1)  # the AD1 alert
    status, _, _ = await harness.post("admin", scenario.signed_directive("srp_sc", d.ReleaseQuarantine(1)))
    assert status == 200
    await receiver.wait_for(2)
    kinds = [etree.QName(harness.read_answer(body).body).localname for _, body in receiver.received]
    assert "ResponseMessage" in kinds
    state = await (await harness.client.get(f"/sim/devices/{meter}")).json()
    assert state["payment_mode"] == "Credit"


async def test_a_store_that_cannot_write_answers_503_and_the_same_request_is_decided_later(
    world_dir: Path, tmp_path: Path
) -> None:
    """PostgreSQL, the real server: while another session holds the schema's write lock past the
    store's lock_timeout, an authenticated request cannot be decided. It gets a 503 problem with
    Retry-After (never a 500), nothing of it is stored, and the same bytes sent again are accepted."""
    async with store_opener("postgresql", tmp_path) as pg:
        url = with_schema(f"{pg.server_url}?lock_timeout=300", pg.schema)
        scenario = make_scenario(world_dir)
        app = create_app(open_world(world_dir), clock=scenario.clock, store_url=url)
        async with TestClient(TestServer(app)) as client:
            harness = Harness(client, scenario)
            meter = scenario.device(smets=1).device_id
            assert (await harness.send("serviceS", "failed_supplier_is", meter, counter=1))[0] == "I99"
            request = scenario.signed_request("failed_supplier_is", meter, counter=2)
            holder = await asyncpg.connect(PostgresLocation.parse(pg.server_url).dsn)
            try:
                await holder.execute("SELECT pg_advisory_lock($1)", PostgresStore(url).write_lock_key)
                status, headers, body = await harness.post("serviceS", request)
            finally:
                await holder.close()
            assert status == 503 and headers["Retry-After"] == "1", body
            problem = json.loads(body)
            assert problem["check"] == "store-unavailable" and "send it again" in problem["detail"]
            status, _, body = await harness.post("serviceS", request)
            assert status == 200 and harness.read_answer(body).response_code == "I99"
            metrics = await (await client.get("/metrics")).text()
            assert 'dcc_gateway_requests_total{outcome="store-unavailable",path="serviceS"} 1.0' in metrics
