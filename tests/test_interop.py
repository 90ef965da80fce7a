"""Interop with the real DUIS world: templates, DCC Boxed keys and signatures, xmlsec1, signxml.

Third-party data is read from ``../shared`` (``DCC_SHARED_DIR``) and never
copied; every test here skips with the reason when it or xmlsec1 is absent.

1. Each of the 297 DUIS templates, re-signed by the project, verifies in the
   project, in xmlsec1 and in signxml (strict configuration).
2. Templates signed by ``xmlsec1 --sign`` with the ZAZ1 xmlSign key verify in
   the project.
3. The DCC Boxed–signed responses verify through ``dcc-gateway verify``;
   tampered copies fail with the right check.
4. What the project emits is valid under the official DUIS 5.4 XSD.
5. Content tampering the project rejects, xmlsec1 rejects too.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
from cryptography import x509
from lxml import etree

from gateway.cli import main
from gateway.clock import FixedClock
from gateway.codes import ResponseCode
from gateway.eui64 import Eui64
from gateway.namespaces import SR
from gateway.schema import DocumentSchemas, compile_xsd, load_schemas
from gateway.signing import EnvelopedSigner, SigningKey, sign_bytes, sign_tree, to_bytes
from gateway.smki.names import NameKey
from gateway.smki.repository import SmkiRepository
from gateway.verify.verifier import Verifier
from pki import RemotePartyRole, TestSmkiCa
from tests import factories
from tests.interop_tools import (
    KeystoreEntry,
    TrustChain,
    Verdict,
    Xmlsec1,
    key_info_names,
    load_keystore,
    pem,
    project_verdict,
    request_originator,
    response_date_time,
    signxml_sign,
    signxml_verdict,
    xml_sign_entries,
    xmlsec1_sign_template,
)
from tests.shared_data import require_xmlsec1, shared_dir, shared_path

pytestmark = pytest.mark.interop

UTC = dt.UTC
DSP = "90-B3-D5-1F-30-00-00-02"
ZAZ1_SUPPLIER = Eui64.parse("90-B3-D5-1F-30-01-00-00")
SR_1_6_TEMPLATES = 12
XMLSEC1_WORKERS = 4
"""xmlsec1 runs are I/O-bound subprocesses; 4 keep 2 cores busy."""


def _template_names() -> list[str]:
    folder = shared_dir() / "duis" / "templates"
    names = sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []
    return names or ["(duis/templates absent)"]


def _signed_response_names() -> list[str]:
    folder = shared_dir() / "duis" / "signed"
    names = sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []
    return names or ["(duis/signed absent)"]


def _xmlsec1_signing_sample() -> list[str]:
    """All SR 1.6 templates plus every 12th other template of the ZAZ1 supplier (90-B3-D5-1F-30-01-00-00)."""
    folder = shared_dir() / "duis" / "templates"
    if not folder.is_dir():
        return ["(duis/templates absent)"]
    supplier = re.compile(rb"<sr:RequestID>90-B3-D5-1F-30-01-00-00:")
    own = [
        name
        for name in _template_names()
        if supplier.search((folder / name).read_bytes())
    ]
    sr_1_6 = [name for name in own if "_1.6_" in name]
    others = [name for name in own if name not in sr_1_6]
    return sr_1_6 + others[::12]


TEMPLATE_NAMES = _template_names()
SIGNED_RESPONSES = _signed_response_names()
XMLSEC1_SIGNED_SAMPLE = _xmlsec1_signing_sample()


# --- shared fixtures ----------------------------------------------------------------


@pytest.fixture(scope="module")
def interop_ca() -> TestSmkiCa:
    return factories.make_ca(b"interop")


@pytest.fixture(scope="module")
def keystore() -> list[KeystoreEntry]:
    return load_keystore(shared_path("zaz1", "keystore.json"))


@pytest.fixture(scope="module")
def official_xsd_path() -> Path:
    return shared_path("duis", "xsd", "DUIS-Schema-V5.4.xsd")


@pytest.fixture(scope="module")
def official_xsd(official_xsd_path: Path) -> etree.XMLSchema:
    """The official schema alone (not layered on the project's)."""
    return compile_xsd(official_xsd_path)


@pytest.fixture(scope="module")
def gateway_schemas(official_xsd_path: Path) -> DocumentSchemas:
    """What a gateway configured with ``duis_xsd`` validates with: project schema, then official."""
    return load_schemas(official_xsd_path)


@pytest.fixture(scope="module")
def xmlsec1() -> Xmlsec1:
    return Xmlsec1(require_xmlsec1())


def _assert_official_valid(schema: etree.XMLSchema, document: bytes) -> None:
    root = etree.fromstring(document)
    if not schema.validate(root):
        pytest.fail(
            f"not valid under the official DUIS 5.4 XSD: {schema.error_log.last_error}"
        )


# --- 1. every template, re-signed by the project -----------------------------------


@dataclass(frozen=True)
class Resigned:
    """A template signed by the project, and how the three verifiers must trust its signer."""

    signed: bytes
    certificate: x509.Certificate
    trust: TrustChain
    signer_source: str
    """``zaz1:<keystore name>`` or ``test-ca``."""


@dataclass(frozen=True)
class ResignedSet:
    documents: dict[str, Resigned]
    repository: SmkiRepository


@pytest.fixture(scope="module")
def resigned(interop_ca: TestSmkiCa, keystore: list[KeystoreEntry]) -> ResignedSet:
    """Signs each template with its originator's ZAZ1 xmlSign key, or a test-CA key for that EUI-64."""
    folder = shared_path("duis", "templates")
    zaz1 = xml_sign_entries(keystore)
    repository = factories.repository_with(interop_ca)
    documents: dict[str, Resigned] = {}
    for path in sorted(folder.iterdir()):
        template = path.read_bytes()
        originator = request_originator(template)
        entry = zaz1.get(originator)
        if entry is not None:
            key = entry.signing_key()
            trust = TrustChain(entry.certificate_pem)
            source = f"zaz1:{entry.name}"
        else:
            key = factories.signing_key(
                factories.issue_xml_sign(interop_ca, originator)
            )
            trust = TrustChain(
                pem(key.certificate),
                root_pem=interop_ca.root.cert_pem(),
                intermediates=(interop_ca.org.cert_pem(),),
                at=factories.NOW,
            )
            source = "test-ca"
        repository.add_certificate(key.certificate)
        signed = sign_bytes(template, key)  # replaces the template's placeholder signature
        documents[path.name] = Resigned(signed, key.certificate, trust, source)
    return ResignedSet(documents, repository)


def test_sign_bytes_replaces_a_placeholder_signature(supplier_key: SigningKey) -> None:
    """Every DUIS template carries a placeholder ds:Signature; signing must replace it, leaving one."""
    template = shared_path(
        "duis", "templates", "ECS02_1.6_IMMEDIATE_SINGLE_SUCCESS_REQUEST_DUIS.XML"
    ).read_bytes()
    signed = sign_bytes(template, supplier_key)
    assert signed.count(b"Signature>") == 2  # one start tag, one end tag
    assert b"ZGVmYXVsdA==" not in signed


@pytest.fixture(scope="module")
def resigned_verifier(
    resigned: ResignedSet, gateway_schemas: DocumentSchemas
) -> Verifier:
    return Verifier(
        resigned.repository, FixedClock(factories.NOW), schemas=gateway_schemas
    )


@pytest.fixture(scope="module")
def xmlsec1_on_resigned(resigned: ResignedSet, xmlsec1: Xmlsec1) -> dict[str, Verdict]:
    """xmlsec1's verdict on every re-signed template, run in a small thread pool."""
    names = sorted(resigned.documents)

    def run(name: str) -> Verdict:
        document = resigned.documents[name]
        return xmlsec1.verify(document.signed, document.trust)

    with ThreadPoolExecutor(max_workers=XMLSEC1_WORKERS) as pool:
        return dict(zip(names, pool.map(run, names), strict=True))


def _resigned(resigned: ResignedSet, name: str) -> Resigned:
    if name not in resigned.documents:
        pytest.skip(f"no template {name}")
    return resigned.documents[name]


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_resigned_template_verifies_in_project(
    name: str, resigned: ResignedSet, resigned_verifier: Verifier
) -> None:
    document = _resigned(resigned, name)
    verdict = project_verdict(resigned_verifier, document.signed)
    assert verdict.accepted, verdict.reason
    assert verdict.reason == f"ok: signed by {request_originator(document.signed)}"


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_resigned_template_verifies_in_xmlsec1(
    name: str, resigned: ResignedSet, xmlsec1_on_resigned: dict[str, Verdict]
) -> None:
    _resigned(resigned, name)
    verdict = xmlsec1_on_resigned[name]
    assert verdict.accepted, verdict.reason


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_resigned_template_verifies_in_signxml(
    name: str, resigned: ResignedSet
) -> None:
    document = _resigned(resigned, name)
    verdict = signxml_verdict(document.signed, document.certificate, at=factories.NOW)
    assert verdict.accepted, verdict.reason


def test_resigned_templates_mostly_use_the_zaz1_keys(resigned: ResignedSet) -> None:
    """Guards the set-up: 291 templates are signed with real DCC Boxed xmlSign keys, the rest by the test CA."""
    sources: dict[str, int] = {}
    for document in resigned.documents.values():
        sources[document.signer_source] = sources.get(document.signer_source, 0) + 1
    assert len(resigned.documents) == 297
    assert sources == {
        "zaz1:xml-sign-90B3D51F30010000-ds": 271,
        "zaz1:xml-sign-90B3D51F30020000-ds": 20,
        "test-ca": 6,
    }


def test_resigned_templates_are_valid_under_the_official_xsd_alone(
    resigned: ResignedSet, official_xsd: etree.XMLSchema
) -> None:
    for name, document in resigned.documents.items():
        assert official_xsd.validate(etree.fromstring(document.signed)), (
            name,
            official_xsd.error_log.last_error,
        )


def test_xmlsec1_finds_the_key_by_issuer_and_serial(
    resigned: ResignedSet, xmlsec1: Xmlsec1
) -> None:
    """The oracle's set-up is not vacuous: KeyInfo naming another certificate fails in both trust modes."""
    for name in (
        "ECS02_1.6_IMMEDIATE_SINGLE_SUCCESS_REQUEST_DUIS.XML",
        _first_test_ca_template(resigned),
    ):
        document = _resigned(resigned, name)
        assert xmlsec1.verify(document.signed, document.trust).accepted
        serial = str(document.certificate.serial_number).encode()
        wrong_serial = document.signed.replace(
            serial, str(document.certificate.serial_number + 1).encode()
        )
        assert not xmlsec1.verify(wrong_serial, document.trust).accepted, name
        wrong_issuer = re.sub(
            rb"<ds:X509IssuerName>[^<]*<",
            b"<ds:X509IssuerName>CN=Nobody,OU=07<",
            document.signed,
        )
        assert not xmlsec1.verify(wrong_issuer, document.trust).accepted, name


def _first_test_ca_template(resigned: ResignedSet) -> str:
    return next(
        name
        for name, document in sorted(resigned.documents.items())
        if document.signer_source == "test-ca"
    )


# --- 2. templates signed by xmlsec1 ---------------------------------------------


@pytest.fixture(scope="module")
def zaz1_supplier(keystore: list[KeystoreEntry]) -> KeystoreEntry:
    return xml_sign_entries(keystore)[ZAZ1_SUPPLIER]


@pytest.fixture(scope="module")
def keystore_verifier(
    tmp_path_factory: pytest.TempPathFactory, gateway_schemas: DocumentSchemas
) -> Verifier:
    """A project repository filled by ``import_files`` from the ZAZ1 keystore.json."""
    repository = SmkiRepository()
    report = repository.import_files(
        tmp_path_factory.mktemp("keystore-world"),
        [shared_path("zaz1", "keystore.json")],
    )
    assert len(report.certificates) >= 30
    return Verifier(repository, FixedClock(factories.NOW), schemas=gateway_schemas)


def test_xmlsec1_signing_sample_covers_sr_1_6() -> None:
    if XMLSEC1_SIGNED_SAMPLE == ["(duis/templates absent)"]:
        pytest.skip("third-party test data not found: duis/templates")
    assert sum("_1.6_" in name for name in XMLSEC1_SIGNED_SAMPLE) == SR_1_6_TEMPLATES
    assert len(XMLSEC1_SIGNED_SAMPLE) >= SR_1_6_TEMPLATES + 20


@pytest.mark.parametrize("name", XMLSEC1_SIGNED_SAMPLE)
def test_template_signed_by_xmlsec1_verifies_in_project(
    name: str,
    xmlsec1: Xmlsec1,
    zaz1_supplier: KeystoreEntry,
    keystore_verifier: Verifier,
) -> None:
    template = shared_path("duis", "templates", name).read_bytes()
    signed = xmlsec1.sign(
        xmlsec1_sign_template(template),
        key_pem=zaz1_supplier.private_key_pem,
        cert_pem=zaz1_supplier.certificate_pem,
    )
    issuer, serial = key_info_names(signed)
    certificate = zaz1_supplier.certificate
    assert NameKey.parse(issuer) == NameKey.from_name(certificate.issuer)
    assert serial == certificate.serial_number
    assert b"<!--" not in signed
    verdict = project_verdict(keystore_verifier, signed)
    assert verdict.accepted, verdict.reason
    assert verdict.reason == f"ok: signed by {ZAZ1_SUPPLIER}"


# --- 3. DCC Boxed–signed responses through the CLI ----------------------------------


@pytest.fixture(scope="module")
def boxed_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``dcc-gateway init`` + ``smki import`` of keystore.json and every ZAZ1 PEM (incl. the pre-1.4.1 DSP cert)."""
    keystore_path = shared_path("zaz1", "keystore.json")
    pems = sorted(shared_path("zaz1", "pem").glob("*.pem"))
    world = tmp_path_factory.mktemp("boxed") / "world"
    assert main(["init", str(world)]) == 0
    assert (
        main(["smki", "import", str(world), str(keystore_path), *map(str, pems)]) == 0
    )
    return world


def _verify_json(
    capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, dict[str, object]]:
    capsys.readouterr()
    code = main(["verify", *args, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out)


def _signed_response(name: str) -> bytes:
    return shared_path("duis", "signed", name).read_bytes()


@pytest.mark.parametrize("name", SIGNED_RESPONSES)
def test_dcc_boxed_signed_response_verifies_through_cli_at_signing_time(
    name: str, boxed_world: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Checked at the response's own ResponseDateTime (``--at``), as a log audit would.

    Two of the three responses were signed in 2022 with the ACB certificate
    Z1-accessControlBroker-ds, which expired on 2025-10-29: verified at
    today's date they fail ``certificate-expired`` (see the next test), so the
    signature is checked at signing time. The third was signed with the
    pre-1.4.1 DSP certificate whose OU reads ``137``.
    """
    data = _signed_response(name)
    at = response_date_time(data)
    code, verdict = _verify_json(
        capsys,
        str(shared_path("duis", "signed", name)),
        "--dir",
        str(boxed_world),
        "--at",
        at,
    )
    assert (code, verdict["valid"], verdict["check"], verdict["signer"]) == (
        0,
        True,
        "ok",
        DSP,
    ), verdict


EXPECTED_IN_2026 = {
    "ECS52_11.2_RESPONSE-boxed-signed-2.XML": "certificate-expired",
    "ECS52_11.2_SUCCESS_RESPONSE_DUIS-boxed-signed.XML": "certificate-expired",
    "readfw-response-boxed-signed.xml": "ok",
}


@pytest.mark.parametrize("name", SIGNED_RESPONSES)
def test_dcc_boxed_signed_response_in_2026_needs_an_unexpired_certificate(
    name: str, boxed_world: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if name not in EXPECTED_IN_2026:
        pytest.skip(f"no expectation recorded for {name}")
    path = shared_path("duis", "signed", name)
    code, verdict = _verify_json(
        capsys, str(path), "--dir", str(boxed_world), "--at", "2026-01-01T00:00:00Z"
    )
    assert verdict["check"] == EXPECTED_IN_2026[name], verdict
    assert code == (0 if EXPECTED_IN_2026[name] == "ok" else 1)


def _change_content_byte(data: bytes) -> bytes:
    """One byte of signed content: the last digit of the ResponseID counter."""
    match = re.search(rb"(<sr:ResponseID>[^<]*)([0-9])(</sr:ResponseID>)", data)
    assert match is not None
    digit = b"0" if match.group(2) != b"0" else b"1"
    return data[: match.start(2)] + digit + data[match.end(2) :]


def _change_signature_value(data: bytes) -> bytes:
    """One base64 character in the middle of SignatureValue (r stays below the group order)."""
    match = re.search(rb"<ds:SignatureValue>([A-Za-z0-9+/]{40})", data)
    assert match is not None
    position = match.start(1) + 30
    replacement = b"A" if data[position : position + 1] != b"A" else b"B"
    return data[:position] + replacement + data[position + 1 :]


def _add_namespace_declaration(data: bytes) -> bytes:
    """An unused declaration on the root: inclusive C14N (the DUIS form) renders it."""
    return data.replace(b"<sr:Response ", b'<sr:Response xmlns:x="urn:x-extra" ', 1)


TAMPERINGS: list[tuple[str, Callable[[bytes], bytes], str]] = [
    ("content-byte", _change_content_byte, "digest-mismatch"),
    ("signature-value", _change_signature_value, "signature-invalid"),
    ("namespace-declaration", _add_namespace_declaration, "digest-mismatch"),
]


@pytest.mark.parametrize("name", SIGNED_RESPONSES)
@pytest.mark.parametrize(
    ("tamper", "expected"), [pytest.param(t, e, id=i) for i, t, e in TAMPERINGS]
)
def test_tampered_dcc_boxed_response_fails_through_cli(
    name: str,
    tamper: Callable[[bytes], bytes],
    expected: str,
    boxed_world: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = _signed_response(name)
    tampered = tamper(data)
    assert tampered != data
    path = tmp_path / name
    path.write_bytes(tampered)
    code, verdict = _verify_json(
        capsys, str(path), "--dir", str(boxed_world), "--at", response_date_time(data)
    )
    assert (code, verdict["valid"], verdict["check"], verdict["signer"]) == (
        1,
        False,
        expected,
        None,
    ), verdict


# --- 4. what the project emits is valid under the official XSD -----------------------


def _request_variants() -> Iterator[tuple[str, dict[str, object]]]:
    sr = f"{{{SR}}}"
    prepayment = etree.Element(sr + "UpdatePaymentMode")
    values = etree.SubElement(prepayment, sr + "Prepayment")
    etree.SubElement(values, sr + "SuspendDebtDisabled").text = "true"
    etree.SubElement(values, sr + "SuspendDebtEmergency").text = "false"
    etree.SubElement(values, sr + "DisablementThreshold").text = "556677"
    yield "sr-1.6-credit-cv1", {}
    yield "sr-1.6-credit-cv4", {"command_variant": 4}
    yield "sr-1.6-prepayment-cv4", {"command_variant": 4, "body": prepayment}
    yield "max-counter", {"counter": (1 << 64) - 1}


@pytest.mark.parametrize(
    ("label", "fields"),
    list(_request_variants()),
    ids=[v[0] for v in _request_variants()],
)
def test_signed_requests_are_valid_under_the_official_xsd(
    label: str,
    fields: dict[str, object],
    supplier_key: SigningKey,
    official_xsd: etree.XMLSchema,
) -> None:
    """Both signer entry points: sign_tree (factories.signed_request) and sign_bytes (dcc-gateway sign)."""
    tree_signed = factories.signed_request(supplier_key, **fields)
    bytes_signed = sign_bytes(to_bytes(factories.request_tree(**fields)), supplier_key)  # type: ignore[arg-type]
    for document in (tree_signed, bytes_signed):
        _assert_official_valid(official_xsd, document)


@pytest.fixture(scope="module")
def response_documents() -> ModuleType:
    return pytest.importorskip(
        "gateway.respond.documents",
        reason="gateway/respond/documents.py not present yet",
    )


@pytest.fixture(scope="module")
def gateway_key(interop_ca: TestSmkiCa) -> SigningKey:
    """The gateway's dSPXmlSign (89) key, as ``init`` issues it."""
    issued = interop_ca.issue(
        "gateway/dsp-xml-sign",
        eui64=Eui64.parse(DSP),
        role=RemotePartyRole.DSP_XML_SIGN,
    )
    return factories.signing_key(issued)


def _responses(documents: ModuleType) -> list[tuple[str, etree._Element]]:
    at = dt.datetime(2026, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)
    request_id = f"90-B3-D5-1F-30-01-00-00:00-DB-12-34-56-78-90-A0:{1 << 40}"
    response_id = documents.response_id_for(request_id)
    pre_command = documents.PreCommand(
        gbcs_version="4.0", gbcs_payload=bytes(range(1, 60))
    )
    common = {
        "request_id": request_id,
        "at": at,
        "service_reference": "1.6",
        "service_reference_variant": "1.6",
    }
    return [
        (
            "i99-acknowledgement",
            documents.response_message(
                response_id=response_id, code=ResponseCode.I99, **common
            ),
        ),
        (
            "i0-pre-command",
            documents.response_message(
                response_id=response_id,
                code=ResponseCode.I0,
                pre_command=pre_command,
                **common,
            ),
        ),
        (
            "i0-gbcs-payload",
            documents.response_message(
                response_id=response_id,
                code=ResponseCode.I0,
                gbcs_payload=b"\xdf\x09\x02",
                **common,
            ),
        ),
        ("e4-error", documents.error_response(code=ResponseCode.E4, **common)),
        ("e40-error", documents.error_response(code=ResponseCode.E40, **common)),
        (
            "ad1-quarantine-alert",
            documents.dcc_alert_quarantined(
                response_id=f"{DSP}:90-B3-D5-1F-30-01-00-00:{1 << 41}",
                request_id=request_id,
                quarantine_event_ref=7,
                at=at,
            ),
        ),
        (
            "device-alert",
            documents.device_alert(
                response_id=f"00-DB-12-34-56-78-90-A0:90-B3-D5-1F-30-01-00-00:{1 << 42}",
                alert_code=0x8F84,
                gbcs_payload=b"\xdf\x09\x03",
                at=at,
            ),
        ),
    ]


@pytest.fixture(scope="module")
def response_verifier(gateway_key: SigningKey, interop_ca: TestSmkiCa, gateway_schemas: DocumentSchemas) -> Verifier:
    """The project's verifier, trusting the gateway's 89 certificate (as a user checks answers)."""
    repository = factories.repository_with(interop_ca)
    repository.add_certificate(gateway_key.certificate)
    return Verifier(repository, FixedClock(factories.NOW), schemas=gateway_schemas, dsp_user_id=Eui64.parse(DSP))


def test_signed_response_documents_are_valid_under_the_official_xsd_and_verify(
    response_documents: ModuleType, gateway_key: SigningKey, official_xsd: etree.XMLSchema, response_verifier: Verifier
) -> None:
    verifier = response_verifier
    for label, root in _responses(response_documents):
        signed = to_bytes(sign_tree(root, gateway_key))
        root_again = etree.fromstring(signed)
        assert official_xsd.validate(root_again), (
            label,
            official_xsd.error_log.last_error,
        )
        verdict = project_verdict(verifier, signed)
        assert verdict == Verdict(True, f"ok: signed by {DSP}"), label


def test_the_enveloped_signer_writes_the_bytes_sign_tree_writes_and_they_verify(
    response_documents: ModuleType, gateway_key: SigningKey, official_xsd: etree.XMLSchema, response_verifier: Verifier
) -> None:
    """The gateway signs its answers by splicing precomputed signature bytes (EnvelopedSigner):
    byte for byte what sign_tree and to_bytes write, but for the ECDSA value (randomised), and
    the answers verify and validate as those do."""
    verifier = response_verifier
    signer = EnvelopedSigner(gateway_key)
    value = re.compile(rb"<ds:SignatureValue>[A-Za-z0-9+/=]{88}</ds:SignatureValue>")
    for label, root in _responses(response_documents):
        spliced = signer.sign(root)
        assert b"ds:Signature" not in etree.tostring(root), f"{label}: the signer changed the document it was given"
        built = to_bytes(sign_tree(root, gateway_key))
        masked = b"<ds:SignatureValue>-</ds:SignatureValue>"
        assert value.sub(masked, spliced) == value.sub(masked, built), label
        assert official_xsd.validate(etree.fromstring(spliced)), (label, official_xsd.error_log.last_error)
        assert project_verdict(verifier, spliced) == Verdict(True, f"ok: signed by {DSP}"), label
        tampered = spliced.replace(b"<sr:ResponseCode>", b"<sr:ResponseCode>\n", 1)
        assert not project_verdict(verifier, tampered).accepted, label


# --- 5. negative interop: content tampering --------------------------------------------


@pytest.fixture(scope="module")
def tamper_signer(interop_ca: TestSmkiCa) -> SigningKey:
    return factories.signing_key(
        factories.issue_xml_sign(interop_ca, factories.SUPPLIER, label="tamper")
    )


@pytest.fixture(scope="module")
def tamper_trust(interop_ca: TestSmkiCa, tamper_signer: SigningKey) -> TrustChain:
    return TrustChain(
        pem(tamper_signer.certificate),
        root_pem=interop_ca.root.cert_pem(),
        intermediates=(interop_ca.org.cert_pem(),),
        at=factories.NOW,
    )


@pytest.fixture(scope="module")
def tamper_verifier(interop_ca: TestSmkiCa, tamper_signer: SigningKey) -> Verifier:
    """Needs no third-party data: the official XSD is layered on when it is there."""
    official = shared_dir() / "duis" / "xsd" / "DUIS-Schema-V5.4.xsd"
    schemas = load_schemas(official if official.is_file() else None)
    repository = factories.repository_with(interop_ca)
    repository.add_certificate(tamper_signer.certificate)
    return Verifier(repository, FixedClock(factories.NOW), schemas=schemas)


def _duis_form(key: SigningKey) -> bytes:
    return factories.signed_request(key)


CONTENT_TAMPERINGS = [
    pytest.param(
        lambda d: d.replace(b"<sr:Request ", b'<sr:Request xmlns:x="urn:x-extra" ', 1),
        id="namespace-declaration-on-root",
    ),
    pytest.param(
        lambda d: d.replace(
            b'<sr:Request xmlns:sr="',
            b'<sr:Request xmlns="urn:x-default" xmlns:sr="',
            1,
        ),
        id="default-namespace-declaration-on-root",
    ),
    pytest.param(
        lambda d: d.replace(b":1000</sr:RequestID>", b":1001</sr:RequestID>"),
        id="request-id-counter",
    ),
    pytest.param(
        lambda d: d.replace(b"<sr:CommandVariant>1<", b"<sr:CommandVariant>3<"),
        id="command-variant",
    ),
    pytest.param(
        lambda d: d.replace(b"<sr:Body>", b"<sr:Body>\n  "), id="whitespace-in-body"
    ),
]


@pytest.mark.parametrize("tamper", CONTENT_TAMPERINGS)
def test_content_tampering_is_rejected_by_project_and_xmlsec1(
    tamper: Callable[[bytes], bytes],
    tamper_signer: SigningKey,
    tamper_trust: TrustChain,
    tamper_verifier: Verifier,
    xmlsec1: Xmlsec1,
) -> None:
    """DUIS form (enveloped-signature only): the reference is inclusive C14N 1.0, so even an
    unused namespace declaration on the root is signed content (DOMAIN.md, pitfalls)."""
    original = _duis_form(tamper_signer)
    assert project_verdict(tamper_verifier, original).accepted
    assert xmlsec1.verify(original, tamper_trust).accepted
    tampered = tamper(original)
    assert tampered != original
    assert project_verdict(tamper_verifier, tampered) == Verdict(
        False, "digest-mismatch"
    )
    assert not xmlsec1.verify(tampered, tamper_trust).accepted
    assert not signxml_verdict(
        tampered, tamper_signer.certificate, at=factories.NOW
    ).accepted


def test_unused_namespace_declaration_is_not_signed_content_in_the_signxml_form(
    tamper_signer: SigningKey,
    tamper_trust: TrustChain,
    tamper_verifier: Verifier,
    xmlsec1: Xmlsec1,
) -> None:
    """The contrast: with the explicit exc-c14n transform, an unused declaration is not rendered,
    and all three verifiers agree that the document is unchanged."""
    original = signxml_sign(factories.request_tree(), tamper_signer)
    extra = original.replace(b"<sr:Request ", b'<sr:Request xmlns:x="urn:x-extra" ', 1)
    assert extra != original
    for document in (original, extra):
        assert project_verdict(tamper_verifier, document).accepted
        assert xmlsec1.verify(document, tamper_trust).accepted
        assert signxml_verdict(
            document, tamper_signer.certificate, at=factories.NOW
        ).accepted


def test_comments_between_elements_are_not_signed_and_are_accepted_by_project_and_xmlsec1(
    tamper_signer: SigningKey,
    tamper_trust: TrustChain,
    tamper_verifier: Verifier,
    xmlsec1: Xmlsec1,
) -> None:
    """The real DUIS templates carry ``<!-- NOTE … -->`` between elements and DCC Boxed signs them as
    they are: C14N without comments leaves them out, so both verifiers accept; the same comment
    beside text (the truncation attack) is refused by the project before the signature is looked at."""
    original = _duis_form(tamper_signer)
    noted = original.replace(b"<sr:Body>", b"<!-- NOTE: a note as in the RTDS templates --><sr:Body>", 1)
    assert noted != original
    assert project_verdict(tamper_verifier, noted).accepted
    assert xmlsec1.verify(noted, tamper_trust).accepted
    request_id = tamper_verifier.verify_request(noted).request_id
    assert request_id == tamper_verifier.verify_request(original).request_id
    counter = str(request_id.counter).encode()
    split = noted.replace(counter + b"<", counter[:-1] + b"<!---->" + counter[-1:] + b"<", 1)
    assert split != noted
    assert xmlsec1.verify(split, tamper_trust).accepted  # the signature alone cannot see it
    assert project_verdict(tamper_verifier, split) == Verdict(False, "comment")
