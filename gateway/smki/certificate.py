"""An SMKI organisation certificate, read once and checked against the profile.

SPEC §4 / DOMAIN.md: P-256 with ecdsa-with-SHA256; subject ``OU`` = the
remote party role as two hex digits; subject ``x500UniqueIdentifier`` = a
64-bit BIT STRING holding the EUI-64; a critical keyUsage with exactly one
bit; critical certificatePolicies; 8-byte subject and authority key ids.

A certificate that breaks the profile is still loaded (so the verifier can
say *why* it refuses it, with ``certificate-profile``) but carries the reason
in :attr:`SmkiCertificate.profile_error` and is never trusted.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID, NameOID, SignatureAlgorithmOID

from gateway.eui64 import Eui64
from gateway.smki.names import NameKey


class RoleCode(enum.IntEnum):
    """SMKI remote party roles (subject OU, hex) that the gateway acts on."""

    RECOVERY = 0x01
    SUPPLIER = 0x02
    NETWORK_OPERATOR = 0x03
    ACCESS_CONTROL_BROKER = 0x04
    TRANSITIONAL_COS = 0x05
    WAN_PROVIDER = 0x06
    ISSUING_AUTHORITY = 0x07
    LOAD_CONTROLLER = 0x08
    OTHER = 0x7F
    XML_SIGN = 0x87
    DSP_XML_SIGN = 0x89


# DCC Boxed's DSP certificate from before DUIS 1.4.1 writes the role as the
# decimal text "137" (= 0x89). Real responses are signed with it, so the
# repository reads it as dSPXmlSign and marks it legacy; only response
# verification accepts a legacy role.
_LEGACY_DECIMAL_ROLES = {"137": RoleCode.DSP_XML_SIGN}
_HEX_ROLE = re.compile(r"\A[0-9A-F]{2}\Z")

SMKI_POLICIES = frozenset({"1.2.826.0.1.8641679.1.2.1.4"})
"""Organisation certificate policies the repository accepts: the one the DCC Boxed
(ZAZ1) test SMKI uses, which the generated test PKI reuses."""


class KeyUsage(enum.Enum):
    DIGITAL_SIGNATURE = "digitalSignature"
    KEY_AGREEMENT = "keyAgreement"


@dataclass(frozen=True, slots=True)
class SmkiCertificate:
    """What the gateway knows about one certificate in its SMKI repository."""

    certificate: x509.Certificate
    issuer: NameKey
    serial: int
    not_before: dt.datetime
    not_after: dt.datetime
    public_key: ec.EllipticCurvePublicKey | None
    eui64: Eui64 | None
    role: int | None
    """The remote party role, or None when the OU is unreadable."""
    legacy_role_text: bool
    """True when the OU was the pre-1.4.1 decimal form ("137")."""
    key_usage: KeyUsage | None
    profile_error: str | None
    """Why the certificate breaks the SMKI profile, or None when it keeps to it."""

    @classmethod
    def load(cls, certificate: x509.Certificate) -> SmkiCertificate:
        role, legacy, role_error = _read_role(certificate)
        eui64, eui_error = _read_eui64(certificate)
        key, key_error = _read_public_key(certificate)
        usage, usage_error = _read_key_usage(certificate)
        errors = [role_error, eui_error, key_error, usage_error, *_extension_errors(certificate)]
        return cls(
            certificate=certificate,
            issuer=NameKey.from_name(certificate.issuer),
            serial=certificate.serial_number,
            not_before=certificate.not_valid_before_utc,
            not_after=certificate.not_valid_after_utc,
            public_key=key,
            eui64=eui64,
            role=role,
            legacy_role_text=legacy,
            key_usage=usage,
            profile_error="; ".join(e for e in errors if e) or None,
        )

    @property
    def fingerprint(self) -> str:
        return self.certificate.fingerprint(hashes.SHA256()).hex()

    def describe(self) -> str:
        role = f"{self.role:02X}" if self.role is not None else "?"
        return f"EUI-64 {self.eui64} role {role} serial {self.serial} issuer {self.certificate.issuer.rfc4514_string()}"


def _read_role(cert: x509.Certificate) -> tuple[int | None, bool, str | None]:
    values = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)]
    if len(values) != 1 or not isinstance(values[0], str):
        return None, False, "subject must have exactly one OU (the remote party role)"
    text = values[0]
    if text in _LEGACY_DECIMAL_ROLES:
        return _LEGACY_DECIMAL_ROLES[text], True, None
    if not _HEX_ROLE.match(text):
        return None, False, f"subject OU {text!r} is not a role as two hex digits"
    return int(text, 16), False, None


def _read_eui64(cert: x509.Certificate) -> tuple[Eui64 | None, str | None]:
    attributes = cert.subject.get_attributes_for_oid(NameOID.X500_UNIQUE_IDENTIFIER)
    if len(attributes) != 1:
        return None, "subject must have exactly one x500UniqueIdentifier (the EUI-64)"
    value = attributes[0].value
    # cryptography returns a BIT STRING's contents with its unused-bits octet first.
    if not isinstance(value, bytes) or len(value) != 9 or value[0] != 0:
        return None, "x500UniqueIdentifier must be a 64-bit BIT STRING"
    return Eui64.from_bytes(value[1:]), None


def _read_public_key(cert: x509.Certificate) -> tuple[ec.EllipticCurvePublicKey | None, str | None]:
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        return None, "key must be ECDSA P-256"
    if cert.signature_algorithm_oid != SignatureAlgorithmOID.ECDSA_WITH_SHA256:
        return key, "certificate must be signed with ecdsa-with-SHA256"
    return key, None


_USAGE_BITS = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
)


def _read_key_usage(cert: x509.Certificate) -> tuple[KeyUsage | None, str | None]:
    try:
        extension = cert.extensions.get_extension_for_class(x509.KeyUsage)
    except x509.ExtensionNotFound:
        return None, "keyUsage is missing"
    if not extension.critical:
        return None, "keyUsage must be critical"
    usage = extension.value
    bits = [name for name in _USAGE_BITS if getattr(usage, name)]
    if usage.key_agreement and (usage.encipher_only or usage.decipher_only):
        bits.append("encipher/decipher_only")
    if bits == ["digital_signature"]:
        return KeyUsage.DIGITAL_SIGNATURE, None
    if bits == ["key_agreement"]:
        return KeyUsage.KEY_AGREEMENT, None
    return None, f"keyUsage must have exactly one bit (digitalSignature or keyAgreement), has {bits}"


def _extension_errors(cert: x509.Certificate) -> list[str]:
    errors: list[str] = []
    extensions = {ext.oid: ext for ext in cert.extensions}
    policies = extensions.get(ExtensionOID.CERTIFICATE_POLICIES)
    if policies is None:
        errors.append("certificatePolicies is missing")
    elif not policies.critical:
        errors.append("certificatePolicies must be critical")
    elif not {p.policy_identifier.dotted_string for p in policies.value} & SMKI_POLICIES:
        errors.append("certificatePolicies must name the SMKI organisation certificate policy")
    ski = extensions.get(ExtensionOID.SUBJECT_KEY_IDENTIFIER)
    if ski is None or len(ski.value.digest) != 8:
        errors.append("subjectKeyIdentifier must be 8 bytes")
    aki = extensions.get(ExtensionOID.AUTHORITY_KEY_IDENTIFIER)
    if aki is not None and aki.value.key_identifier is not None and len(aki.value.key_identifier) != 8:
        errors.append("authorityKeyIdentifier must be 8 bytes")
    constraints = extensions.get(ExtensionOID.BASIC_CONSTRAINTS)
    if constraints is not None and constraints.value.ca:
        errors.append("an organisation certificate must not be a CA")
    return errors
