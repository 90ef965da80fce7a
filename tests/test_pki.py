"""The test SMKI PKI: determinism, the organisation certificate profile, violations, CRLs.

``profile_problems`` below is an independent checker: it reads certificates
with ``cryptography`` alone (not with ``pki.profile``), so the generator and
the checker cannot share a mistake.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import ExtensionOID, NameOID, SignatureAlgorithmOID

from gateway.eui64 import Eui64
from pki import (
    SMKI_POLICY_OID,
    IssuedCertificate,
    ProfileViolations,
    RemotePartyRole,
    TestSmkiCa,
    derive_private_key,
    read_subject_eui64,
    read_subject_role,
)
from pki.keys import P256_ORDER
from tests.shared_data import shared_path

UTC = dt.timezone.utc
NOT_BEFORE = dt.datetime(2024, 1, 1, tzinfo=UTC)
NOT_AFTER = dt.datetime(2124, 1, 1, tzinfo=UTC)
USER = Eui64.parse("90-B3-D5-1F-30-11-00-01")
SEED = b"test-pki-seed"


def make_ca(seed: bytes = SEED, name: str = "DG") -> TestSmkiCa:
    return TestSmkiCa.create(seed, not_before=NOT_BEFORE, not_after=NOT_AFTER, name=name)


@pytest.fixture(scope="module")
def ca() -> TestSmkiCa:
    return make_ca()


def issue_xml_sign(ca: TestSmkiCa, violations: ProfileViolations | None = None) -> x509.Certificate:
    issued = ca.issue("user", eui64=USER, role=RemotePartyRole.XML_SIGN, violations=violations)
    return reparse(issued)


def reparse(issued: IssuedCertificate) -> x509.Certificate:
    """Reads the certificate back from its PEM, as a consumer of the world would."""
    return x509.load_pem_x509_certificate(issued.cert_pem())


# --- independent profile checker -------------------------------------------------------


def _extension(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> x509.Extension[x509.ExtensionType] | None:
    try:
        return cert.extensions.get_extension_for_oid(oid)
    except x509.ExtensionNotFound:
        return None


def _subject_problems(cert: x509.Certificate) -> set[str]:
    problems: set[str] = set()
    ous = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    if not ous:
        problems.add("ou-missing")
    elif not re.fullmatch(r"[0-9A-F]{2}", str(ous[0].value)):
        problems.add("ou-format")
    uids = cert.subject.get_attributes_for_oid(NameOID.X500_UNIQUE_IDENTIFIER)
    if not uids:
        problems.add("eui64-missing")
    elif uids[0]._type != _ASN1Type.BitString:
        problems.add("eui64-type")
    elif uids[0].value != b"\x00" + USER.to_bytes():
        problems.add("eui64-value")
    return problems


def _key_usage_problems(cert: x509.Certificate) -> set[str]:
    extension = _extension(cert, ExtensionOID.KEY_USAGE)
    if extension is None:
        return {"key-usage-missing"}
    problems = set() if extension.critical else {"key-usage-non-critical"}
    usage = extension.value
    assert isinstance(usage, x509.KeyUsage)
    if [usage.digital_signature, usage.key_agreement].count(True) != 1 or usage.key_cert_sign or usage.crl_sign:
        problems.add("key-usage-bits")
    return problems


def _policy_problems(cert: x509.Certificate) -> set[str]:
    extension = _extension(cert, ExtensionOID.CERTIFICATE_POLICIES)
    if extension is None:
        return {"policy-missing"}
    problems = set() if extension.critical else {"policy-non-critical"}
    policies = extension.value
    assert isinstance(policies, x509.CertificatePolicies)
    if [p.policy_identifier.dotted_string for p in policies] != [SMKI_POLICY_OID]:
        problems.add("policy-oid")
    return problems


def _key_id_problems(cert: x509.Certificate, org: x509.Certificate) -> set[str]:
    problems: set[str] = set()
    ski = _extension(cert, ExtensionOID.SUBJECT_KEY_IDENTIFIER)
    if ski is None:
        problems.add("ski-missing")
    elif len(ski.value.digest) != 8:  # type: ignore[attr-defined]
        problems.add("ski-length")
    aki = _extension(cert, ExtensionOID.AUTHORITY_KEY_IDENTIFIER)
    org_ski = org.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    if aki is None:
        problems.add("aki-missing")
    elif aki.value.key_identifier != org_ski:  # type: ignore[attr-defined]
        problems.add("aki-mismatch")
    return problems


def _crypto_problems(cert: x509.Certificate, org: x509.Certificate) -> set[str]:
    problems: set[str] = set()
    key = cert.public_key()
    if not (isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)):
        problems.add("curve")
    if cert.signature_algorithm_oid != SignatureAlgorithmOID.ECDSA_WITH_SHA256:
        problems.add("signature-algorithm")
    if cert.issuer != org.subject:
        problems.add("issuer")
    try:
        cert.verify_directly_issued_by(org)
    except InvalidSignature:
        problems.add("signature")
    return problems


def _basic_constraints_problems(cert: x509.Certificate) -> set[str]:
    extension = _extension(cert, ExtensionOID.BASIC_CONSTRAINTS)
    if extension is not None and extension.value.ca:  # type: ignore[attr-defined]
        return {"basic-constraints-ca"}
    return set()


def profile_problems(cert: x509.Certificate, org: x509.Certificate) -> set[str]:
    """Every departure from the SMKI organisation certificate profile, by name."""
    return (
        _subject_problems(cert)
        | _key_usage_problems(cert)
        | _policy_problems(cert)
        | _key_id_problems(cert, org)
        | _crypto_problems(cert, org)
        | _basic_constraints_problems(cert)
    )


# --- roles -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "text"),
    [
        (RemotePartyRole.SUPPLIER, "02"),
        (RemotePartyRole.ISSUING_AUTHORITY, "07"),
        (RemotePartyRole.OTHER, "7F"),
        (RemotePartyRole.XML_SIGN, "87"),
        (RemotePartyRole.DSP_XML_SIGN, "89"),
    ],
)
def test_role_ou_text_is_two_upper_case_hex_digits(role: RemotePartyRole, text: str) -> None:
    assert role.ou_text == text
    assert RemotePartyRole.from_ou_text(text) is role


@pytest.mark.parametrize("text", ["137", "8", "ZZ", "7f", " 87", "87 ", "00", ""])
def test_role_from_ou_text_refuses_non_profile_text(text: str) -> None:
    with pytest.raises(ValueError):
        RemotePartyRole.from_ou_text(text)


# --- key derivation and determinism ---------------------------------------------------


def test_derived_key_is_p256_and_in_range() -> None:
    key = derive_private_key(SEED, "label")
    assert isinstance(key.curve, ec.SECP256R1)
    assert 1 <= key.private_numbers().private_value < P256_ORDER


def test_derived_keys_depend_on_seed_and_label() -> None:
    values = {
        derive_private_key(seed, label).private_numbers().private_value for seed in (b"a", b"b") for label in ("x", "y")
    }
    assert len(values) == 4
    assert derive_private_key(b"a", "x").private_numbers() == derive_private_key(b"a", "x").private_numbers()


def _world_bytes(ca: TestSmkiCa) -> list[bytes]:
    issued = ca.issue("user", eui64=USER, role=RemotePartyRole.XML_SIGN)
    ds = ca.issue("user-ds", eui64=USER, role=RemotePartyRole.SUPPLIER, common_name="SUPPLIER")
    crl = ca.crl([(issued.certificate.serial_number, NOT_BEFORE)], this_update=NOT_BEFORE, next_update=NOT_AFTER)
    return [
        ca.root.cert_pem(),
        ca.root.key_pem(),
        ca.org.cert_pem(),
        ca.org.key_pem(),
        issued.cert_pem(),
        issued.key_pem(),
        ds.cert_pem(),
        ds.key_pem(),
        crl.public_bytes(serialization.Encoding.PEM),
    ]


def test_same_seed_gives_byte_identical_pems() -> None:
    assert _world_bytes(make_ca()) == _world_bytes(make_ca())


def test_different_seed_gives_different_keys_and_certificates() -> None:
    first, second = _world_bytes(make_ca(b"one")), _world_bytes(make_ca(b"two"))
    assert all(a != b for a, b in zip(first, second, strict=True))


def test_same_label_keeps_key_but_new_dates_give_new_serial(ca: TestSmkiCa) -> None:
    first = ca.issue("renewed", eui64=USER, role=RemotePartyRole.XML_SIGN)
    second = ca.issue("renewed", eui64=USER, role=RemotePartyRole.XML_SIGN, not_after=NOT_AFTER - dt.timedelta(days=1))
    assert first.private_key.private_numbers() == second.private_key.private_numbers()
    assert first.certificate.serial_number != second.certificate.serial_number


def test_serials_are_positive_and_at_most_20_bytes(ca: TestSmkiCa) -> None:
    for label in ("a", "b", "c", "d"):
        serial = ca.issue(label, eui64=USER, role=RemotePartyRole.XML_SIGN).certificate.serial_number
        assert 0 < serial < 1 << (20 * 8 - 1)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        TestSmkiCa.create(SEED, not_before=dt.datetime(2024, 1, 1), not_after=NOT_AFTER)


# --- CAs ------------------------------------------------------------------------------


def test_root_ca_is_self_signed_ca(ca: TestSmkiCa) -> None:
    root = reparse(ca.root)
    assert root.subject.rfc4514_string() == "CN=DG Root"
    assert root.issuer == root.subject
    root.verify_directly_issued_by(root)
    constraints = root.extensions.get_extension_for_class(x509.BasicConstraints)
    usage = root.extensions.get_extension_for_class(x509.KeyUsage)
    assert constraints.critical and constraints.value.ca
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    assert len(root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest) == 8


def test_org_ca_is_ou_07_then_cn_and_signed_by_root(ca: TestSmkiCa) -> None:
    org, root = reparse(ca.org), reparse(ca.root)
    assert [a.oid for a in org.subject] == [NameOID.ORGANIZATIONAL_UNIT_NAME, NameOID.COMMON_NAME]
    assert org.subject.rfc4514_string() == "CN=DG,OU=07"
    org.verify_directly_issued_by(root)
    assert isinstance(org.public_key(), ec.EllipticCurvePublicKey)
    assert isinstance(org.public_key().curve, ec.SECP256R1)  # type: ignore[union-attr]
    assert org.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    ski = org.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    aki = org.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    root_ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert len(ski) == 8 and aki == root_ski


# --- the organisation certificate profile --------------------------------------------


def test_issued_certificate_has_no_profile_problems(ca: TestSmkiCa) -> None:
    assert profile_problems(issue_xml_sign(ca), reparse(ca.org)) == set()


def test_issued_certificate_fields(ca: TestSmkiCa) -> None:
    cert = issue_xml_sign(ca)
    assert [a.oid for a in cert.subject] == [NameOID.ORGANIZATIONAL_UNIT_NAME, NameOID.X500_UNIQUE_IDENTIFIER]
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "87"
    assert read_subject_role(cert.subject) is RemotePartyRole.XML_SIGN
    assert read_subject_eui64(cert.subject) == USER
    assert cert.issuer.rfc4514_string() == "CN=DG,OU=07"
    assert cert.not_valid_before_utc == NOT_BEFORE and cert.not_valid_after_utc == NOT_AFTER
    assert cert.signature_hash_algorithm is not None and cert.signature_hash_algorithm.name == "sha256"
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_agreement
    assert _extension(cert, ExtensionOID.BASIC_CONSTRAINTS) is None


def test_key_agreement_certificate_has_only_that_bit(ca: TestSmkiCa) -> None:
    issued = ca.issue("ka", eui64=USER, role=RemotePartyRole.SUPPLIER, key_usage="keyAgreement")
    cert = reparse(issued)
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_agreement and not usage.value.digital_signature
    assert profile_problems(cert, reparse(ca.org)) == set()


def test_common_name_comes_first(ca: TestSmkiCa) -> None:
    issued = ca.issue("ds", eui64=USER, role=RemotePartyRole.SUPPLIER, common_name="SUPPLIER")
    cert = reparse(issued)
    assert [a.oid for a in cert.subject] == [
        NameOID.COMMON_NAME,
        NameOID.ORGANIZATIONAL_UNIT_NAME,
        NameOID.X500_UNIQUE_IDENTIFIER,
    ]


def test_private_key_matches_certificate_and_signs(ca: TestSmkiCa) -> None:
    issued = ca.issue("signer", eui64=USER, role=RemotePartyRole.XML_SIGN)
    public = reparse(issued).public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    signature = issued.private_key.sign(b"message", ec.ECDSA(hashes.SHA256()))
    public.verify(signature, b"message", ec.ECDSA(hashes.SHA256()))


def test_pem_files_round_trip(ca: TestSmkiCa, tmp_path: Path) -> None:
    issued = ca.issue("files", eui64=USER, role=RemotePartyRole.XML_SIGN)
    cert_path, key_path = tmp_path / "c.pem", tmp_path / "k.pem"
    issued.write_pem(cert_path, key_path)
    assert key_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    loaded = IssuedCertificate.load(cert_path, key_path)
    assert loaded.certificate == issued.certificate
    assert loaded.private_key.private_numbers() == issued.private_key.private_numbers()


# --- deliberate violations -------------------------------------------------------------

VIOLATIONS = [
    pytest.param(ProfileViolations(ou_text="137"), {"ou-format"}, id="ou-decimal-137"),
    pytest.param(ProfileViolations(ou_text="8"), {"ou-format"}, id="ou-one-digit"),
    pytest.param(ProfileViolations(ou_text="ZZ"), {"ou-format"}, id="ou-not-hex"),
    pytest.param(ProfileViolations(omit_ou=True), {"ou-missing"}, id="ou-missing"),
    pytest.param(ProfileViolations(omit_eui64=True), {"eui64-missing"}, id="eui64-missing"),
    pytest.param(ProfileViolations(eui64_raw=bytes(6)), {"eui64-value"}, id="eui64-6-bytes"),
    pytest.param(ProfileViolations(eui64_raw=bytes(9)), {"eui64-value"}, id="eui64-9-bytes"),
    pytest.param(ProfileViolations(eui64_as_utf8=True), {"eui64-type"}, id="eui64-utf8string"),
    pytest.param(ProfileViolations(key_usage_non_critical=True), {"key-usage-non-critical"}, id="ku-non-critical"),
    pytest.param(ProfileViolations(key_usage_two_bits=True), {"key-usage-bits"}, id="ku-two-bits"),
    pytest.param(ProfileViolations(omit_key_usage=True), {"key-usage-missing"}, id="ku-missing"),
    pytest.param(ProfileViolations(omit_policy=True), {"policy-missing"}, id="policy-missing"),
    pytest.param(ProfileViolations(policy_non_critical=True), {"policy-non-critical"}, id="policy-non-critical"),
    pytest.param(ProfileViolations(policy_oid="1.2.3.4"), {"policy-oid"}, id="policy-other-oid"),
    pytest.param(ProfileViolations(ski_length=20), {"ski-length"}, id="ski-20-bytes"),
    pytest.param(ProfileViolations(ski_length=4), {"ski-length"}, id="ski-4-bytes"),
    pytest.param(ProfileViolations(omit_ski=True), {"ski-missing"}, id="ski-missing"),
    pytest.param(ProfileViolations(omit_aki=True), {"aki-missing"}, id="aki-missing"),
    pytest.param(ProfileViolations(curve_p384=True), {"curve"}, id="curve-p384"),
    pytest.param(ProfileViolations(signed_by_unknown_ca=True), {"signature"}, id="unknown-ca"),
    pytest.param(ProfileViolations(basic_constraints_ca=True), {"basic-constraints-ca"}, id="basic-constraints-ca"),
]


@pytest.mark.parametrize(("violations", "expected"), VIOLATIONS)
def test_each_violation_produces_exactly_its_problem(
    ca: TestSmkiCa, violations: ProfileViolations, expected: set[str]
) -> None:
    assert profile_problems(issue_xml_sign(ca, violations), reparse(ca.org)) == expected


def test_violations_combine(ca: TestSmkiCa) -> None:
    violations = ProfileViolations(ou_text="137", omit_policy=True, curve_p384=True)
    problems = profile_problems(issue_xml_sign(ca, violations), reparse(ca.org))
    assert problems == {"ou-format", "policy-missing", "curve"}


def test_every_violation_field_is_exercised() -> None:
    exercised = {
        name
        for param in VIOLATIONS
        for name in ProfileViolations.__dataclass_fields__
        if getattr(param.values[0], name) != getattr(ProfileViolations(), name)
    }
    assert exercised == set(ProfileViolations.__dataclass_fields__)


def test_profile_readers_refuse_violations(ca: TestSmkiCa) -> None:
    with pytest.raises(ValueError):
        read_subject_role(issue_xml_sign(ca, ProfileViolations(ou_text="137")).subject)
    with pytest.raises(ValueError):
        read_subject_eui64(issue_xml_sign(ca, ProfileViolations(eui64_raw=bytes(6))).subject)
    with pytest.raises(ValueError):
        read_subject_eui64(issue_xml_sign(ca, ProfileViolations(eui64_as_utf8=True)).subject)


def test_unknown_ca_still_claims_the_org_ca(ca: TestSmkiCa) -> None:
    cert = issue_xml_sign(ca, ProfileViolations(signed_by_unknown_ca=True))
    assert cert.issuer == ca.org.certificate.subject
    impostor = ca.unknown_ca_key().public_key()
    impostor.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))


@pytest.mark.parametrize(
    "fields",
    [
        {"ou_text": "87", "omit_ou": True},
        {"omit_eui64": True, "eui64_as_utf8": True},
        {"eui64_raw": b"x", "eui64_as_utf8": True},
        {"omit_key_usage": True, "key_usage_two_bits": True},
        {"omit_policy": True, "policy_oid": "1.2.3"},
        {"omit_ski": True, "ski_length": 4},
        {"ski_length": 8},
        {"policy_oid": SMKI_POLICY_OID},
    ],
    ids=repr,
)
def test_contradictory_or_empty_violations_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ProfileViolations(**fields)  # type: ignore[arg-type]


# --- CRL ------------------------------------------------------------------------------


def test_crl_lists_serials_and_verifies_with_org_ca_key(ca: TestSmkiCa) -> None:
    first = ca.issue("revoked-1", eui64=USER, role=RemotePartyRole.XML_SIGN).certificate.serial_number
    second = ca.issue("revoked-2", eui64=USER, role=RemotePartyRole.XML_SIGN).certificate.serial_number
    when = dt.datetime(2025, 6, 1, tzinfo=UTC)
    crl = ca.crl([(second, when), (first, when)], this_update=when, next_update=when + dt.timedelta(days=7))
    parsed = x509.load_pem_x509_crl(crl.public_bytes(serialization.Encoding.PEM))
    assert {entry.serial_number for entry in parsed} == {first, second}
    assert parsed.get_revoked_certificate_by_serial_number(first).revocation_date_utc == when  # type: ignore[union-attr]
    assert parsed.issuer == ca.org.certificate.subject
    assert parsed.is_signature_valid(ca.org.private_key.public_key())
    assert not parsed.is_signature_valid(ca.root.private_key.public_key())
    aki = parsed.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    assert aki == ca.org.key_id
    assert parsed.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == int(when.timestamp())


def test_empty_crl(ca: TestSmkiCa) -> None:
    crl = ca.crl([], this_update=NOT_BEFORE, next_update=NOT_AFTER)
    assert len(crl) == 0 and crl.is_signature_valid(ca.org.private_key.public_key())


# --- structure compared with the real DCC Boxed ZAZ1 certificates ----------------------


def _load_zaz1(name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(shared_path("zaz1", "pem", name).read_bytes())


def _encodings(name: x509.Name) -> list[tuple[str, _ASN1Type]]:
    return [(attribute.oid.dotted_string, attribute._type) for attribute in name]


def _extension_criticality(cert: x509.Certificate) -> dict[str, bool]:
    return {extension.oid.dotted_string: extension.critical for extension in cert.extensions}


def _extension_der(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> bytes:
    return cert.extensions.get_extension_for_oid(oid).value.public_bytes()


@pytest.mark.interop
def test_xml_sign_certificate_matches_zaz1_structure() -> None:
    zaz1 = _load_zaz1("xml-sign-90B3D51F30010000-ds.pem")
    ca = make_ca(name="Z1")
    ours = reparse(ca.issue("zaz1-like", eui64=Eui64.parse_compact("90B3D51F30010000"), role=RemotePartyRole.XML_SIGN))
    assert _encodings(ours.subject) == _encodings(zaz1.subject)
    assert _encodings(ours.issuer) == _encodings(zaz1.issuer)
    # Same DER byte for byte: attribute order, string types and the BIT STRING's unused-bits octet.
    assert ours.subject.public_bytes() == zaz1.subject.public_bytes()
    assert ours.issuer.public_bytes() == zaz1.issuer.public_bytes()
    # ZAZ1's xmlSign certificates carry no AKI; ZAZ1's DS certificates and ours do.
    ours_extensions = _extension_criticality(ours)
    assert ours_extensions.pop(ExtensionOID.AUTHORITY_KEY_IDENTIFIER.dotted_string) is False
    assert ours_extensions == _extension_criticality(zaz1)
    for oid in (ExtensionOID.KEY_USAGE, ExtensionOID.CERTIFICATE_POLICIES):
        assert _extension_der(ours, oid) == _extension_der(zaz1, oid)
    assert ours.signature_algorithm_oid == zaz1.signature_algorithm_oid
    assert ours.public_key().curve.name == zaz1.public_key().curve.name  # type: ignore[union-attr]
    ski = x509.SubjectKeyIdentifier
    assert len(ours.extensions.get_extension_for_class(ski).value.digest) == len(
        zaz1.extensions.get_extension_for_class(ski).value.digest
    )


@pytest.mark.interop
def test_digital_signing_certificate_matches_zaz1_structure() -> None:
    zaz1 = _load_zaz1("Z1-supplier-ds.pem")
    ca = make_ca(name="Z1")
    issued = ca.issue(
        "zaz1-supplier-like",
        eui64=Eui64.parse_compact("90B3D51F30010000"),
        role=RemotePartyRole.SUPPLIER,
        common_name="GITTESTSUPPLIER",
    )
    ours = reparse(issued)
    assert ours.subject.public_bytes() == zaz1.subject.public_bytes()
    assert _extension_criticality(ours) == _extension_criticality(zaz1)
    for oid in (ExtensionOID.KEY_USAGE, ExtensionOID.CERTIFICATE_POLICIES):
        assert _extension_der(ours, oid) == _extension_der(zaz1, oid)
    aki = x509.AuthorityKeyIdentifier
    assert len(ours.extensions.get_extension_for_class(aki).value.key_identifier or b"") == len(
        zaz1.extensions.get_extension_for_class(aki).value.key_identifier or b""
    )


@pytest.mark.interop
def test_zaz1_certificates_pass_the_readers() -> None:
    zaz1 = _load_zaz1("xml-sign-90B3D51F30010000-ds.pem")
    assert read_subject_eui64(zaz1.subject) == Eui64.parse_compact("90B3D51F30010000")
    assert read_subject_role(zaz1.subject) is RemotePartyRole.XML_SIGN
    with pytest.raises(ValueError):  # the pre-1.4.1 DSP certificate writes OU=137
        read_subject_role(_load_zaz1("dsp-xml-sign-90B3D51F30000002-ds-pre-1.4.1.pem").subject)
