"""The reviewers' kit's signature catalogue (vectors.catalogue) against the verifier, plus independent checks.

Every vector is built, its setup applied (repository, clock), and verified
with the project schemas: refused vectors must fail with exactly their check
id, accepted ones must return a VerifiedRequest carrying what was signed.
Vectors that expose a known verifier bug are strict xfails (see their
``known_issue``).

Independent checkers (STYLE.md rule 8): xmlsec1 and signxml, which know
nothing of this project's profile, must verify every accepted vector, and
must also verify the attacks DOMAIN.md says they fall for; the DUIS-form
tooling must match the gateway's own signer byte for byte (bar the ECDSA
value).
"""

from __future__ import annotations

import base64
import datetime as dt
import random
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from lxml import etree

from gateway.checks import Check, VerificationError
from gateway.clock import FixedClock
from gateway.signing import SigningKey, sign_tree
from gateway.smki.names import NameKey
from gateway.smki.repository import SmkiRepository
from gateway.verify.documents import VerifiedRequest
from gateway.verify.signature import P256_ORDER, der_signature
from gateway.verify.verifier import Verifier
from pki import IssuedCertificate, TestSmkiCa
from tests import factories
from tests.shared_data import require_xmlsec1
from vectors import VECTORS, Vector, VectorContext, baseline_repository, build_context, vectors_by_id
from vectors.catalogue.context import VIOLATIONS, violation_fields
from vectors.catalogue.model import CATEGORIES, POSITIVE
from vectors.catalogue.tooling import EXC_C14N, RequestFields, ds, request_tree, sr, to_bytes

CHECK_IDS = frozenset(check.check_id for check in Check)

NOT_TRIGGERABLE_BY_A_REQUEST: dict[str, str] = {
    "media-type": "an HTTP Content-Type check before any document is read (tests/test_service_http.py)",
}
"""Check ids no request document can trigger, with the reason."""

GENERIC_VERIFIERS_ACCEPT = (
    "xsw-evil-request-inside-object",
    "comment-inside-text-node",
    "structure-mixed-ds-prefixes",
    "content-namespace-added-on-signature",
)
"""Vectors a plain XMLDSig verifier (xmlsec1, signxml) accepts with the right key: the gateway's verdict
on them rests on its profile, not on the cryptography (DOMAIN.md 'Known XML-signature pitfalls')."""

NON_DETERMINISTIC = frozenset({"duis-form-gateway-signer"})

SIGNXML_REFUSES: dict[str, str] = {
    "base64-non-canonical-padding-bits": "signxml validates ds:Signature against the XMLDSig XSD, whose "
    "xs:base64Binary forbids non-zero padding bits; the gateway (and xmlsec1) decode them to the same bytes",
}
"""Accepted vectors signxml refuses, with the reason."""
"""Vectors signed with randomised ECDSA (the gateway's own signer), so their bytes differ per build."""


@pytest.fixture(scope="session")
def context(test_ca: TestSmkiCa, supplier_cert: IssuedCertificate) -> VectorContext:
    return build_context(
        test_ca,
        now=factories.NOW,
        signer=supplier_cert,
        originator=factories.SUPPLIER,
        target=factories.DEVICE,
        other_user=factories.OTHER_USER,
    )


def _params(vectors: tuple[Vector, ...] = VECTORS) -> list[object]:
    params = []
    for vector in vectors:
        marks = [pytest.mark.xfail(strict=True, reason=vector.known_issue)] if vector.known_issue else []
        params.append(pytest.param(vector, id=vector.id, marks=marks))
    return params


# --- the catalogue against the verifier ---------------------------------------------


@pytest.mark.parametrize("vector", _params())
def test_vector_verdict(
    vector: Vector, context: VectorContext, repository: SmkiRepository, clock: FixedClock, verifier: Verifier
) -> None:
    data = vector.build(context)
    vector.apply_setup(context, repository, clock)
    if vector.expect_check is None:
        assert_carries(verifier.verify_request(data), vector.expected_fields(context))
    else:
        with pytest.raises(VerificationError) as refused:
            verifier.verify_request(data)
        assert refused.value.check_id == vector.expect_check, refused.value.detail


def assert_carries(verified: VerifiedRequest, fields: RequestFields) -> None:
    """The verified request holds exactly the values that were signed."""
    assert (verified.originator, verified.target, verified.request_id.counter) == (
        fields.originator,
        fields.target,
        fields.counter,
    )
    assert verified.command_variant == fields.command_variant
    assert verified.service_reference == fields.service_reference
    assert verified.service_reference_variant == fields.service_reference_variant
    assert verified.first_in_sequence == fields.first_in_sequence
    preceding = None if verified.preceding_request_id is None else str(verified.preceding_request_id)
    assert preceding == fields.preceding_request_id
    assert verified.body.tag == sr("UpdatePaymentMode")
    assert [etree.QName(child).localname for child in verified.body] == [fields.payment_mode]
    assert verified.signer.eui64 == fields.originator


# --- the catalogue as data ------------------------------------------------------------


def test_vector_ids_are_unique() -> None:
    assert len(vectors_by_id()) == len(VECTORS)


@pytest.mark.parametrize("vector", [pytest.param(vector, id=vector.id) for vector in VECTORS])
def test_vector_is_well_described(vector: Vector) -> None:
    assert vector.category in CATEGORIES
    assert vector.description.strip() and vector.reference.strip()
    assert vector.expect_check is None or vector.expect_check in CHECK_IDS
    assert vector.verdict == ("valid" if vector.expect_check is None else "invalid")


def test_every_category_has_vectors() -> None:
    assert {vector.category for vector in VECTORS} == set(CATEGORIES)


def test_positives_are_all_accepted() -> None:
    assert all(vector.expect_check is None for vector in VECTORS if vector.category == POSITIVE)


def test_every_check_a_request_can_fail_is_covered() -> None:
    """Coverage by vectors that pass today (known-issue vectors do not count)."""
    covered = {vector.expect_check for vector in VECTORS if vector.expect_check and not vector.known_issue}
    assert CHECK_IDS - covered - set(NOT_TRIGGERABLE_BY_A_REQUEST) == set()
    assert set(NOT_TRIGGERABLE_BY_A_REQUEST) <= CHECK_IDS


def test_every_profile_violation_has_a_certificate() -> None:
    assert set(VIOLATIONS) == violation_fields()
    ids = {vector.id for vector in VECTORS}
    assert {f"certificate-profile-{field.replace('_', '-')}" for field in VIOLATIONS} <= ids


def test_vectors_are_deterministic(context: VectorContext) -> None:
    """The same context gives the same bytes (so a generated vector file can be hashed and diffed)."""
    for vector in VECTORS:
        if vector.id not in NON_DETERMINISTIC:
            assert vector.build(context) == vector.build(context), vector.id


def test_default_context_matches_the_test_fixtures(test_ca: TestSmkiCa, supplier_cert: IssuedCertificate) -> None:
    """A context built from the CA alone (as a CLI would) signs with the fixtures' supplier certificate."""
    default = build_context(test_ca)
    assert default.signer.certificate == supplier_cert.certificate
    assert default.request.originator == factories.SUPPLIER
    assert default.now == factories.NOW
    repository = baseline_repository(default)
    assert [c.certificate for c in repository.certificates()] == [supplier_cert.certificate]


def test_extra_certificates_are_not_in_the_baseline(context: VectorContext, repository: SmkiRepository) -> None:
    """Vectors must import what they use; the fixture repository holds only the signer."""
    for name, issued in context.certificates.items():
        issuer = NameKey.from_name(issued.certificate.issuer)
        assert repository.lookup(issuer, issued.certificate.serial_number) is None, name


# --- the tooling against the gateway's own signer -------------------------------------


def test_duis_form_tooling_matches_the_gateway_signer(context: VectorContext) -> None:
    """Attack vectors start from what the gateway itself signs: identical bytes but for SignatureValue."""
    ours = etree.fromstring(vectors_by_id()["duis-form"].build(context))
    key = SigningKey(context.signer.private_key, context.signer.certificate)
    theirs = sign_tree(request_tree(context.request), key)
    for tree in (ours, theirs):
        tree[-1].find(ds("SignatureValue")).text = ""
    assert etree.tostring(ours) == etree.tostring(theirs)


def test_signxml_signature_with_key_info_replaced_is_accepted(context: VectorContext, verifier: Verifier) -> None:
    """signxml's own output (enveloped + exc-c14n, X509Certificate in KeyInfo), with KeyInfo rewritten to
    X509IssuerSerial afterwards: KeyInfo is outside SignedInfo, so the signature stays valid."""
    signxml = pytest.importorskip("signxml")
    root = request_tree(context.request, root_ds_prefix=None)
    signer = signxml.XMLSigner(
        method=signxml.methods.enveloped,
        signature_algorithm="ecdsa-sha256",
        digest_algorithm="sha256",
        c14n_algorithm=EXC_C14N,
    )
    signed = signer.sign(root, key=context.signer.key_pem(), cert=context.signer.cert_pem().decode())
    key_info = signed[-1].find(ds("KeyInfo"))
    for child in list(key_info):
        key_info.remove(child)
    issuer_serial = etree.SubElement(etree.SubElement(key_info, ds("X509Data")), ds("X509IssuerSerial"))
    etree.SubElement(issuer_serial, ds("X509IssuerName")).text = context.signer.certificate.issuer.rfc4514_string()
    etree.SubElement(issuer_serial, ds("X509SerialNumber")).text = str(context.signer.certificate.serial_number)
    assert_carries(verifier.verify_request(to_bytes(signed)), context.request)


# --- independent checkers ---------------------------------------------------------------


def _accepted_vectors(*, excluding: frozenset[str] = frozenset()) -> list[object]:
    """Accepted vectors as plain params: the independent checkers are not about the gateway's known issues."""
    return [
        pytest.param(vector, id=vector.id)
        for vector in VECTORS
        if vector.expect_check is None or (vector.known_issue and vector.category == POSITIVE)
        if vector.id not in excluding
    ]


def _verification_time(vector: Vector, context: VectorContext) -> dt.datetime:
    return vector.at(context) if vector.at is not None else context.now


def _signing_certificate(vector: Vector, context: VectorContext) -> IssuedCertificate:
    """The certificate whose key signed an accepted vector (its setup imports it, or it is the signer)."""
    repository = baseline_repository(context)
    vector.apply_setup(context, repository, FixedClock(context.now))
    added = [c.certificate for c in repository.certificates()]
    for issued in context.certificates.values():
        if issued.certificate in added:
            return issued
    return context.signer


def _xmlsec1_verifies(xmlsec1: str, data: bytes, certificate: IssuedCertificate, directory: Path) -> bool:
    document = directory / "vector.xml"
    cert = directory / "cert.pem"
    document.write_bytes(data)
    certificate.write_cert_pem(cert)
    result = subprocess.run(
        [xmlsec1, "--verify", "--pubkey-cert-pem", str(cert), str(document)],
        capture_output=True,
        timeout=30,
        check=False,
    )
    return result.returncode == 0


@pytest.mark.interop
@pytest.mark.parametrize("vector", _accepted_vectors())
def test_xmlsec1_verifies_accepted_vectors(vector: Vector, context: VectorContext, tmp_path: Path) -> None:
    xmlsec1 = require_xmlsec1()
    certificate = _signing_certificate(vector, context)
    assert _xmlsec1_verifies(xmlsec1, vector.build(context), certificate, tmp_path)


@pytest.mark.interop
@pytest.mark.parametrize("vector_id", GENERIC_VERIFIERS_ACCEPT)
def test_generic_verifiers_fall_for_profile_attacks(vector_id: str, context: VectorContext, tmp_path: Path) -> None:
    """These attacks are cryptographically valid: only the profile stops them."""
    vector = vectors_by_id()[vector_id]
    assert vector.expect_check is not None
    data = vector.build(context)
    _signxml_verify(data, context.signer, context.now)
    assert _xmlsec1_verifies(require_xmlsec1(), data, context.signer, tmp_path)


@pytest.mark.parametrize("vector", _accepted_vectors(excluding=frozenset(SIGNXML_REFUSES)))
def test_signxml_verifies_accepted_vectors(vector: Vector, context: VectorContext) -> None:
    certificate = _signing_certificate(vector, context)
    _signxml_verify(vector.build(context), certificate, _verification_time(vector, context))


@pytest.mark.parametrize("vector_id", sorted(SIGNXML_REFUSES))
def test_signxml_refusals_are_listed_accurately(vector_id: str, context: VectorContext) -> None:
    signxml = pytest.importorskip("signxml")
    with pytest.raises((signxml.exceptions.InvalidInput, etree.DocumentInvalid)):
        _signxml_verify(vectors_by_id()[vector_id].build(context), context.signer, context.now)


def _signxml_verify(data: bytes, certificate: IssuedCertificate, when: dt.datetime) -> None:
    signxml = pytest.importorskip("signxml")
    config = signxml.SignatureConfiguration(verification_time=when)
    signxml.XMLVerifier().verify(data, x509_cert=certificate.cert_pem().decode(), expect_config=config)


def test_a_utf16_comment_cannot_change_the_verified_counter(context: VectorContext, verifier: Verifier) -> None:
    """Verify returns what was signed, or refuses: never the text before a hidden comment."""
    data = vectors_by_id()["encoding-utf16le-comment-inside-text"].build(context)
    try:
        verified = verifier.verify_request(data)
    except VerificationError:
        return
    assert verified.request_id.counter == context.request.counter


def test_malleated_signature_differs_but_verifies(context: VectorContext, verifier: Verifier) -> None:
    """The (r, n - s) vector really changes the signature bytes (it is not the original in disguise)."""
    original = vectors_by_id()["duis-form"].build(context)
    malleated = vectors_by_id()["ecdsa-malleated-s"].build(context)
    assert _signature_value(original) != _signature_value(malleated)
    assert _signature_value(original)[:32] == _signature_value(malleated)[:32]
    assert verifier.verify_request(malleated).request_id == verifier.verify_request(original).request_id


def _signature_value(data: bytes) -> bytes:
    text = etree.fromstring(data)[-1].find(ds("SignatureValue")).text or ""
    return base64.b64decode(text)


_DER_EDGES = (1, 2, 0x7F, 0x80, 0xFF, 0x100, 1 << 247, (1 << 248) - 1, 1 << 255, (1 << 255) - 1, P256_ORDER - 1)


@pytest.mark.parametrize("r", _DER_EDGES)
@pytest.mark.parametrize("s", _DER_EDGES)
def test_the_verifier_der_encodes_r_and_s_exactly_as_cryptography_does(r: int, s: int) -> None:
    """The hand-written DER encoder (a hot path) writes encode_dss_signature's bytes: leading
    zero bytes stripped, a zero byte added under a set top bit."""
    assert der_signature(r.to_bytes(32, "big"), s.to_bytes(32, "big")) == encode_dss_signature(r, s)


def test_der_encoding_agrees_on_random_values() -> None:
    rng = random.Random(2)
    for _ in range(2000):
        r, s = rng.randrange(1, 1 << rng.randrange(1, 257)) % P256_ORDER or 1, rng.randrange(1, P256_ORDER)
        assert der_signature(r.to_bytes(32, "big"), s.to_bytes(32, "big")) == encode_dss_signature(r, s)
