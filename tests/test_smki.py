"""The SMKI repository and X.509 name matching: lookups, CRLs, chain checks, import and reload."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from gateway.eui64 import Eui64
from gateway.smki.certificate import RoleCode
from gateway.smki.names import NameKey
from gateway.smki.repository import IMPORTED_DIR, RepositoryError, SmkiRepository
from pki import IssuedCertificate, ProfileViolations, TestSmkiCa
from tests import factories
from tests.shared_data import shared_path

UTC = dt.UTC


def key_of(issued: IssuedCertificate) -> tuple[NameKey, int]:
    certificate = issued.certificate
    return NameKey.from_name(certificate.issuer), certificate.serial_number


def crl_pem(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.PEM)


# --- NameKey -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "CN=Z1,OU=07",
        "OU=07, CN=Z1",
        "cn=z1,  ou=07",
        " CN = Z1 , OU = 07 ",
        "2.5.4.3=Z1,2.5.4.11=07",
        "OID.2.5.4.11=07,oid.2.5.4.3=Z1",
        'CN="Z1",OU=07',
        "CN=\\5A1,OU=07",
    ],
)
def test_issuer_names_match_as_x509_names(text: str) -> None:
    z1 = x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "07"), x509.NameAttribute(NameOID.COMMON_NAME, "Z1")]
    )
    assert NameKey.parse(text) == NameKey.parse("CN=Z1,OU=07") == NameKey.from_name(z1)


@pytest.mark.parametrize(
    "other",
    ["CN=Z2,OU=07", "CN=Z1,OU=08", "CN=Z1", "OU=07", "CN=Z1,OU=07,O=DCC", "CN=Z 1,OU=07", "CN=Z1,O=07"],
)
def test_different_names_differ(other: str) -> None:
    assert NameKey.parse(other) != NameKey.parse("CN=Z1,OU=07")


def test_insignificant_spaces_inside_values_collapse() -> None:
    assert NameKey.parse("CN=Smart  Meter ,OU=07") == NameKey.parse("CN=smart meter,OU=07")


def test_escaped_comma_is_part_of_the_value() -> None:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "A,B")])
    assert NameKey.parse("CN=A\\,B") == NameKey.parse("CN=A\\2CB") == NameKey.from_name(name)
    assert NameKey.parse("CN=A\\,B") != NameKey.parse("CN=A,CN=B")


@pytest.mark.parametrize(
    "text",
    ["", "   ", "CN", "=Z1", "CN=Z1,", ",CN=Z1", "CN=Z1,,OU=07", "FOO=bar", "C N=Z1", "CN=Z1\\", "1.2.=x"],
)
def test_malformed_names_raise_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        NameKey.parse(text)


def test_overlong_names_raise_value_error() -> None:
    with pytest.raises(ValueError, match="too long"):
        NameKey.parse("CN=" + "x" * 2000)


# --- lookup ----------------------------------------------------------------------------


def test_lookup_by_issuer_name_text_and_serial(test_ca: TestSmkiCa, supplier_cert: IssuedCertificate) -> None:
    repository = factories.repository_with(test_ca, supplier_cert)
    serial = supplier_cert.certificate.serial_number
    for text in ("CN=DG,OU=07", "OU=07, CN=DG", "cn=dg,ou=07"):
        found = repository.lookup(NameKey.parse(text), serial)
        assert found is not None and found.certificate == supplier_cert.certificate
    assert found.eui64 == factories.SUPPLIER and found.role == RoleCode.XML_SIGN and found.profile_error is None


def test_lookup_misses(test_ca: TestSmkiCa, supplier_cert: IssuedCertificate) -> None:
    repository = factories.repository_with(test_ca, supplier_cert)
    issuer, serial = key_of(supplier_cert)
    assert repository.lookup(issuer, serial + 1) is None
    assert repository.lookup(NameKey.parse("CN=Other,OU=07"), serial) is None
    org_issuer, org_serial = key_of(test_ca.org)
    assert repository.lookup(org_issuer, org_serial) is None, "CAs are never looked up as signers"


def test_cas_are_kept_apart_from_organisation_certificates(test_ca: TestSmkiCa) -> None:
    repository = SmkiRepository()
    assert repository.add_certificate(test_ca.root.certificate) is None
    assert repository.add_certificate(test_ca.org.certificate) is None
    assert list(repository.certificates()) == []


def test_a_certificate_breaking_the_profile_is_kept_with_its_reason(test_ca: TestSmkiCa) -> None:
    broken = factories.issue_xml_sign(test_ca, label="smki/no-policy", violations=ProfileViolations(omit_policy=True))
    smki = SmkiRepository().add_certificate(broken.certificate)
    assert smki is not None and smki.profile_error is not None and "certificatePolicies" in smki.profile_error


# --- CRLs --------------------------------------------------------------------------------


def test_crl_of_a_known_ca_records_revocations(test_ca: TestSmkiCa, supplier_cert: IssuedCertificate) -> None:
    repository = factories.repository_with(test_ca, supplier_cert)
    when = dt.datetime(2026, 3, 1, tzinfo=UTC)
    crl = test_ca.crl([(supplier_cert.certificate.serial_number, when)], this_update=when, next_update=factories.NOW)
    repository.add_crl(crl)
    smki = repository.lookup(*key_of(supplier_cert))
    assert smki is not None and repository.revoked_at(smki) == when


def test_earliest_revocation_date_wins(test_ca: TestSmkiCa, supplier_cert: IssuedCertificate) -> None:
    repository = factories.repository_with(test_ca, supplier_cert)
    serial = supplier_cert.certificate.serial_number
    early, late = dt.datetime(2025, 1, 1, tzinfo=UTC), dt.datetime(2026, 1, 1, tzinfo=UTC)
    repository.add_crl(test_ca.crl([(serial, late)], this_update=late, next_update=factories.NOW))
    repository.add_crl(test_ca.crl([(serial, early)], this_update=late, next_update=factories.NOW))
    smki = repository.lookup(*key_of(supplier_cert))
    assert smki is not None and repository.revoked_at(smki) == early


def test_crl_signed_by_an_impostor_ca_with_the_same_name_is_refused(
    test_ca: TestSmkiCa, supplier_cert: IssuedCertificate
) -> None:
    """Same subject name ('OU=07, CN=DG'), different key: the CRL's signature decides, not its name."""
    impostor = TestSmkiCa.create(b"impostor", not_before=factories.CA_NOT_BEFORE, not_after=factories.CA_NOT_AFTER)
    assert impostor.org.certificate.subject == test_ca.org.certificate.subject
    repository = factories.repository_with(test_ca, supplier_cert)
    serial = supplier_cert.certificate.serial_number
    crl = impostor.crl([(serial, factories.NOW)], this_update=factories.NOW, next_update=factories.NOW)
    with pytest.raises(RepositoryError, match="not signed by a known CA"):
        repository.add_crl(crl)
    smki = repository.lookup(*key_of(supplier_cert))
    assert smki is not None and repository.revoked_at(smki) is None


def test_crl_before_its_ca_is_known_is_refused(test_ca: TestSmkiCa) -> None:
    crl = test_ca.crl([(1, factories.NOW)], this_update=factories.NOW, next_update=factories.NOW)
    with pytest.raises(RepositoryError):
        SmkiRepository().add_crl(crl)
    with pytest.raises(RepositoryError):
        SmkiRepository().add_pem(crl_pem(crl))


# --- chain -------------------------------------------------------------------------------


def test_chain_to_the_known_organisation_ca(test_ca: TestSmkiCa, supplier_cert: IssuedCertificate) -> None:
    repository = factories.repository_with(test_ca, supplier_cert)
    smki = repository.lookup(*key_of(supplier_cert))
    assert smki is not None and repository.chain_error(smki) is None


def test_certificate_signed_by_another_key_under_the_ca_name_breaks_the_chain(test_ca: TestSmkiCa) -> None:
    forged = factories.issue_xml_sign(
        test_ca, label="smki/forged", violations=ProfileViolations(signed_by_unknown_ca=True)
    )
    repository = factories.repository_with(test_ca, forged)
    smki = repository.lookup(*key_of(forged))
    assert smki is not None and smki.profile_error is None
    assert repository.chain_error(smki) is not None


def test_chain_is_not_checked_when_the_ca_is_absent_and_rechecked_when_it_arrives(test_ca: TestSmkiCa) -> None:
    """SPEC §4: chained to the organisation CA *when that CA is in the repository*; adding it must not
    leave a stale cached 'no error' behind."""
    forged = factories.issue_xml_sign(
        test_ca, label="smki/forged", violations=ProfileViolations(signed_by_unknown_ca=True)
    )
    repository = SmkiRepository()
    smki = repository.add_certificate(forged.certificate)
    assert smki is not None and repository.chain_error(smki) is None
    repository.add_certificate(test_ca.org.certificate)
    assert repository.chain_error(smki) is not None


def test_chain_check_is_computed_once_per_certificate(
    test_ca: TestSmkiCa, supplier_cert: IssuedCertificate, monkeypatch: pytest.MonkeyPatch
) -> None:
    repository = factories.repository_with(test_ca, supplier_cert)
    smki = repository.lookup(*key_of(supplier_cert))
    assert smki is not None
    computed: list[object] = []
    original = repository._compute_chain_error

    def counting(certificate: object) -> str | None:
        computed.append(certificate)
        return original(certificate)  # type: ignore[arg-type]

    monkeypatch.setattr(repository, "_compute_chain_error", counting)
    for _ in range(5):
        assert repository.chain_error(smki) is None
    assert len(computed) == 1


# --- import and reload ----------------------------------------------------------------------


def _keystore_certificate_entries(path: Path) -> int:
    """Independent count of the certificates a DCC Boxed keystore.json holds."""
    keystore = json.loads(path.read_text())
    return sum(
        1
        for usages in keystore.values()
        for entries in usages.values()
        for entry in entries.values()
        if isinstance(entry, dict) and str(entry.get("certificate") or "").strip()
    )


def _keys(repository: SmkiRepository) -> set[tuple[NameKey, int]]:
    return {(smki.issuer, smki.serial) for smki in repository.certificates()}


def test_keystore_import_reports_readable_and_unreadable_certificates(tmp_path: Path) -> None:
    keystore = shared_path("zaz1", "keystore.json")
    repository = SmkiRepository()
    report = repository.import_files(tmp_path, [keystore])
    assert report.certificates, "the ZAZ1 keystore holds readable certificates"
    assert len(report.certificates) + len(report.skipped) == _keystore_certificate_entries(keystore)
    assert all(str(keystore) in reason and "unreadable" in reason for reason in report.skipped)
    supplier = Eui64.parse_compact("90B3D51F30010000")
    assert any(c.eui64 == supplier and c.role == RoleCode.XML_SIGN for c in report.certificates)
    assert _keys(repository) == {(c.issuer, c.serial) for c in report.certificates}


def test_imported_files_reload_with_load_world(tmp_path: Path) -> None:
    keystore = shared_path("zaz1", "keystore.json")
    repository = SmkiRepository()
    repository.import_files(tmp_path, [keystore])
    persisted = list((tmp_path / IMPORTED_DIR).glob("*.pem"))
    assert persisted and all(b"PRIVATE KEY" not in path.read_bytes() for path in persisted)
    assert _keys(SmkiRepository.load_world(tmp_path)) == _keys(repository)


def test_pem_import_keeps_certificates_and_drops_private_keys(
    tmp_path: Path, test_ca: TestSmkiCa, supplier_cert: IssuedCertificate
) -> None:
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(supplier_cert.key_pem() + supplier_cert.cert_pem() + test_ca.org.cert_pem())
    repository = SmkiRepository()
    report = repository.import_files(tmp_path, [bundle])
    assert [c.certificate for c in report.certificates] == [supplier_cert.certificate]
    persisted = b"".join(path.read_bytes() for path in (tmp_path / IMPORTED_DIR).glob("*.pem"))
    assert b"PRIVATE KEY" not in persisted
    reloaded = SmkiRepository.load_world(tmp_path)
    smki = reloaded.lookup(*key_of(supplier_cert))
    assert smki is not None and reloaded.chain_error(smki) is None


def test_zaz1_pem_files_import_including_the_legacy_dsp_certificate(tmp_path: Path) -> None:
    folder = shared_path("zaz1", "pem")
    files = sorted(path for path in folder.glob("*.pem") if not path.name.endswith(".key.pem"))
    report = SmkiRepository().import_files(tmp_path, files)
    legacy = [c for c in report.certificates if c.legacy_role_text]
    assert legacy and all(c.role == RoleCode.DSP_XML_SIGN for c in legacy)


def test_world_layout_reloads_with_its_crl(
    tmp_path: Path, test_ca: TestSmkiCa, supplier_cert: IssuedCertificate
) -> None:
    """The layout `dcc-gateway init` writes: pki/org-ca.crl.pem sorts before pki/org-ca.pem."""
    pki_dir = tmp_path / "pki"
    (pki_dir / "actors" / "supplier").mkdir(parents=True)
    test_ca.root.write_cert_pem(pki_dir / "root-ca.pem")
    test_ca.org.write_cert_pem(pki_dir / "org-ca.pem")
    supplier_cert.write_cert_pem(pki_dir / "actors" / "supplier" / "xml-sign.pem")
    supplier_cert.write_key_pem(pki_dir / "actors" / "supplier" / "xml-sign.key.pem")
    revoked = dt.datetime(2026, 2, 1, tzinfo=UTC)
    crl = test_ca.crl(
        [(supplier_cert.certificate.serial_number, revoked)], this_update=revoked, next_update=factories.NOW
    )
    (pki_dir / "org-ca.crl.pem").write_bytes(crl_pem(crl))
    repository = SmkiRepository.load_world(tmp_path)
    smki = repository.lookup(*key_of(supplier_cert))
    assert smki is not None and repository.revoked_at(smki) == revoked
    assert repository.chain_error(smki) is None


def test_unreadable_pem_block_raises_repository_error() -> None:
    garbage = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    with pytest.raises(RepositoryError, match="unreadable"):
        SmkiRepository().add_pem(garbage)


def test_keystore_that_is_not_json_raises_repository_error(tmp_path: Path) -> None:
    path = tmp_path / "keystore.json"
    path.write_text("{not json")
    with pytest.raises(RepositoryError, match="not JSON"):
        SmkiRepository().import_files(tmp_path, [path])
