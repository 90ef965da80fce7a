"""Response codes (gateway.codes) and unsigned response documents (gateway.respond.documents).

Every builder's output must validate against the project schema and the official
DUIS 5.4 XSD (skipped when ../shared is absent), and read back to the values
that went in.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

import gateway
from gateway.checks import VerificationError
from gateway.codes import ResponseCode, gateway_codes
from gateway.eui64 import Eui64
from gateway.namespaces import SR
from gateway.respond import documents
from gateway.respond.documents import PreCommand, QuarantineBreach
from gateway.schema import DocumentSchemas, load_schemas
from tests.shared_data import shared_path

XS = "http://www.w3.org/2001/XMLSchema"
NS = {"sr": SR}
USER = "90-B3-D5-1F-30-01-00-00"
DEVICE = "00-DB-12-34-56-78-90-A0"
DCC = "90-B3-D5-1F-30-00-00-02"
REQUEST_ID = f"{USER}:{DEVICE}:1660751141087"
RESPONSE_ID = f"{DEVICE}:{USER}:1660751141087"
AT = dt.datetime(2022, 8, 17, 15, 45, 42, 790000, tzinfo=dt.UTC)
SPEC_CODES = ["I0", "I99", "E1", "E2", "E3", "E4", "E11", "E12", "E13", "E19", "E20", "E21", "E40", "E41", "E42", "E43"]
CODE_TABLE = Path(gateway.__file__).parent / "data" / "response_codes.json"


@pytest.fixture(scope="module")
def schemas() -> DocumentSchemas:
    return load_schemas()


@pytest.fixture(scope="module")
def official_path() -> Path:
    return shared_path("duis", "xsd", "DUIS-Schema-V5.4.xsd")


@pytest.fixture(scope="module")
def with_official(official_path: Path) -> DocumentSchemas:
    return load_schemas(official_path)


def elements(root: etree._Element, path: str) -> list[etree._Element]:
    """The elements at ``path`` (sr-prefixed XPath from ``root``)."""
    found = root.xpath(path, namespaces=NS)
    assert isinstance(found, list)
    return [item for item in found if isinstance(item, etree._Element)]


def text(root: etree._Element, path: str) -> str:
    """The text of the one element at ``path``."""
    found = elements(root, path)
    assert len(found) == 1, path
    return found[0].text or ""


def reparse(root: etree._Element) -> etree._Element:
    """What a receiver sees: the serialised bytes, parsed again."""
    return etree.fromstring(documents.to_bytes(root))


def message(**changes: Any) -> etree._Element:
    """``response_message`` for the CV 4 request REQUEST_ID, with ``changes`` applied."""
    fields: dict[str, Any] = {
        "request_id": REQUEST_ID,
        "response_id": RESPONSE_ID,
        "code": ResponseCode.I0,
        "at": AT,
        "service_reference": "1.6",
        "service_reference_variant": "1.6",
    }
    return documents.response_message(**(fields | changes))


def error(**changes: Any) -> etree._Element:
    """``error_response`` to REQUEST_ID (E4 unless changed)."""
    fields: dict[str, Any] = {
        "request_id": REQUEST_ID,
        "code": ResponseCode.E4,
        "at": AT,
        "service_reference": "1.6",
        "service_reference_variant": "1.6",
    }
    return documents.error_response(**(fields | changes))


def quarantine_alert(**changes: Any) -> etree._Element:
    """AD1 from the DCC to USER about REQUEST_ID."""
    fields: dict[str, Any] = {
        "response_id": f"{DCC}:{USER}:7",
        "request_id": REQUEST_ID,
        "quarantine_event_ref": 4242,
        "at": AT,
    }
    return documents.dcc_alert_quarantined(**(fields | changes))


def alert(**changes: Any) -> etree._Element:
    """A device alert from DEVICE to USER."""
    fields: dict[str, Any] = {
        "response_id": f"{DEVICE}:{USER}:9",
        "alert_code": 0x8F84,
        "gbcs_payload": b"\xdd\x01",
        "at": AT,
    }
    return documents.device_alert(**(fields | changes))


# --- response codes: one data file, one enum ----------------------------------------


def table_rows() -> list[dict[str, Any]]:
    rows = json.loads(CODE_TABLE.read_text(encoding="utf-8"))["codes"]
    assert isinstance(rows, list)
    return rows


def test_enum_and_data_file_agree() -> None:
    rows = table_rows()
    assert [code.value for code in ResponseCode] == [row["code"] for row in rows]
    for row, code in zip(rows, ResponseCode, strict=True):
        assert code.name == row["code"]
        assert code.meaning == row["meaning"]
        assert code.is_success == (row["outcome"] == "success")
        assert code.info.gateway_use == row["gateway_use"]


def test_the_spec_table_is_exactly_the_codes_the_gateway_uses() -> None:
    assert [code.value for code in gateway_codes()] == SPEC_CODES


def test_only_i_codes_are_success() -> None:
    assert {code.value for code in ResponseCode if code.is_success} == {"I0", "I99"}


def test_e40_to_e43_are_marked_as_this_projects_convention() -> None:
    conventions = {code.value for code in ResponseCode if code.info.origin == "project-convention"}
    assert conventions == {"E40", "E41", "E42", "E43"}


def test_codes_are_immutable_and_looked_up_by_value() -> None:
    assert ResponseCode("E43") is ResponseCode.E43
    assert str(ResponseCode.E4) == "E4"
    with pytest.raises(AttributeError):
        ResponseCode.E4.meaning = "changed"  # type: ignore[misc]
    with pytest.raises(ValueError):
        ResponseCode("E9999")


def test_official_response_code_type_accepts_every_code(official_path: Path) -> None:
    tree = etree.parse(str(official_path))
    found = tree.xpath("//xs:simpleType[@name='ResponseCode']//xs:enumeration/@value", namespaces={"xs": XS})
    assert isinstance(found, list)
    allowed = {str(value) for value in found}
    assert {code.value for code in ResponseCode} <= allowed


def test_project_schema_accepts_every_code(schemas: DocumentSchemas) -> None:
    for code in ResponseCode:
        schemas.validate(message(code=code))


@pytest.mark.parametrize("code", list(ResponseCode), ids=str)
def test_official_xsd_accepts_every_code_in_a_response(with_official: DocumentSchemas, code: ResponseCode) -> None:
    with_official.validate(message(code=code))


# --- every builder validates under both schemas ----------------------------------------


BUILDERS: list[Any] = [
    pytest.param(lambda: message(pre_command=PreCommand("4.0", b"\xdf\x09\x01")), id="cv4-pre-command"),
    pytest.param(
        lambda: message(service_reference="11.2", service_reference_variant="11.2", gbcs_payload=b"\xdd\x00\x01"),
        id="device-result",
    ),
    pytest.param(lambda: message(code=ResponseCode.I99), id="acknowledgement"),
    pytest.param(lambda: error(code=ResponseCode.E43), id="error"),
    pytest.param(lambda: quarantine_alert(quarantine_event_ref=10**20 - 1), id="dcc-alert-ad1"),
    pytest.param(alert, id="device-alert"),
]


@pytest.mark.parametrize("build", BUILDERS)
def test_builder_output_is_valid_under_the_project_schema(
    schemas: DocumentSchemas, build: Callable[[], etree._Element]
) -> None:
    root = build()
    schemas.validate(root)
    schemas.validate(reparse(root))


@pytest.mark.parametrize("build", BUILDERS)
def test_builder_output_is_valid_under_the_official_xsd(
    with_official: DocumentSchemas, build: Callable[[], etree._Element]
) -> None:
    with_official.validate(reparse(build()))


@pytest.mark.parametrize("breach", list(QuarantineBreach), ids=lambda breach: breach.name)
def test_every_quarantine_breach_kind_is_valid(with_official: DocumentSchemas, breach: QuarantineBreach) -> None:
    root = quarantine_alert(breach=breach)
    with_official.validate(root)
    assert text(root, f"sr:Body/sr:DCCAlertMessage/sr:DCCAlert/sr:QuarantinedRequest/sr:{breach.value}/sr:RequestID")


# --- field values round-trip ---------------------------------------------------------


def test_response_message_round_trips() -> None:
    root = reparse(message(pre_command=PreCommand("4.0", b"\xdf\x09\x01\x02")))
    assert root.tag == f"{{{SR}}}Response" and root.get("schemaVersion") == "5.4"
    assert root.prefix == "sr"
    assert text(root, "sr:Header/sr:RequestID") == REQUEST_ID
    assert text(root, "sr:Header/sr:ResponseID") == RESPONSE_ID
    assert text(root, "sr:Header/sr:ResponseCode") == "I0"
    assert dt.datetime.fromisoformat(text(root, "sr:Header/sr:ResponseDateTime")) == AT
    assert text(root, "sr:Body/sr:ResponseMessage/sr:ServiceReference") == "1.6"
    assert text(root, "sr:Body/sr:ResponseMessage/sr:ServiceReferenceVariant") == "1.6"
    assert text(root, "sr:Body/sr:ResponseMessage/sr:PreCommand/sr:GBCSVersion") == "4.0"
    payload = text(root, "sr:Body/sr:ResponseMessage/sr:PreCommand/sr:GBCSPayload")
    assert base64.b64decode(payload) == b"\xdf\x09\x01\x02"


def test_request_id_is_optional() -> None:
    root = message(request_id=None, response_id=None)
    assert elements(root, "sr:Header/*")[0].tag == f"{{{SR}}}ResponseCode"


def test_error_response_echoes_the_request_and_carries_no_payload() -> None:
    root = reparse(error())
    assert text(root, "sr:Header/sr:RequestID") == REQUEST_ID
    assert text(root, "sr:Header/sr:ResponseID") == RESPONSE_ID
    assert text(root, "sr:Header/sr:ResponseCode") == "E4"
    (message,) = elements(root, "sr:Body/sr:ResponseMessage")
    assert [etree.QName(child).localname for child in message] == ["ServiceReference", "ServiceReferenceVariant"]


def test_dcc_alert_round_trips() -> None:
    root = reparse(quarantine_alert())
    assert elements(root, "sr:Header/sr:RequestID") == []
    assert text(root, "sr:Header/sr:ResponseID") == f"{DCC}:{USER}:7"
    assert text(root, "sr:Header/sr:ResponseCode") == "I0"
    assert text(root, "sr:Body/sr:DCCAlertMessage/sr:DCCAlertCode") == "AD1"
    breach = "sr:Body/sr:DCCAlertMessage/sr:DCCAlert/sr:QuarantinedRequest/sr:ADUserThresholdBreach"
    assert text(root, f"{breach}/sr:RequestID") == REQUEST_ID
    assert text(root, f"{breach}/sr:QuarantineEventRef") == "4242"


def test_device_alert_round_trips() -> None:
    root = reparse(alert())
    assert elements(root, "sr:Header/sr:RequestID") == []
    assert text(root, "sr:Header/sr:ResponseID") == f"{DEVICE}:{USER}:9"
    assert text(root, "sr:Body/sr:DeviceAlertMessage/sr:AlertCode") == "8F84"
    assert base64.b64decode(text(root, "sr:Body/sr:DeviceAlertMessage/sr:GBCSPayload")) == b"\xdd\x01"


def test_matches_a_dcc_boxed_response_field_for_field() -> None:
    """Rebuilt from its own values, a real DCC Boxed response has the same Header and Body."""
    boxed = etree.parse(str(shared_path("duis", "signed", "readfw-response-boxed-signed.xml"))).getroot()
    ours = documents.response_message(
        request_id=text(boxed, "sr:Header/sr:RequestID"),
        response_id=response_id_of(boxed),
        code=ResponseCode(text(boxed, "sr:Header/sr:ResponseCode")),
        at=dt.datetime.fromisoformat(text(boxed, "sr:Header/sr:ResponseDateTime")),
        service_reference=text(boxed, "sr:Body/sr:ResponseMessage/sr:ServiceReference"),
        service_reference_variant=text(boxed, "sr:Body/sr:ResponseMessage/sr:ServiceReferenceVariant"),
        gbcs_payload=base64.b64decode(text(boxed, "sr:Body/sr:ResponseMessage/sr:GBCSPayload")),
    )
    for part in ("sr:Header", "sr:Body"):
        assert canonical(ours, part) == canonical(boxed, part)


def response_id_of(boxed: etree._Element) -> str:
    """DCC Boxed's ResponseID, which must be what response_id_for derives."""
    response_id = text(boxed, "sr:Header/sr:ResponseID")
    assert documents.response_id_for(text(boxed, "sr:Header/sr:RequestID")) == response_id
    return response_id


def canonical(root: etree._Element, path: str) -> bytes:
    (element,) = elements(root, path)
    return etree.tostring(element, method="c14n", exclusive=True)


@given(
    originator=st.integers(min_value=0, max_value=(1 << 64) - 1),
    target=st.integers(min_value=0, max_value=(1 << 64) - 1),
    counter=st.integers(min_value=0, max_value=(1 << 64) - 1),
    payload=st.binary(min_size=1, max_size=300),
    at=st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2999, 12, 31), timezones=st.just(dt.UTC)),
)
def test_any_ids_payload_and_time_stay_valid_and_round_trip(
    with_official: DocumentSchemas, originator: int, target: int, counter: int, payload: bytes, at: dt.datetime
) -> None:
    request_id = documents.message_id(Eui64(originator), Eui64(target), counter)
    response_id = documents.response_id_for(request_id)
    root = reparse(message(request_id=request_id, response_id=response_id, at=at, gbcs_payload=payload))
    with_official.validate(root)
    assert text(root, "sr:Header/sr:ResponseID") == f"{Eui64(target)}:{Eui64(originator)}:{counter}"
    assert base64.b64decode(text(root, "sr:Body/sr:ResponseMessage/sr:GBCSPayload")) == payload
    written = dt.datetime.fromisoformat(text(root, "sr:Header/sr:ResponseDateTime"))
    assert written == at.replace(microsecond=at.microsecond // 1000 * 1000)


# --- identifiers, times, bytes ------------------------------------------------------------


def test_response_id_swaps_originator_and_target() -> None:
    assert documents.response_id_for(REQUEST_ID) == RESPONSE_ID


def test_response_id_is_written_as_duis_writes_eui64() -> None:
    assert documents.response_id_for(f"{USER.lower()}:{DEVICE.lower()}:5") == f"{DEVICE}:{USER}:5"


@pytest.mark.parametrize(
    "request_id",
    [
        pytest.param(f"{USER}:{DEVICE}", id="no-counter"),
        pytest.param(f"{USER}:{DEVICE}:-1", id="negative-counter"),
        pytest.param(f"{USER}:{DEVICE}:01", id="leading-zero"),
        pytest.param(f"{USER}:{DEVICE}:{1 << 64}", id="counter-above-uint64"),
        pytest.param(f"90B3D51F30010000:{DEVICE}:1", id="compact-eui64"),
        pytest.param(f"{USER}:{DEVICE}:1:2", id="four-parts"),
    ],
)
def test_malformed_ids_are_refused(request_id: str) -> None:
    with pytest.raises(ValueError):
        documents.response_id_for(request_id)
    with pytest.raises(ValueError):
        error(request_id=request_id)


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        pytest.param(AT, "2022-08-17T15:45:42.790Z", id="dcc-boxed-example"),
        pytest.param(AT.replace(microsecond=790999), "2022-08-17T15:45:42.790Z", id="truncates-to-ms"),
        pytest.param(AT.replace(microsecond=0), "2022-08-17T15:45:42.000Z", id="always-three-digits"),
        pytest.param(
            dt.datetime(2022, 8, 17, 16, 45, 42, 790000, tzinfo=dt.timezone(dt.timedelta(hours=1))),
            "2022-08-17T15:45:42.790Z",
            id="converted-to-utc",
        ),
    ],
)
def test_response_datetime_format(at: dt.datetime, expected: str) -> None:
    assert documents.format_response_datetime(at) == expected


def test_response_datetime_matches_dcc_boxed() -> None:
    boxed = etree.parse(str(shared_path("duis", "signed", "readfw-response-boxed-signed.xml"))).getroot()
    written = text(boxed, "sr:Header/sr:ResponseDateTime")
    assert documents.format_response_datetime(dt.datetime.fromisoformat(written)) == written


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        documents.format_response_datetime(dt.datetime(2022, 8, 17, 15, 45, 42))


def test_to_bytes_is_utf8_with_declaration() -> None:
    data = documents.to_bytes(error())
    assert data.startswith(b"<?xml version='1.0' encoding='UTF-8'?>\n<sr:Response ")
    assert etree.fromstring(data).tag == f"{{{SR}}}Response"


# --- misuse is refused early -------------------------------------------------------------


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda: error(code=ResponseCode.I99), id="error-with-success-code"),
        pytest.param(lambda: message(pre_command=PreCommand("4.0", b"\x01"), gbcs_payload=b"\x01"), id="two-payloads"),
        pytest.param(lambda: message(gbcs_payload=b""), id="empty-payload"),
        pytest.param(lambda: message(response_id="not-an-id"), id="response-id-malformed"),
        pytest.param(lambda: message(request_id=f"{USER}:{DEVICE}:{1 << 64}"), id="request-counter-over-uint64"),
        pytest.param(lambda: alert(alert_code=0x10000), id="alert-code-over-two-bytes"),
        pytest.param(lambda: alert(at=AT.replace(tzinfo=None)), id="naive-time"),
        pytest.param(lambda: quarantine_alert(quarantine_event_ref=10**20), id="event-ref-over-20-digits"),
        pytest.param(lambda: quarantine_alert(quarantine_event_ref=-1), id="event-ref-negative"),
        pytest.param(lambda: quarantine_alert(request_id="not-an-id"), id="quarantined-request-id-malformed"),
        pytest.param(lambda: documents.message_id(Eui64(1), Eui64(2), 1 << 64), id="counter-over-uint64"),
    ],
)
def test_misuse_raises_value_error(build: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        build()


def test_schema_errors_are_verification_errors_not_value_errors(schemas: DocumentSchemas) -> None:
    """A tree edited after building is caught by validation, as the gateway would catch it."""
    root = error()
    (body,) = elements(root, "sr:Body")
    body.clear()
    with pytest.raises(VerificationError):
        schemas.validate(root)
