"""Differential testing: the project never accepts what signxml or xmlsec1 rejects.

Start from correctly signed requests (the DUIS form the project emits, compact
and indented, and the form signxml emits with an explicit exc-c14n transform),
apply one to three hypothesis-chosen mutations, and check

    project accepts  =>  signxml accepts and xmlsec1 accepts

with signxml in a strict configuration (one reference, Signature a child of
the root, ecdsa-sha256 and sha256 only) and xmlsec1, both given the trusted
certificate out of band (signxml's ``x509_cert``, xmlsec1's
``--pubkey-cert-pem``): the property is about what is signed and how it is
verified. The reverse need not hold: the project is stricter on purpose (no
comments, DTDs, namespace declarations or attributes inside the signature...).

How KeyInfo *names* the certificate is a separate question, pinned by
:func:`test_key_info_naming_changes_only_the_certificate_lookup`: xmlsec1
finds the certificate by X509IssuerSerial with OpenSSL's stricter name
parsing, the project matches names as X.520 does (SPEC §4), and signxml
ignores KeyInfo when the certificate is pinned.

The run uses a fixed seed and no example database, so CI sees the same
examples every time; ``DIFFERENTIAL_EXAMPLES`` bounds its cost.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, event, given, note, seed, settings
from hypothesis import strategies as st
from lxml import etree

from gateway.clock import FixedClock
from gateway.namespaces import DS, SR
from gateway.schema import load_schemas
from gateway.signing import SigningKey, sign_tree, to_bytes
from gateway.verify.verifier import Verifier
from pki import TestSmkiCa
from tests import factories
from tests.interop_tools import (
    TrustChain,
    Verdict,
    Xmlsec1,
    pem,
    project_verdict,
    signxml_sign,
    signxml_verdict,
    xmlsec1_sign_template,
)
from tests.shared_data import require_xmlsec1, shared_dir

DIFFERENTIAL_EXAMPLES = 400
DIFFERENTIAL_SEED = 20261123
XSI = "http://www.w3.org/2001/XMLSchema-instance"
XML = "http://www.w3.org/XML/1998/namespace"
SR_1_6_TEMPLATE = "ECS03_1.6_IMMEDIATE_SINGLE_SUCCESS_REQUEST_DUIS.XML"
BASES = ["duis-form", "duis-form-indented", "signxml-form", "xmlsec1-signed-template"]


# --- the three verifiers ------------------------------------------------------------


@dataclass(frozen=True)
class Oracles:
    """The project and the two reference verifiers, all trusting the same one certificate."""

    verifier: Verifier
    xmlsec1: Xmlsec1
    trust: TrustChain
    key: SigningKey

    def project(self, document: bytes) -> Verdict:
        return project_verdict(self.verifier, document)

    def signxml(self, document: bytes) -> Verdict:
        return signxml_verdict(document, self.key.certificate, at=factories.NOW)

    def xmlsec(self, document: bytes) -> Verdict:
        """xmlsec1 with the key given out of band, like signxml's pinned certificate."""
        return self.xmlsec1.verify(document, self.trust.pinned())

    def xmlsec_lookup(self, document: bytes) -> Verdict:
        """xmlsec1 finding the certificate by X509IssuerSerial and validating the test CA chain."""
        return self.xmlsec1.verify(document, self.trust)


@pytest.fixture(scope="module")
def differential_ca() -> TestSmkiCa:
    return factories.make_ca(b"differential")


@pytest.fixture(scope="module")
def oracles(differential_ca: TestSmkiCa) -> Oracles:
    issued = factories.issue_xml_sign(differential_ca, factories.SUPPLIER)
    official = shared_dir() / "duis" / "xsd" / "DUIS-Schema-V5.4.xsd"
    schemas = load_schemas(official if official.is_file() else None)
    verifier = Verifier(
        factories.repository_with(differential_ca, issued),
        FixedClock(factories.NOW),
        schemas=schemas,
    )
    trust = TrustChain(
        pem(issued.certificate),
        root_pem=differential_ca.root.cert_pem(),
        intermediates=(differential_ca.org.cert_pem(),),
        at=factories.NOW,
    )
    return Oracles(
        verifier, Xmlsec1(require_xmlsec1()), trust, factories.signing_key(issued)
    )


def _prepayment_body() -> etree._Element:
    sr = f"{{{SR}}}"
    body = etree.Element(sr + "UpdatePaymentMode")
    values = etree.SubElement(body, sr + "Prepayment")
    etree.SubElement(values, sr + "SuspendDebtDisabled").text = "true"
    etree.SubElement(values, sr + "SuspendDebtEmergency").text = "false"
    etree.SubElement(values, sr + "DisablementThreshold").text = "556677"
    return body


@pytest.fixture(scope="module")
def base_documents(oracles: Oracles) -> dict[str, bytes]:
    """Correctly signed requests: the project's DUIS form (compact, indented), the
    signxml form, and (with ../shared) a real SR 1.6 template signed by xmlsec1."""
    indented = factories.request_tree(
        command_variant=4, counter=2000, body=_prepayment_body()
    )
    etree.indent(indented)
    documents = {
        "duis-form": to_bytes(sign_tree(factories.request_tree(), oracles.key)),
        "duis-form-indented": to_bytes(sign_tree(indented, oracles.key)),
        "signxml-form": signxml_sign(factories.request_tree(counter=3000), oracles.key),
    }
    template = shared_dir() / "duis" / "templates" / SR_1_6_TEMPLATE
    if template.is_file():
        documents["xmlsec1-signed-template"] = _xmlsec1_signed(
            template.read_bytes(), oracles
        )
    return documents


def _xmlsec1_signed(template: bytes, oracles: Oracles) -> bytes:
    """The template as DCC Boxed users write it (default xmldsig namespace on
    ds:Signature, xmlsec1's wrapped base64), re-addressed from our test user."""
    own = template.replace(
        b"<sr:RequestID>90-B3-D5-1F-30-01-00-00:",
        f"<sr:RequestID>{factories.SUPPLIER}:".encode(),
    )
    key = oracles.key.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return oracles.xmlsec1.sign(
        xmlsec1_sign_template(own), key_pem=key, cert_pem=oracles.trust.certificate_pem
    )


def test_unmutated_documents_are_accepted_by_all_three(
    oracles: Oracles, base_documents: dict[str, bytes]
) -> None:
    for name, document in base_documents.items():
        verdicts = (
            oracles.project(document),
            oracles.signxml(document),
            oracles.xmlsec(document),
            oracles.xmlsec_lookup(document),
        )
        assert all(verdicts), (name, verdicts)


def _base(base_documents: dict[str, bytes], name: str) -> bytes:
    if name not in base_documents:
        pytest.skip(
            f"third-party test data not found: duis/templates/{SR_1_6_TEMPLATE}"
        )
    return base_documents[name]


# --- mutations ------------------------------------------------------------------------
#
# A mutation takes the document, hypothesis' data and a scope: "document" (anywhere) or
# "signature" (only inside ds:Signature, the unsigned part whose every byte the profile
# must still pin down). Tree mutations parse leniently and serialise again; byte
# mutations work on the text, so they can also produce what no tree can hold.

Mutation = Callable[[bytes, st.DataObject, str], bytes]
_LENIENT = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, remove_blank_text=False
)
_START_TAG = re.compile(rb"<(?![/?!])[^\s/>]+")
_SIGNATURE_START = re.compile(rb"<(?:[A-Za-z_][A-Za-z0-9_.-]*:)?Signature[\s>]")
WHITESPACE = st.sampled_from([" ", "\n", "\t", "\r", "\r\n", "  \n  "])
TEXT_CHARACTERS = st.sampled_from(list("0123456789ABCDEFabcdef-:.=,+/ xyzQ\t\n"))
SCOPES = st.sampled_from(["document", "signature"])


def _signature_offset(document: bytes) -> int:
    """Where the (last) ds:Signature start tag begins; 0 when there is none."""
    starts = [m.start() for m in _SIGNATURE_START.finditer(document)]
    return starts[-1] if starts else 0


def _tree_mutation(
    mutate: Callable[[list[etree._Element], st.DataObject], None],
) -> Mutation:
    """Parses, mutates elements in scope, serialises; a document an earlier mutation broke stays as is."""

    def apply(document: bytes, data: st.DataObject, scope: str) -> bytes:
        try:
            root = etree.fromstring(document, _LENIENT)
        except etree.XMLSyntaxError:
            return document
        elements = [e for e in root.iter() if isinstance(e.tag, str)]
        if scope == "signature":
            signatures = [e for e in elements if e.tag == f"{{{DS}}}Signature"]
            elements = (
                [e for e in signatures[-1].iter() if isinstance(e.tag, str)]
                if signatures
                else elements
            )
        mutate(elements, data)
        return etree.tostring(
            root.getroottree(), xml_declaration=True, encoding="UTF-8"
        )

    apply.__name__ = mutate.__name__
    return apply


def _pick(
    data: st.DataObject, items: list[etree._Element], label: str
) -> etree._Element | None:
    if not items:
        return None
    return items[data.draw(st.integers(0, len(items) - 1), label=label)]


def _below_root(elements: list[etree._Element]) -> list[etree._Element]:
    return [e for e in elements if e.getparent() is not None]


def _flip_text(elements: list[etree._Element], data: st.DataObject) -> None:
    element = _pick(data, [e for e in elements if e.text], "element with text")
    if element is None:
        return
    text = element.text or ""
    position = data.draw(st.integers(0, len(text) - 1), label="position")
    element.text = (
        text[:position]
        + data.draw(TEXT_CHARACTERS, label="character")
        + text[position + 1 :]
    )


def _insert_attribute(elements: list[etree._Element], data: st.DataObject) -> None:
    element = _pick(data, elements, "element")
    if element is None:
        return
    name = data.draw(
        st.sampled_from(
            [
                "Id",
                "foo",
                "URI",
                "Algorithm",
                f"{{{XSI}}}nil",
                f"{{{XML}}}lang",
                "{urn:x}a",
            ]
        ),
        label="name",
    )
    element.set(
        name, data.draw(st.sampled_from(["", "x", "true", "#x"]), label="value")
    )


def _remove_attribute(elements: list[etree._Element], data: st.DataObject) -> None:
    element = _pick(data, [e for e in elements if e.attrib], "element with attributes")
    if element is not None:
        name = data.draw(st.sampled_from(sorted(element.attrib)), label="attribute")
        del element.attrib[name]


def _duplicate_element(elements: list[etree._Element], data: st.DataObject) -> None:
    element = _pick(data, _below_root(elements), "element to duplicate")
    if element is not None:
        element.addnext(copy.deepcopy(element))


def _move_element(elements: list[etree._Element], data: st.DataObject) -> None:
    element = _pick(data, _below_root(elements), "element to move")
    if element is None:
        return
    inside = set(element.iter())
    parent = _pick(data, [e for e in elements if e not in inside], "new parent")
    old_parent = element.getparent()
    if parent is None or old_parent is None:
        return
    old_parent.remove(element)
    parent.insert(data.draw(st.integers(0, len(parent)), label="index"), element)


def _delete_element(elements: list[etree._Element], data: st.DataObject) -> None:
    element = _pick(data, _below_root(elements), "element to delete")
    parent = element.getparent() if element is not None else None
    if element is not None and parent is not None:
        parent.remove(element)


def _whitespace_between_elements(
    elements: list[etree._Element], data: st.DataObject
) -> None:
    element = _pick(data, elements, "element")
    if element is None:
        return
    space = data.draw(WHITESPACE, label="whitespace")
    if len(element) and data.draw(st.booleans(), label="before first child"):
        element.text = (element.text or "") + space
    elif element.getparent() is not None:
        element.tail = (element.tail or "") + space


def _whitespace_in_text(elements: list[etree._Element], data: st.DataObject) -> None:
    element = _pick(
        data, [e for e in elements if e.text and not len(e)], "leaf with text"
    )
    if element is None:
        return
    text = element.text or ""
    position = data.draw(st.integers(0, len(text)), label="position")
    element.text = (
        text[:position] + data.draw(WHITESPACE, label="whitespace") + text[position:]
    )


def _base64_whitespace(elements: list[etree._Element], data: st.DataObject) -> None:
    """Whitespace inside DigestValue or SignatureValue ('\\r' is written as &#13;, as DCC Boxed does)."""
    values = [
        e
        for e in elements
        if e.tag in (f"{{{DS}}}DigestValue", f"{{{DS}}}SignatureValue") and e.text
    ]
    element = _pick(data, values, "base64 value")
    if element is None:
        return
    text = element.text or ""
    position = data.draw(st.integers(0, len(text)), label="position")
    element.text = (
        text[:position] + data.draw(WHITESPACE, label="whitespace") + text[position:]
    )


def _insert_namespace_declaration(
    document: bytes, data: st.DataObject, scope: str
) -> bytes:
    floor = _signature_offset(document) if scope == "signature" else 0
    tags = [m for m in _START_TAG.finditer(document) if m.start() >= floor]
    if not tags:
        return document
    tag = tags[data.draw(st.integers(0, len(tags) - 1), label="start tag")]
    prefix = data.draw(
        st.sampled_from(["x", "ns3", "ds", "sr", "xsi", ""]), label="prefix"
    )
    uri = data.draw(st.sampled_from(["urn:x", DS, SR, XSI]), label="uri")
    declaration = f' xmlns{":" + prefix if prefix else ""}="{uri}"'.encode()
    return document[: tag.end()] + declaration + document[tag.end() :]


def _rename_prefix(document: bytes, data: st.DataObject, scope: str) -> bytes:
    """Renames a prefix consistently (tags and declaration); in scope "signature", only ds."""
    old = (
        b"ds"
        if scope == "signature"
        else data.draw(st.sampled_from([b"sr", b"ds"]), label="prefix")
    )
    new = data.draw(st.sampled_from([b"p", b"dsig", b"s"]), label="new prefix")
    renamed = re.sub(rb"(</?)" + old + rb":", rb"\g<1>" + new + b":", document)
    return renamed.replace(b"xmlns:" + old + b"=", b"xmlns:" + new + b"=")


def _insert_markup(document: bytes, data: st.DataObject, scope: str) -> bytes:
    """A comment or processing instruction between markup or inside text."""
    floor = _signature_offset(document) if scope == "signature" else 0
    ends = [m.end() for m in re.finditer(rb">", document)][:-1]
    texts = [m.start() + 2 for m in re.finditer(rb">[^<]{2,}<", document)]
    positions = [p for p in ends + texts if p > floor]
    if not positions:
        return document
    position = positions[
        data.draw(st.integers(0, len(positions) - 1), label="position")
    ]
    markup = data.draw(
        st.sampled_from(
            [b"<!---->", b"<!-- c -->", b"<?pi data?>", b"<?xml-stylesheet href='x'?>"]
        )
    )
    return document[:position] + markup + document[position:]


def _entity_declaration(document: bytes, data: st.DataObject, scope: str) -> bytes:
    """An internal DTD subset; optionally a text character replaced by a reference to an entity holding it."""
    declaration_end = document.find(b"?>") + 2 if document.startswith(b"<?xml") else 0
    root_name = _START_TAG.search(document)
    name = root_name.group(0)[1:] if root_name else b"sr:Request"
    doctype = (
        b"<!DOCTYPE " + name + b' [<!ENTITY e "0"><!ENTITY big "' + b"0" * 10 + b'">]>'
    )
    mutated = document[:declaration_end] + doctype + document[declaration_end:]
    floor = _signature_offset(mutated) if scope == "signature" else 0
    if data.draw(st.booleans(), label="use the entity"):
        zeros = [
            m.start() for m in re.finditer(rb">[^<]*0", mutated) if m.start() >= floor
        ]
        if zeros:
            start = zeros[data.draw(st.integers(0, len(zeros) - 1), label="text")]
            zero = mutated.index(b"0", start)
            mutated = mutated[:zero] + b"&e;" + mutated[zero + 1 :]
    return mutated


STRUCTURAL: list[Mutation] = [
    _tree_mutation(_insert_attribute),
    _tree_mutation(_remove_attribute),
    _tree_mutation(_duplicate_element),
    _tree_mutation(_move_element),
    _tree_mutation(_delete_element),
    _rename_prefix,
    _insert_markup,
    _entity_declaration,
]
"""Mostly refused early (schema, comment, DTD): each appears once."""

GENTLE: list[Mutation] = [
    _tree_mutation(_flip_text),
    _tree_mutation(_whitespace_between_elements),
    _tree_mutation(_whitespace_in_text),
    _tree_mutation(_base64_whitespace),
    _insert_namespace_declaration,
]
"""Keep the document schema-valid, so the signature checks decide: each appears three times."""

MUTATIONS: list[Mutation] = STRUCTURAL + GENTLE * 3


# --- the property ---------------------------------------------------------------------


@seed(DIFFERENTIAL_SEED)
@settings(
    max_examples=DIFFERENTIAL_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_project_never_accepts_what_a_reference_verifier_rejects(
    oracles: Oracles, base_documents: dict[str, bytes], data: st.DataObject
) -> None:
    name = data.draw(st.sampled_from(sorted(base_documents)), label="base document")
    document = base_documents[name]
    scope = data.draw(SCOPES, label="scope")
    mutations = data.draw(
        st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=3), label="mutations"
    )
    for mutation in mutations:
        document = mutation(document, data, scope)
    note(document.decode("utf-8", "replace"))
    project = oracles.project(document)
    event(f"project: {project.reason if not project.accepted else 'accepts'}")
    if not project.accepted:
        return
    event(f"accepted after: {', '.join(m.__name__ for m in mutations)}")
    signxml = oracles.signxml(document)
    xmlsec = oracles.xmlsec(document)
    assert signxml.accepted and xmlsec.accepted, (
        f"project accepted a document that signxml ({signxml.reason}) / xmlsec1 ({xmlsec.reason}) judged"
    )


# --- mutations the project accepts: all three must agree ------------------------------

BENIGN = [
    pytest.param(b"<ds:SignatureValue>", 10, b"\r\n", id="crlf-in-signature-value"),
    pytest.param(
        b"<ds:SignatureValue>", 20, b"&#13;\n", id="char-ref-cr-in-signature-value"
    ),
    pytest.param(
        b"<ds:SignatureValue>", 0, b"\n  ", id="leading-whitespace-in-signature-value"
    ),
    pytest.param(
        b"<ds:SignedInfo>",
        -len(b"<ds:SignedInfo>"),
        b"\n  ",
        id="whitespace-before-signed-info",
    ),
    pytest.param(b"</ds:SignedInfo>", 0, b"\n", id="whitespace-after-signed-info"),
    pytest.param(b"<ds:X509Data>", 0, b"\n    ", id="whitespace-inside-key-info"),
    pytest.param(b"<ds:X509SerialNumber>", 0, b"000", id="serial-with-leading-zeros"),
]
"""(anchor, offset from the anchor's end, bytes to insert): unsigned variations the project tolerates."""


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize(("anchor", "offset", "insert"), BENIGN)
def test_benign_mutations_are_accepted_by_all_three(
    base: str,
    anchor: bytes,
    offset: int,
    insert: bytes,
    oracles: Oracles,
    base_documents: dict[str, bytes],
) -> None:
    """What the project tolerates (DCC Boxed's &#13; in base64, whitespace inside ds:Signature
    but outside SignedInfo), the reference verifiers accept too, xmlsec1 in both modes."""
    document = _base(base_documents, base)
    position = document.index(anchor) + len(anchor) + offset
    mutated = document[:position] + insert + document[position:]
    verdicts = (
        oracles.project(mutated),
        oracles.signxml(mutated),
        oracles.xmlsec(mutated),
        oracles.xmlsec_lookup(mutated),
    )
    assert all(verdicts), verdicts


@dataclass(frozen=True)
class NamingVector:
    """An X509IssuerName / X509SerialNumber spelling, and whether xmlsec1's lookup finds the certificate."""

    issuer: bytes | None
    serial_format: bytes
    xmlsec1_lookup: bool
    why: str


NAMING_VECTORS = [
    pytest.param(
        NamingVector(
            b"OU=07, CN=DG", b"%d", True, "SPEC §4: RDN order and spacing ignored"
        ),
        id="rdn-order",
    ),
    pytest.param(
        NamingVector(
            b"2.5.4.3=DG,2.5.4.11=07", b"%d", True, "RFC 4514 §3: dotted OIDs"
        ),
        id="dotted-oids",
    ),
    pytest.param(
        NamingVector(b"CN=\\44G,OU=07", b"%d", True, "RFC 4514 §2.4: hex escape"),
        id="hex-escape",
    ),
    pytest.param(
        NamingVector(
            b"cn=DG,ou=07",
            b"%d",
            False,
            "RFC 4514 §3: attribute types are case-insensitive",
        ),
        id="lower-case-types",
    ),
    pytest.param(
        NamingVector(
            b"CN=dg,OU=07", b"%d", False, "X.520 caseIgnoreMatch for CN and OU"
        ),
        id="lower-case-values",
    ),
    pytest.param(
        NamingVector(b'CN="DG",OU=07', b"%d", False, "RFC 2253 §4: quoted values"),
        id="quoted-value",
    ),
    pytest.param(
        NamingVector(
            b" CN = DG , OU = 07 ", b"%d", False, "RFC 1779: spaces around separators"
        ),
        id="spaces",
    ),
    pytest.param(
        NamingVector(
            None, b" %d\n", False, "xsd:integer collapses whitespace (XMLDSig schema)"
        ),
        id="serial-whitespace",
    ),
]


@pytest.mark.parametrize(
    "base", ["duis-form", "signxml-form", "xmlsec1-signed-template"]
)
@pytest.mark.parametrize("vector", NAMING_VECTORS)
def test_key_info_naming_changes_only_the_certificate_lookup(
    base: str, vector: NamingVector, oracles: Oracles, base_documents: dict[str, bytes]
) -> None:
    """KeyInfo is unsigned and only names a certificate in the SMKI repository.

    The project accepts every spelling below that names its certificate as
    an X.520 name; xmlsec1's OpenSSL name parser and BN_dec2bn are stricter
    for some. The signature itself verifies in every tool (xmlsec1 with the
    key given, signxml with the certificate pinned), so the property of this
    module is stated with the key pinned.
    """
    document = _base(base_documents, base)
    serial = oracles.key.certificate.serial_number
    if vector.issuer is not None:
        issuer = b"<ds:X509IssuerName>" + vector.issuer + b"<"
        document = re.sub(rb"<ds:X509IssuerName>[^<]*<", lambda _: issuer, document)
    document = document.replace(
        b"<ds:X509SerialNumber>%d<" % serial,
        b"<ds:X509SerialNumber>" + vector.serial_format % serial + b"<",
    )
    assert document != _base(base_documents, base)
    assert oracles.project(document).accepted, vector.why
    assert oracles.signxml(document).accepted
    assert oracles.xmlsec(document).accepted
    assert oracles.xmlsec_lookup(document).accepted is vector.xmlsec1_lookup


@pytest.mark.parametrize("base", ["duis-form", "signxml-form"])
def test_a_multi_valued_rdn_is_another_name(base: str, oracles: Oracles, base_documents: dict[str, bytes]) -> None:
    """RDN order is ignored (SPEC §4), but ``CN=DG+OU=07`` is one RDN: another X.509 name, no certificate."""
    document = re.sub(
        rb"<ds:X509IssuerName>[^<]*<", lambda _: b"<ds:X509IssuerName>CN=DG+OU=07<", _base(base_documents, base)
    )
    verdict = oracles.project(document)
    assert not verdict.accepted
