"""A deterministic test SMKI: root CA, organisation CA, certificates and CRLs.

Same seed, same bytes: keys and serials come from HMAC (:mod:`pki.keys`) and
every signature is deterministic ECDSA (RFC 6979). Key labels used here:

* ``ca/<name>/root``, ``ca/<name>/org``: the two CA keys;
* ``ca/<name>/unknown``: the impostor key behind ``signed_by_unknown_ca``;
* ``end-entity/<label>``: the key of :meth:`TestSmkiCa.issue` for ``label``
  (the same label always gives the same key, whatever else changes).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.eui64 import Eui64
from pki.keys import derive_private_key, derive_serial, key_identifier
from pki.profile import (
    NO_VIOLATIONS,
    SMKI_POLICY_OID,
    X500_UNIQUE_IDENTIFIER_OID,
    KeyUsageKind,
    ProfileViolations,
    authority_key_identifier,
    smki_extensions,
    smki_subject,
)
from pki.roles import RemotePartyRole

__all__ = [
    "SMKI_POLICY_OID",
    "X500_UNIQUE_IDENTIFIER_OID",
    "IssuedCertificate",
    "ProfileViolations",
    "TestSmkiCa",
    "build_crl",
    "derive_private_key",
]

_CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """A certificate and its private key."""

    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey

    @property
    def key_id(self) -> bytes:
        """The 8-byte key identifier of this key (the SKI the profile gives it)."""
        return key_identifier(self.private_key.public_key())

    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        """Unencrypted PKCS#8: test keys, read by tools such as xmlsec1 and signxml."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def write_cert_pem(self, path: Path) -> Path:
        path.write_bytes(self.cert_pem())
        return path

    def write_key_pem(self, path: Path) -> Path:
        """Writes the key readable by its owner only (habit, even for test keys)."""
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(self.key_pem())
        return path

    def write_pem(self, cert_path: Path, key_path: Path) -> None:
        self.write_cert_pem(cert_path)
        self.write_key_pem(key_path)

    @classmethod
    def load(cls, cert_path: Path, key_path: Path) -> IssuedCertificate:
        """Reads a PEM certificate and its unencrypted PEM EC private key."""
        certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_path} does not hold an EC private key")
        return cls(certificate, key)


def _require_aware(when: dt.datetime, what: str) -> dt.datetime:
    if when.tzinfo is None:
        raise ValueError(f"{what} must be timezone-aware")
    return when.astimezone(dt.timezone.utc)


def _sign_certificate(builder: x509.CertificateBuilder, key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    return builder.sign(key, hashes.SHA256(), ecdsa_deterministic=True)


def _with_extensions(
    builder: x509.CertificateBuilder, extensions: Iterable[tuple[x509.ExtensionType, bool]]
) -> x509.CertificateBuilder:
    for value, critical in extensions:
        builder = builder.add_extension(value, critical=critical)
    return builder


def _ca_certificate(
    *,
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: IssuedCertificate | None,
    serial: int,
    not_before: dt.datetime,
    not_after: dt.datetime,
    path_length: int | None,
) -> x509.Certificate:
    """A CA certificate; self-signed when ``issuer`` is None."""
    signer_key = issuer.private_key if issuer else key
    extensions: list[tuple[x509.ExtensionType, bool]] = [
        (x509.BasicConstraints(ca=True, path_length=path_length), True),
        (_CA_KEY_USAGE, True),
        (x509.SubjectKeyIdentifier(key_identifier(key.public_key())), False),
    ]
    if issuer is not None:
        extensions.append((authority_key_identifier(issuer.key_id), False))
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    return _sign_certificate(_with_extensions(builder, extensions), signer_key)


def _root_name(name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} Root")])


def _org_name(name: str) -> x509.Name:
    """``OU=07`` (issuing authority) then ``CN``, the DER order of ZAZ1's ``OU=07, CN=Z1``."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, RemotePartyRole.ISSUING_AUTHORITY.ou_text),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )


def build_crl(
    issuer: IssuedCertificate,
    revoked: Iterable[tuple[int, dt.datetime]],
    *,
    this_update: dt.datetime,
    next_update: dt.datetime,
    number: int | None = None,
) -> x509.CertificateRevocationList:
    """A CRL signed (deterministically) by ``issuer``, with AKI and CRL number.

    Entries are sorted by serial so the bytes do not depend on iteration order.
    The CRL number defaults to ``this_update`` in Unix seconds, so a later CRL
    always has a larger number without anyone keeping a counter.
    """
    this_update = _require_aware(this_update, "this_update")
    next_update = _require_aware(next_update, "next_update")
    crl_number = number if number is not None else int(this_update.timestamp())
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.certificate.subject)
        .last_update(this_update)
        .next_update(next_update)
        .add_extension(authority_key_identifier(issuer.key_id), critical=False)
        .add_extension(x509.CRLNumber(crl_number), critical=False)
    )
    for serial, when in sorted(revoked):
        entry = (
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(_require_aware(when, "revocation date"))
            .build()
        )
        builder = builder.add_revoked_certificate(entry)
    return builder.sign(issuer.private_key, hashes.SHA256(), ecdsa_deterministic=True)


@dataclass(frozen=True)
class TestSmkiCa:
    """A root CA and an organisation CA that issue SMKI organisation certificates.

    Build it with :meth:`create`; everything it produces is a pure function of
    the seed and the arguments.
    """

    __test__ = False  # not a pytest test class, despite the name

    seed: bytes
    name: str
    not_before: dt.datetime
    not_after: dt.datetime
    root: IssuedCertificate
    org: IssuedCertificate

    @classmethod
    def create(cls, seed: bytes, *, not_before: dt.datetime, not_after: dt.datetime, name: str = "DG") -> TestSmkiCa:
        """Makes the root (``CN=<name> Root``) and organisation (``OU=07, CN=<name>``) CAs."""
        not_before = _require_aware(not_before, "not_before")
        not_after = _require_aware(not_after, "not_after")
        root_key = derive_private_key(seed, f"ca/{name}/root")
        root_cert = _ca_certificate(
            subject=_root_name(name),
            key=root_key,
            issuer=None,
            serial=derive_serial(seed, f"ca/{name}/root"),
            not_before=not_before,
            not_after=not_after,
            path_length=None,
        )
        root = IssuedCertificate(root_cert, root_key)
        org_key = derive_private_key(seed, f"ca/{name}/org")
        org_cert = _ca_certificate(
            subject=_org_name(name),
            key=org_key,
            issuer=root,
            serial=derive_serial(seed, f"ca/{name}/org"),
            not_before=not_before,
            not_after=not_after,
            path_length=0,
        )
        return cls(seed, name, not_before, not_after, root, IssuedCertificate(org_cert, org_key))

    def unknown_ca_key(self) -> ec.EllipticCurvePrivateKey:
        """The impostor key behind ``ProfileViolations(signed_by_unknown_ca=True)``."""
        return derive_private_key(self.seed, f"ca/{self.name}/unknown")

    def issue(
        self,
        label: str,
        *,
        eui64: Eui64,
        role: RemotePartyRole,
        key_usage: KeyUsageKind = "digitalSignature",
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        common_name: str | None = None,
        violations: ProfileViolations | None = None,
    ) -> IssuedCertificate:
        """An SMKI organisation certificate for ``eui64`` in ``role``, signed by the organisation CA.

        The key depends on ``label`` alone; the serial on every argument, so
        re-issuing a label with other dates or violations gives the same key
        under a new serial (a renewal) rather than a clash in the repository.
        Validity defaults to the CA's.
        """
        violations = violations if violations is not None else NO_VIOLATIONS
        valid_from = _require_aware(not_before or self.not_before, "not_before")
        valid_to = _require_aware(not_after or self.not_after, "not_after")
        curve = ec.SECP384R1() if violations.curve_p384 else ec.SECP256R1()
        key = derive_private_key(self.seed, f"end-entity/{label}", curve)
        serial_label = "|".join(
            [
                f"end-entity/{label}",
                eui64.compact,
                role.ou_text,
                key_usage,
                valid_from.isoformat(),
                valid_to.isoformat(),
                repr(common_name),
                repr(violations),
            ]
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(smki_subject(eui64, role, common_name=common_name, violations=violations))
            .issuer_name(self.org.certificate.subject)
            .public_key(key.public_key())
            .serial_number(derive_serial(self.seed, serial_label))
            .not_valid_before(valid_from)
            .not_valid_after(valid_to)
        )
        builder = _with_extensions(builder, smki_extensions(key.public_key(), self.org.key_id, key_usage, violations))
        signer = self.unknown_ca_key() if violations.signed_by_unknown_ca else self.org.private_key
        return IssuedCertificate(_sign_certificate(builder, signer), key)

    def crl(
        self,
        revoked: Iterable[tuple[int, dt.datetime]],
        *,
        this_update: dt.datetime,
        next_update: dt.datetime,
        number: int | None = None,
    ) -> x509.CertificateRevocationList:
        """A CRL of the organisation CA listing ``(serial, revocation date)`` pairs."""
        return build_crl(self.org, revoked, this_update=this_update, next_update=next_update, number=number)
