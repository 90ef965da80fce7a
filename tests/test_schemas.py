"""The project's XSD (schemas/) and gateway.schema: what is accepted, what is refused, and
consistency with the official DUIS 5.4 XSD (read from ../shared, never copied)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from gateway.checks import Check, VerificationError
from gateway.namespaces import DIRECTIVE, DS, SR
from gateway.schema import SCHEMA_DIR, DocumentSchemas, compile_xsd, load_schemas
from tests.shared_data import shared_path

XS = "http://www.w3.org/2001/XMLSchema"
USER = "90-B3-D5-1F-30-01-00-00"
DEVICE = "00-DB-12-34-56-78-90-A0"
REQUEST_ID = f"{USER}:{DEVICE}:1002"
MAX_COUNTER = (1 << 64) - 1

CREDIT = "<sr:UpdatePaymentMode><sr:Credit/></sr:UpdatePaymentMode>"
PREPAYMENT = (
    "<sr:UpdatePaymentMode><sr:ExecutionDateTime>2030-01-15T09:00:00Z</sr:ExecutionDateTime>"
    "<sr:Prepayment><sr:SuspendDebtDisabled>true</sr:SuspendDebtDisabled>"
    "<sr:SuspendDebtEmergency>false</sr:SuspendDebtEmergency>"
    "<sr:DisablementThreshold>-5</sr:DisablementThreshold></sr:Prepayment></sr:UpdatePaymentMode>"
)
SIGNED_PRE_COMMAND = "<sr:SignedPreCommand><sr:GBCSPayload>3wkCAAA=</sr:GBCSPayload></sr:SignedPreCommand>"
# Structurally valid XMLDSig with placeholder values: the schemas do not check signatures.
SIGNATURE = (
    "<ds:Signature><ds:SignedInfo>"
    '<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>'
    '<ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"/>'
    '<ds:Reference URI=""><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>'
    "<ds:DigestValue>AAAA</ds:DigestValue></ds:Reference></ds:SignedInfo>"
    "<ds:SignatureValue>AAAA</ds:SignatureValue></ds:Signature>"
)


def request_xml(
    *,
    body: str = CREDIT,
    request_id: str = REQUEST_ID,
    command_variant: str = "4",
    service_reference: str = "1.6",
    variant: str = "1.6",
    header_extra: str = "",
    signature: str = SIGNATURE,
    root_attributes: str = 'schemaVersion="5.4"',
) -> bytes:
    """A small sr:Request written for these tests; each keyword breaks one thing."""
    return (
        f'<sr:Request xmlns:sr="{SR}" xmlns:ds="{DS}" {root_attributes}>'
        f"<sr:Header><sr:RequestID>{request_id}</sr:RequestID>{header_extra}"
        f"<sr:CommandVariant>{command_variant}</sr:CommandVariant>"
        f"<sr:ServiceReference>{service_reference}</sr:ServiceReference>"
        f"<sr:ServiceReferenceVariant>{variant}</sr:ServiceReferenceVariant></sr:Header>"
        f"<sr:Body>{body}</sr:Body>{signature}</sr:Request>"
    ).encode()


RESPONSE_PAYLOAD = (
    "<sr:ResponseMessage><sr:ServiceReference>11.2</sr:ServiceReference>"
    "<sr:ServiceReferenceVariant>11.2</sr:ServiceReferenceVariant>"
    "<sr:GBCSPayload>3QAA</sr:GBCSPayload></sr:ResponseMessage>"
)
AD1 = (
    "<sr:DCCAlertMessage><sr:DCCAlertCode>AD1</sr:DCCAlertCode><sr:DCCAlert><sr:QuarantinedRequest>"
    f"<sr:ADUserThresholdBreach><sr:RequestID>{REQUEST_ID}</sr:RequestID>"
    "<sr:QuarantineEventRef>7</sr:QuarantineEventRef></sr:ADUserThresholdBreach>"
    "</sr:QuarantinedRequest></sr:DCCAlert></sr:DCCAlertMessage>"
)


def response_xml(*, body: str = RESPONSE_PAYLOAD, code: str = "I0", when: str = "2022-08-17T15:45:42.790Z") -> bytes:
    """A small sr:Response written for these tests (unsigned, as the builders emit it)."""
    return (
        f'<sr:Response xmlns:sr="{SR}" schemaVersion="5.4"><sr:Header>'
        f"<sr:RequestID>{REQUEST_ID}</sr:RequestID><sr:ResponseCode>{code}</sr:ResponseCode>"
        f"<sr:ResponseDateTime>{when}</sr:ResponseDateTime></sr:Header>"
        f"<sr:Body>{body}</sr:Body></sr:Response>"
    ).encode()


def root_of(data: bytes) -> etree._Element:
    return etree.fromstring(data)


@pytest.fixture(scope="module")
def schemas() -> DocumentSchemas:
    return load_schemas()


@pytest.fixture(scope="module")
def official_path() -> Path:
    return shared_path("duis", "xsd", "DUIS-Schema-V5.4.xsd")


@pytest.fixture(scope="module")
def official_only(official_path: Path) -> etree.XMLSchema:
    """The official XSD on its own, to compare verdicts with the project's."""
    return compile_xsd(official_path)


@pytest.fixture(scope="module")
def project_only() -> etree.XMLSchema:
    return compile_xsd(SCHEMA_DIR / "dcc-gateway-duis.xsd")


@pytest.fixture(scope="module")
def with_official(official_path: Path) -> DocumentSchemas:
    return load_schemas(official_path)


def invalid_files(validate: Callable[[etree._Element], None], folder: Path) -> list[str]:
    """Names of the files in ``folder`` that ``validate`` refuses, with the reason."""
    failures = []
    for path in sorted(folder.iterdir()):
        try:
            validate(etree.parse(str(path)).getroot())
        except VerificationError as exc:
            failures.append(f"{path.name}: {exc.detail}")
    return failures


# --- the real corpus -----------------------------------------------------------


def test_every_official_template_is_valid_under_the_project_schema(schemas: DocumentSchemas) -> None:
    folder = shared_path("duis", "templates")
    assert len(list(folder.iterdir())) == 297
    assert invalid_files(schemas.validate, folder) == []


def test_every_official_template_is_valid_with_the_official_xsd_layered_on(with_official: DocumentSchemas) -> None:
    assert invalid_files(with_official.validate, shared_path("duis", "templates")) == []


def test_dcc_boxed_signed_responses_are_valid(schemas: DocumentSchemas, with_official: DocumentSchemas) -> None:
    folder = shared_path("duis", "signed")
    assert invalid_files(schemas.validate, folder) == []
    assert invalid_files(with_official.validate, folder) == []


# --- what the project schema accepts ---------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(request_xml(), id="credit"),
        pytest.param(request_xml(body=PREPAYMENT), id="prepayment-future-dated"),
        pytest.param(request_xml(body=SIGNED_PRE_COMMAND, command_variant="5"), id="signed-pre-command"),
        pytest.param(request_xml(body="<sr:ReadInventory><sr:Anything/></sr:ReadInventory>"), id="other-body-lax"),
        pytest.param(
            request_xml(
                header_extra="<sr:FirstInSequence>true</sr:FirstInSequence>"
                f"<sr:PrecedingServiceRequestID>{USER}:{DEVICE}:1</sr:PrecedingServiceRequestID>"
            ),
            id="sequenced-header",
        ),
        pytest.param(request_xml(request_id=f"{USER.lower()}:{DEVICE}:{MAX_COUNTER}"), id="lowercase-hex-max-counter"),
        pytest.param(
            request_xml(body="<sr:SignedPreCommand><sr:GBCSPayload>3wkC\n AAA=</sr:GBCSPayload></sr:SignedPreCommand>"),
            id="line-wrapped-base64",
        ),
    ],
)
def test_accepts(schemas: DocumentSchemas, data: bytes) -> None:
    schemas.validate(root_of(data))


# --- what it refuses, and with which check ------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(request_xml(signature=""), id="no-signature"),
        pytest.param(request_xml(signature=SIGNATURE * 2), id="two-signatures"),
        pytest.param(request_xml(signature='<x:Signature xmlns:x="urn:x"/>'), id="signature-in-other-namespace"),
        pytest.param(request_xml(body=""), id="empty-body"),
        pytest.param(request_xml(body=CREDIT * 2), id="two-bodies"),
        pytest.param(request_xml(body='<x:UpdatePaymentMode xmlns:x="urn:x"/>'), id="body-in-other-namespace"),
        pytest.param(request_xml(body="<sr:UpdatePaymentMode/>"), id="payment-mode-empty"),
        pytest.param(
            request_xml(body="<sr:UpdatePaymentMode><sr:Credit/><sr:Credit/></sr:UpdatePaymentMode>"),
            id="payment-mode-twice",
        ),
        pytest.param(
            request_xml(body=PREPAYMENT.replace("<sr:DisablementThreshold>-5</sr:DisablementThreshold>", "")),
            id="prepayment-missing-threshold",
        ),
        pytest.param(request_xml(body=PREPAYMENT.replace("-5", "x")), id="prepayment-threshold-not-int"),
        pytest.param(
            request_xml(body=CREDIT.replace("<sr:Credit/>", "<sr:Credit>x</sr:Credit>")), id="credit-not-empty"
        ),
        pytest.param(request_xml(body=SIGNED_PRE_COMMAND.replace("3wkCAAA=", "!!")), id="base64-outside-alphabet"),
        pytest.param(request_xml(body=SIGNED_PRE_COMMAND.replace("3wkCAAA=", "")), id="gbcs-payload-empty"),
        pytest.param(
            request_xml(body="<sr:Other><sr:UpdatePaymentMode/></sr:Other>"), id="declared-body-nested-in-lax-body"
        ),
        pytest.param(request_xml(command_variant="9"), id="command-variant-9"),
        pytest.param(request_xml(command_variant="0"), id="command-variant-0"),
        pytest.param(request_xml(request_id=f"{USER}:{DEVICE}:{MAX_COUNTER + 1}"), id="counter-above-uint64"),
        pytest.param(request_xml(request_id=f"{USER}:{DEVICE}:01"), id="counter-leading-zero"),
        pytest.param(request_xml(request_id=f"{USER[:-3]}:{DEVICE}:1"), id="short-eui64"),
        pytest.param(request_xml(service_reference="1.6.1"), id="service-reference-shape"),
        pytest.param(request_xml(root_attributes=""), id="no-schema-version"),
        pytest.param(request_xml(root_attributes='schemaVersion="5.4" role="SC"'), id="extra-attribute"),
        pytest.param(request_xml(header_extra="<sr:Role>SC</sr:Role>"), id="extra-header-field"),
    ],
)
def test_refuses_with_schema_check(schemas: DocumentSchemas, data: bytes) -> None:
    with pytest.raises(VerificationError) as caught:
        schemas.validate(root_of(data))
    assert caught.value.check is Check.SCHEMA


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(response_xml(), id="device-result"),
        pytest.param(response_xml(body=AD1), id="dcc-alert-ad1"),
        pytest.param(response_xml(body=RESPONSE_PAYLOAD.replace("GBCSPayload", "DSPScheduleID")), id="other-payload"),
    ],
)
def test_accepts_responses(schemas: DocumentSchemas, data: bytes) -> None:
    schemas.validate(root_of(data))


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(response_xml(body=""), id="empty-body"),
        pytest.param(
            response_xml(
                body=RESPONSE_PAYLOAD.replace(
                    "</sr:ResponseMessage>", "<sr:GBCSPayload>3QAA</sr:GBCSPayload></sr:ResponseMessage>"
                )
            ),
            id="two-payloads",
        ),
        pytest.param(response_xml(body=RESPONSE_PAYLOAD.replace("3QAA", "!!")), id="payload-not-base64"),
        pytest.param(
            response_xml(
                body=RESPONSE_PAYLOAD.replace(
                    "<sr:GBCSPayload>3QAA</sr:GBCSPayload>",
                    "<sr:PreCommand><sr:GBCSPayload>3QAA</sr:GBCSPayload></sr:PreCommand>",
                )
            ),
            id="pre-command-without-version",
        ),
        pytest.param(
            response_xml(body=AD1.replace("<sr:QuarantineEventRef>7</sr:QuarantineEventRef>", "")),
            id="quarantine-without-event-ref",
        ),
        pytest.param(response_xml(body=AD1.replace("AD1", "AD2")), id="unknown-dcc-alert-code"),
        pytest.param(response_xml(code="X1"), id="response-code-shape"),
        pytest.param(response_xml(when="17/08/2022"), id="response-time-not-datetime"),
    ],
)
def test_refuses_responses_with_schema_check(schemas: DocumentSchemas, data: bytes) -> None:
    with pytest.raises(VerificationError) as caught:
        schemas.validate(root_of(data))
    assert caught.value.check is Check.SCHEMA


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(
            CREDIT.replace("<sr:UpdatePaymentMode>", f'<sr:UpdatePaymentMode xmlns:sr="{SR}">').encode(),
            id="global-body-element-as-root",
        ),
        pytest.param(
            f'<sr:SMETS1SignedResponse xmlns:sr="{SR}" schemaVersion="5.4"/>'.encode(),
            id="official-root-the-gateway-does-not-take",
        ),
        pytest.param(f'<d:Command xmlns:d="{DIRECTIVE}" name="x"/>'.encode(), id="directive-part-as-root"),
        pytest.param(b'<x:Request xmlns:x="urn:unknown"/>', id="namespace-without-schema"),
        pytest.param(b"<Request/>", id="no-namespace"),
    ],
)
def test_refuses_unknown_roots_as_document_type(schemas: DocumentSchemas, data: bytes) -> None:
    with pytest.raises(VerificationError) as caught:
        schemas.validate(root_of(data))
    assert caught.value.check is Check.DOCUMENT_TYPE


def test_error_detail_names_line_and_element_with_prefix(schemas: DocumentSchemas) -> None:
    data = request_xml(body="<sr:UpdatePaymentMode>\n<sr:Debit/></sr:UpdatePaymentMode>")
    with pytest.raises(VerificationError) as caught:
        schemas.validate(root_of(data))
    assert caught.value.detail.startswith("line 2: Element 'sr:Debit'")
    assert "{" not in caught.value.detail


def test_official_xsd_adds_its_enumerations(schemas: DocumentSchemas, with_official: DocumentSchemas) -> None:
    """Our patterns check shape only; configured, the official XSD refuses unknown references."""
    unknown = root_of(request_xml(service_reference="99.9", variant="99.9"))
    schemas.validate(unknown)
    with pytest.raises(VerificationError) as caught:
        with_official.validate(unknown)
    assert caught.value.check is Check.SCHEMA


def test_dispatch_knows_duis_and_directives(schemas: DocumentSchemas) -> None:
    assert schemas.namespaces == frozenset({SR, DIRECTIVE})


def test_an_empty_directive_is_schema_invalid(schemas: DocumentSchemas) -> None:
    with pytest.raises(VerificationError) as caught:
        schemas.validate(root_of(f'<d:Directive xmlns:d="{DIRECTIVE}"/>'.encode()))
    assert caught.value.check is Check.SCHEMA and "DirectiveID" in caught.value.detail


def test_unreadable_official_xsd_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot compile XML schema"):
        load_schemas(tmp_path / "missing.xsd")


# --- consistency with the official XSD ------------------------------------------------


def official_enumeration(official_path: Path, type_name: str) -> list[str]:
    tree = etree.parse(str(official_path))
    values = tree.xpath(f"//xs:simpleType[@name='{type_name}']//xs:enumeration/@value", namespaces={"xs": XS})
    assert isinstance(values, list)
    return [str(value) for value in values]


@pytest.mark.parametrize("field", ["ServiceReference", "ServiceReferenceVariant"])
def test_reference_patterns_accept_every_official_value(
    schemas: DocumentSchemas, official_path: Path, field: str
) -> None:
    values = official_enumeration(official_path, field)
    keyword = "service_reference" if field == "ServiceReference" else "variant"
    assert values
    refused = []
    for value in values:
        try:
            schemas.validate(root_of(request_xml(**{keyword: value})))
        except VerificationError:
            refused.append(value)
    assert refused == []


def counter_verdict(schema: etree.XMLSchema, counter: str) -> bool:
    return bool(schema.validate(root_of(request_xml(request_id=f"{USER}:{DEVICE}:{counter}"))))


@pytest.mark.parametrize(
    "counter",
    [
        "0",
        "1",
        "9" * 19,
        "1" + "0" * 19,
        str(MAX_COUNTER - 1),
        str(MAX_COUNTER),
        str(MAX_COUNTER + 1),
        "18446744073709551619",
        "18446744073709552615",
        "99999999999999999999",
        "1" + "0" * 20,
        "00",
        "01",
        "-1",
    ],
)
def test_request_id_counter_agrees_with_official_at_the_boundaries(
    project_only: etree.XMLSchema, official_only: etree.XMLSchema, counter: str
) -> None:
    assert counter_verdict(project_only, counter) == counter_verdict(official_only, counter)


@given(st.integers(min_value=0, max_value=10**21))
def test_request_id_counter_agrees_with_official(
    project_only: etree.XMLSchema, official_only: etree.XMLSchema, value: int
) -> None:
    verdict = counter_verdict(project_only, str(value))
    assert verdict == (value <= MAX_COUNTER)
    assert verdict == counter_verdict(official_only, str(value))
