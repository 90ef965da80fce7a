"""GBCS for every use case: the reader, the RTDS catalogue, re-addressing, and the critical flow of any SRV.

The reader and the catalogue are run over every RTDS 4.5.0 vector (../shared, read in place);
the critical flow end to end over HTTP for SR 7.2 Disable Supply, whose Pre-Command is the
RTDS ECS43 vector re-addressed, and which the meter verifies against its trust anchor.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree

from gateway.server import create_app
from gateway.config import load_config, write_default_config
from gateway.eui64 import Eui64
from gateway.gbcs import ApduError, CraFlag, GeneralSigningApdu, dlms, sign_apdu
from gateway.gbcs.reader import ContentKind, Envelope, SignatureState, decode_date_time, read_message
from gateway.gbcs.readdress import VectorAnswers, readdress
from gateway.gbcs.rtds import CatalogueError, RtdsCatalogue, VectorKind
from gateway.namespaces import SR
from gateway.runtime import open_world
from gateway.world import init_world
from tests.scenario import Scenario, make_scenario, point_response_urls
from tests.shared_data import shared_path

_SR = f"{{{SR}}}"
USER = Eui64.parse("90-B3-D5-1F-30-11-00-01")
METER = Eui64.parse("00-DB-12-D0-00-00-00-07")
NOW = dt.datetime(2026, 12, 3, 17, 30, 15, 250000, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def catalogue() -> RtdsCatalogue:
    return RtdsCatalogue.load(shared_path("gbcs", "rtds-4.5.0"))


def body(xml: str) -> etree._Element:
    return etree.fromstring(f'<sr:X xmlns:sr="{SR}">{xml}</sr:X>')[0]


# --- the reader ------------------------------------------------------------------------------------


def test_every_rtds_vector_reads_and_round_trips(catalogue: RtdsCatalogue) -> None:
    vectors = [v for name in _names(catalogue) for v in catalogue.use_case(name).vectors]  # type: ignore[union-attr]
    assert len(vectors) > 1200
    kinds = {v.message.content_kind for v in vectors}
    assert kinds == set(ContentKind)
    for vector in vectors:
        again = read_message(vector.message.encode())
        assert again == vector.message
        expected_flag = {VectorKind.RESPONSE: CraFlag.RESPONSE, VectorKind.ALERT: CraFlag.ALERT}.get(vector.kind, CraFlag.COMMAND)
        assert again.cra_flag is expected_flag, vector.name
    precommands = [v for v in vectors if v.kind is VectorKind.PRECOMMAND]
    assert {(v.message.envelope, v.message.signature) for v in precommands} == {(Envelope.GENERAL_SIGNING, SignatureState.ABSENT)}


def _names(catalogue: RtdsCatalogue) -> list[str]:
    return sorted({u.name for srv in {v for v in _srvs(catalogue)} for u in catalogue.use_cases(srv)})


def _srvs(catalogue: RtdsCatalogue) -> set[str]:
    return set(catalogue.device_types_by_srv())


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        pytest.param(b"", "empty", id="empty"),
        pytest.param(b"\xd9\x00", "DD or DF", id="not-an-envelope"),
        pytest.param(b"\xdf\x09\x01", "truncated", id="truncated"),
    ],
)
def test_the_reader_refuses_what_is_no_gbcs_message(data: bytes, reason: str) -> None:
    with pytest.raises(ApduError, match=reason):
        read_message(data)


def _apdu(content: bytes) -> bytes:
    return GeneralSigningApdu(
        cra_flag=CraFlag.COMMAND, counter=1, originator=USER, recipient=METER, date_time=None,
        message_code=0x0050, other_information=b"\x00\x50", content=content,
    ).encode()  # fmt: skip


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (bytes.fromhex("D920000001000101"), ContentKind.DLMS_ACCESS_REQUEST),
        (bytes.fromhex("0109010001"), ContentKind.GBZ),
        (bytes.fromhex("3003020101"), ContentKind.ASN1),
    ],
)
def test_content_kinds(content: bytes, kind: ContentKind) -> None:
    assert read_message(_apdu(content)).content_kind is kind


@pytest.mark.parametrize(
    "content",
    [bytes.fromhex("300302010100"), bytes.fromhex("30050201"), bytes.fromhex("D9200000"), bytes.fromhex("7701")],
    ids=["ber-trailing", "ber-truncated", "dlms-short", "unknown"],
)
def test_content_that_is_none_of_the_kinds_is_refused(content: bytes) -> None:
    with pytest.raises(ApduError):
        read_message(_apdu(content))


def test_date_times() -> None:
    assert decode_date_time(bytes.fromhex("07DF0101FF000000008000FF")) == dt.datetime(2015, 1, 1, tzinfo=dt.UTC)
    # deviation -60 minutes: local time is UTC+1 in DLMS's sign convention, so 10:00 local is 09:00 UTC
    assert decode_date_time(bytes.fromhex("07E90601FF0A000000FFC400")) == dt.datetime(2025, 6, 1, 9, tzinfo=dt.UTC)
    assert decode_date_time(bytes.fromhex("FFFFFFFFFFFFFFFFFF8000FF")) is None
    with pytest.raises(ApduError):
        decode_date_time(b"\x00")


# --- re-addressing --------------------------------------------------------------------------------------


def test_every_vector_readdressed_is_that_device_answering_that_request(catalogue: RtdsCatalogue) -> None:
    counter = 0x0123456789ABCDEF
    for name in _names(catalogue):
        use_case = catalogue.use_case(name)
        assert use_case is not None
        for vector in use_case.vectors:
            got = read_message(readdress(vector.message, originator=METER, recipient=USER, counter=counter, at=NOW))
            original = vector.message
            assert (got.originator, got.recipient, got.counter) == (METER, USER, counter), vector.name
            assert (got.cra_flag, got.message_code, got.envelope, got.content_kind) == (
                original.cra_flag, original.message_code, original.envelope, original.content_kind
            ), vector.name  # fmt: skip
            assert got.signature is (SignatureState.NULL if original.signature is SignatureState.SIGNED else original.signature)
            if original.apdu.date_time is not None:
                assert got.date_time == NOW.replace(microsecond=250000)
            if got.ciphering is not None:
                assert got.ciphering.mac == bytes(12)
            if got.content_kind.is_dlms:
                invoke_id = int.from_bytes(got.apdu.content[1:5], "big")
                assert invoke_id & dlms.INVOKE_ID_MASK == counter & dlms.INVOKE_ID_MASK
                assert got.apdu.content[5:] == original.apdu.content[5:]
            else:
                assert got.apdu.content == original.apdu.content


# --- the catalogue ----------------------------------------------------------------------------------------


def test_the_use_case_follows_the_device_type_and_the_body(catalogue: RtdsCatalogue) -> None:
    def chosen(srv: str, device_type: str, xml: str) -> str | None:
        use_case = catalogue.use_case_for(srv, device_type, body(xml))
        return None if use_case is None else use_case.name

    assert chosen("4.1.1", "ESME", "<sr:ReadInstantaneousImportRegisters/>") == "ECS17b"
    assert chosen("4.1.1", "GPF", "<sr:ReadInstantaneousImportRegisters/>") == "GCS13a"
    log = "<sr:ReadEventOrSecurityLog><sr:LogToRead>{}</sr:LogToRead></sr:ReadEventOrSecurityLog>"
    assert chosen("6.13", "ESME", log.format("Security")) == "ECS35b"
    assert chosen("6.13", "ESME", log.format("PowerEvent")) == "ECS35e"
    assert chosen("6.13", "CHF", log.format("Event")) == "ECS35c"
    assert chosen("6.13", "GSME", log.format("Security")) == "CS10b"
    balance = "<sr:UpdateMeterBalance><sr:{}><sr:{}/></sr:{}></sr:UpdateMeterBalance>"
    assert chosen("1.5", "GSME", balance.format("CreditMode", "AdjustMeterBalance", "CreditMode")) == "GCS40c"
    assert chosen("1.5", "ESME", balance.format("CreditMode", "ResetMeterBalance", "CreditMode")) == "ECS04b"
    assert chosen("99.9", "ESME", "<sr:Nothing/>") is None


def test_the_vector_follows_the_execution_date_time(catalogue: RtdsCatalogue) -> None:
    use_case = catalogue.use_case("ECS02")
    assert use_case is not None

    def scenario(when: str | None) -> str:
        xml = "<sr:UpdatePaymentMode>" + (f"<sr:ExecutionDateTime>{when}</sr:ExecutionDateTime>" if when else "") + "<sr:Credit/></sr:UpdatePaymentMode>"
        vector = catalogue.vector(use_case, VectorKind.RESPONSE, "ESME", body(xml))
        assert vector is not None
        return vector.scenario

    assert scenario(None) == "IMMEDIATE_SINGLE_SUCCESS"
    assert scenario("2030-01-15T09:00:00.00Z") == "FUTURE_DATED_TWIN_SUCCESS"
    assert scenario("3000-12-31T00:00:00.00Z") == "CANCELLATION_TWIN_SUCCESS"


def test_a_signed_precommand_chooses_its_use_case_by_message_code(catalogue: RtdsCatalogue) -> None:
    answers = VectorAnswers(catalogue)
    ecs03 = catalogue.use_case("ECS03")
    assert ecs03 is not None
    command = ecs03.of(VectorKind.PRECOMMAND)[0].message.encode()
    use_case = answers.use_case("1.6", "ESME", None, command)
    assert use_case is not None and use_case.name == "ECS03"


def test_a_folder_that_is_not_the_vectors_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match="no RTDS vectors folder"):
        RtdsCatalogue.load(tmp_path / "absent")
    with pytest.raises(CatalogueError, match="holds no RTDS vectors"):
        RtdsCatalogue.load(tmp_path)
    (tmp_path / "7.2_ECS43").mkdir()
    bad = tmp_path / "7.2_ECS43" / "ECS43_7.2_SUCCESS_RESPONSE_GBCS.HEX"
    bad.write_text("DF09zz")
    with pytest.raises(CatalogueError, match="not a GBCS message in hex"):
        RtdsCatalogue.load(tmp_path)
    bad.rename(tmp_path / "7.2_ECS43" / "whatever_GBCS.HEX")
    with pytest.raises(CatalogueError, match="is not named"):
        RtdsCatalogue.load(tmp_path)


# --- the critical flow of an SRV other than 1.6, over HTTP ------------------------------------------------


class Receiver:
    def __init__(self) -> None:
        self.received: list[bytes] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(await request.read())
        return web.Response()

    async def wait_for(self, count: int) -> None:
        for _ in range(200):
            if len(self.received) >= count:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{len(self.received)} deliveries, expected {count}")


class Gateway:
    def __init__(self, client: TestClient, scenario: Scenario, receiver: Receiver) -> None:
        self.client = client
        self.scenario = scenario
        self.receiver = receiver

    async def send(self, path: str, target: Eui64, **fields: object) -> tuple[int, bytes]:
        signed = self.scenario.signed_request("failed_supplier_is", target, **fields)  # type: ignore[arg-type]
        response = await self.client.post(f"/api/v1/{path}", data=signed, headers={"Content-Type": "application/xml"})
        return response.status, await response.read()


def _code(answer: bytes) -> str:
    return etree.fromstring(answer).findtext(f"{_SR}Header/{_SR}ResponseCode") or ""


def _payload(answer: bytes, path: str) -> bytes:
    text = etree.fromstring(answer).findtext(f"{_SR}Body/{_SR}ResponseMessage/{path}")
    assert text, answer[:400]
    return base64.b64decode(text)


def _signed_precommand(apdu: bytes) -> etree._Element:
    element = etree.Element(f"{_SR}SignedPreCommand")
    etree.SubElement(element, f"{_SR}GBCSPayload").text = base64.b64encode(apdu).decode()
    return element


def _ds_key(scenario: Scenario, actor: str) -> ec.EllipticCurvePrivateKey:
    pair = scenario.actor(actor).digital_signing
    assert pair is not None
    key = serialization.load_pem_private_key(pair.key.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


DISABLE_SUPPLY = etree.Element(f"{_SR}DisableSupply")


async def _gateway(world: Path, tmp_path: Path) -> AsyncIterator[Gateway]:
    receiver = Receiver()
    receiver_app = web.Application()
    receiver_app.router.add_post("/receive/{actor}", receiver.handle)
    async with TestServer(receiver_app) as server:
        point_response_urls(world, server.port)
        scenario = make_scenario(world)
        app = create_app(open_world(world), clock=scenario.clock, store_url=f"sqlite:///{tmp_path / 'store.db'}")
        async with TestClient(TestServer(app)) as client:
            yield Gateway(client, scenario, receiver)


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    shared_path("gbcs", "rtds-4.5.0")
    directory = tmp_path_factory.mktemp("gbcs-answers") / "world"
    init_world(directory, devices=12, seed="gbcs-answers")
    assert load_config(directory / "gateway.toml").simulation.gbcs_vectors is not None
    return directory


@pytest.fixture
async def gateway(world_dir: Path, tmp_path: Path) -> AsyncIterator[Gateway]:
    world = tmp_path / "world"
    shutil.copytree(world_dir, world)
    async for running in _gateway(world, tmp_path):
        yield running


async def test_cv4_of_a_critical_srv_returns_its_use_cases_precommand_and_the_meter_verifies_cv5(gateway: Gateway) -> None:
    meter = gateway.scenario.device(device_type="ESME", smets=2).device_id
    user = gateway.scenario.actor("failed_supplier_is").user_id
    status, answer = await gateway.send("serviceT", meter, srv="7.2", cv=4, counter=5000, body=DISABLE_SUPPLY)
    assert (status, _code(answer)) == (200, "I0")
    precommand = read_message(_payload(answer, f"{_SR}PreCommand/{_SR}GBCSPayload"))
    assert (precommand.cra_flag, precommand.message_code, precommand.signature) == (CraFlag.COMMAND, 0x0050, SignatureState.ABSENT)
    assert (precommand.originator, precommand.recipient, precommand.counter) == (user, meter, 5000)

    signed = sign_apdu(precommand.apdu, _ds_key(gateway.scenario, "failed_supplier_is")).encode()
    status, answer = await gateway.send("serviceS", meter, srv="7.2", cv=5, counter=5000, body=_signed_precommand(signed))
    assert (status, _code(answer)) == (200, "I99")
    await gateway.receiver.wait_for(1)
    result = gateway.receiver.received[0]
    assert _code(result) == "I0"
    response = read_message(_payload(result, f"{_SR}GBCSPayload"))
    assert (response.cra_flag, response.message_code) == (CraFlag.RESPONSE, 0x0050)
    assert (response.originator, response.recipient, response.counter) == (meter, user, 5000)
    state = await (await gateway.client.get(f"/sim/devices/{meter}")).json()
    assert state["last_gbcs_counter"] == 5000


async def test_a_meter_refuses_a_precommand_signed_by_another_key_as_e21(gateway: Gateway) -> None:
    meter = gateway.scenario.device(device_type="ESME", smets=2).device_id
    _, answer = await gateway.send("serviceT", meter, srv="7.2", cv=4, counter=6000, body=DISABLE_SUPPLY)
    precommand = GeneralSigningApdu.parse(_payload(answer, f"{_SR}PreCommand/{_SR}GBCSPayload"))
    signed = sign_apdu(precommand, _ds_key(gateway.scenario, "solr_is")).encode()  # a DS key, not the meter's anchor
    status, answer = await gateway.send("serviceS", meter, srv="7.2", cv=5, counter=6000, body=_signed_precommand(signed))
    assert (status, _code(answer)) == (200, "I99")
    await gateway.receiver.wait_for(1)
    assert _code(gateway.receiver.received[0]) == "E21"
    state = await (await gateway.client.get(f"/sim/devices/{meter}")).json()
    assert state["last_gbcs_counter"] == 0


async def test_without_the_vectors_cv4_of_another_srv_is_a_named_limit_not_a_duis_code(
    world_dir: Path, tmp_path: Path
) -> None:
    world = tmp_path / "world"
    shutil.copytree(world_dir, world)
    config = load_config(world / "gateway.toml")
    write_default_config(
        world / "gateway.toml",
        policy={"eligibility_matrix": str(config.policy.eligibility_matrix or "")},
        schema={"duis_xsd": str(config.schema.duis_xsd or "")},
        simulation={"gbcs_vectors": ""},
    )
    async for gateway in _gateway(world, tmp_path):
        meter = gateway.scenario.device(device_type="ESME", smets=2).device_id
        status, answer = await gateway.send("serviceT", meter, srv="7.2", cv=4, counter=7000, body=DISABLE_SUPPLY)
        assert status == 501 and b'"check": "simulator-limit"' in answer and b"SR 1.6 only" in answer
        status, answer = await gateway.send("serviceT", meter, srv="1.6", cv=4, counter=7001)
        assert (status, _code(answer)) == (200, "I0")
