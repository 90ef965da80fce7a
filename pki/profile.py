"""The SMKI organisation certificate profile, and deliberate departures from it.

The profile (as the DCC Boxed ZAZ1 certificates show it): subject
``[CN], OU=<role hex>, x500UniqueIdentifier=<64-bit BIT STRING EUI-64>``, P-256,
ecdsa-with-SHA256, critical keyUsage with exactly one bit, critical
certificatePolicies, 8-byte SKI and AKI. :class:`ProfileViolations` names every
way a security test may want to break it, one field per violation.

A note on BIT STRING values in ``cryptography``: a ``NameAttribute`` of type
``BitString`` holds the DER *contents*, i.e. the unused-bits octet followed by
the bits. A 64-bit EUI-64 is therefore the 9 bytes ``00 || eui64``; passing the
bare 8 bytes would encode a malformed BIT STRING (its first EUI-64 byte read
as an unused-bits count). Parsed certificates return the same 9 bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID

from gateway.eui64 import Eui64
from pki.keys import KEY_ID_BYTES, key_identifier
from pki.roles import RemotePartyRole

SMKI_POLICY_OID = "1.2.826.0.1.8641679.1.2.1.4"
"""The organisation certificate policy in ZAZ1; our convention for every issued certificate."""

X500_UNIQUE_IDENTIFIER_OID = "2.5.4.45"
"""x500UniqueIdentifier: the subject attribute that carries the EUI-64."""

KeyUsageKind = Literal["digitalSignature", "keyAgreement"]
Extensions = list[tuple[x509.ExtensionType, bool]]


@dataclass(frozen=True, slots=True)
class ProfileViolations:
    """Ways to break the SMKI profile on purpose; every default means "conformant".

    Each field is independent, so a test can combine any that do not
    contradict each other (contradictions raise ``ValueError``).
    """

    ou_text: str | None = None
    """Raw subject OU text instead of the role's two hex digits (``"137"``, ``"8"``, ``"ZZ"``)."""
    omit_ou: bool = False
    """No OU attribute in the subject."""
    omit_eui64: bool = False
    """No x500UniqueIdentifier attribute in the subject."""
    eui64_raw: bytes | None = None
    """BIT STRING payload to use instead of the EUI-64 (any length: 6 or 9 bytes, or another id)."""
    eui64_as_utf8: bool = False
    """The EUI-64 as a UTF8String of 16 hex digits instead of a BIT STRING."""
    key_usage_non_critical: bool = False
    """keyUsage present but not marked critical."""
    key_usage_two_bits: bool = False
    """keyUsage with both digitalSignature and keyAgreement set."""
    omit_key_usage: bool = False
    """No keyUsage extension."""
    omit_policy: bool = False
    """No certificatePolicies extension."""
    policy_non_critical: bool = False
    """certificatePolicies present but not marked critical."""
    policy_oid: str | None = None
    """A certificate policy OID other than :data:`SMKI_POLICY_OID`."""
    ski_length: int | None = None
    """A subject key identifier of this many bytes (1..32, not 8)."""
    omit_ski: bool = False
    """No subjectKeyIdentifier extension."""
    omit_aki: bool = False
    """No authorityKeyIdentifier extension (ZAZ1's xmlSign certificates have none)."""
    curve_p384: bool = False
    """A P-384 subject key instead of P-256."""
    signed_by_unknown_ca: bool = False
    """Issuer name and AKI still claim the organisation CA, but another key signs."""
    basic_constraints_ca: bool = False
    """A critical basicConstraints extension with ``CA=true``."""

    def __post_init__(self) -> None:
        _refuse_together(self.ou_text is not None, self.omit_ou, "ou_text", "omit_ou")
        _refuse_together(self.omit_eui64, self.eui64_raw is not None, "omit_eui64", "eui64_raw")
        _refuse_together(self.omit_eui64, self.eui64_as_utf8, "omit_eui64", "eui64_as_utf8")
        _refuse_together(self.eui64_raw is not None, self.eui64_as_utf8, "eui64_raw", "eui64_as_utf8")
        _refuse_together(self.omit_key_usage, self.key_usage_non_critical, "omit_key_usage", "key_usage_non_critical")
        _refuse_together(self.omit_key_usage, self.key_usage_two_bits, "omit_key_usage", "key_usage_two_bits")
        _refuse_together(self.omit_policy, self.policy_non_critical, "omit_policy", "policy_non_critical")
        _refuse_together(self.omit_policy, self.policy_oid is not None, "omit_policy", "policy_oid")
        _refuse_together(self.omit_ski, self.ski_length is not None, "omit_ski", "ski_length")
        if self.ski_length == KEY_ID_BYTES:
            raise ValueError("ski_length=8 is the profile, not a violation")
        if self.policy_oid == SMKI_POLICY_OID:
            raise ValueError("policy_oid equal to SMKI_POLICY_OID is not a violation")

    @property
    def conformant(self) -> bool:
        """True when no violation is asked for."""
        return self == ProfileViolations()


def _refuse_together(first: bool, second: bool, first_name: str, second_name: str) -> None:
    if first and second:
        raise ValueError(f"ProfileViolations: {first_name} and {second_name} contradict each other")


NO_VIOLATIONS = ProfileViolations()


def bit_string_value(payload: bytes) -> bytes:
    """A ``cryptography`` BitString attribute value for whole bytes (unused-bits octet 0)."""
    return b"\x00" + payload


def bit_string_payload(value: bytes) -> bytes:
    """The bits of a parsed BitString attribute value; refuses partial final bytes."""
    if not value or value[0] != 0:
        raise ValueError("BIT STRING with unused bits is not a whole number of bytes")
    return value[1:]


def _ou_attribute(role: RemotePartyRole, violations: ProfileViolations) -> x509.NameAttribute[str] | None:
    if violations.omit_ou:
        return None
    text = violations.ou_text if violations.ou_text is not None else role.ou_text
    return x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, text)


def _unique_identifier_attribute(
    eui64: Eui64, violations: ProfileViolations
) -> x509.NameAttribute[str] | x509.NameAttribute[bytes] | None:
    if violations.omit_eui64:
        return None
    if violations.eui64_as_utf8:
        return x509.NameAttribute(NameOID.X500_UNIQUE_IDENTIFIER, eui64.compact, _type=_ASN1Type.UTF8String)
    payload = violations.eui64_raw if violations.eui64_raw is not None else eui64.to_bytes()
    return x509.NameAttribute(NameOID.X500_UNIQUE_IDENTIFIER, bit_string_value(payload), _type=_ASN1Type.BitString)


def smki_subject(
    eui64: Eui64,
    role: RemotePartyRole,
    *,
    common_name: str | None = None,
    violations: ProfileViolations = NO_VIOLATIONS,
) -> x509.Name:
    """``[CN], OU, x500UniqueIdentifier`` in that DER order, as ZAZ1 writes them."""
    candidates = [
        x509.NameAttribute(NameOID.COMMON_NAME, common_name) if common_name is not None else None,
        _ou_attribute(role, violations),
        _unique_identifier_attribute(eui64, violations),
    ]
    return x509.Name([attribute for attribute in candidates if attribute is not None])


def _key_usage(kind: KeyUsageKind, two_bits: bool) -> x509.KeyUsage:
    digital_signature = kind == "digitalSignature" or two_bits
    key_agreement = kind == "keyAgreement" or two_bits
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=key_agreement,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _key_usage_extension(kind: KeyUsageKind, violations: ProfileViolations) -> Extensions:
    if violations.omit_key_usage:
        return []
    return [(_key_usage(kind, violations.key_usage_two_bits), not violations.key_usage_non_critical)]


def _policy_extension(violations: ProfileViolations) -> Extensions:
    if violations.omit_policy:
        return []
    oid = x509.ObjectIdentifier(violations.policy_oid or SMKI_POLICY_OID)
    policies = x509.CertificatePolicies([x509.PolicyInformation(oid, None)])
    return [(policies, not violations.policy_non_critical)]


def _key_identifier_extensions(
    subject_key: ec.EllipticCurvePublicKey, issuer_key_id: bytes, violations: ProfileViolations
) -> Extensions:
    extensions: Extensions = []
    if not violations.omit_ski:
        ski = key_identifier(subject_key, violations.ski_length or KEY_ID_BYTES)
        extensions.append((x509.SubjectKeyIdentifier(ski), False))
    if not violations.omit_aki:
        extensions.append((authority_key_identifier(issuer_key_id), False))
    return extensions


def _basic_constraints_extension(violations: ProfileViolations) -> Extensions:
    if not violations.basic_constraints_ca:
        return []
    return [(x509.BasicConstraints(ca=True, path_length=None), True)]


def authority_key_identifier(key_id: bytes) -> x509.AuthorityKeyIdentifier:
    """An AKI holding only the issuer's key identifier (as ZAZ1 writes it)."""
    return x509.AuthorityKeyIdentifier(
        key_identifier=key_id, authority_cert_issuer=None, authority_cert_serial_number=None
    )


def smki_extensions(
    subject_key: ec.EllipticCurvePublicKey,
    issuer_key_id: bytes,
    key_usage: KeyUsageKind,
    violations: ProfileViolations = NO_VIOLATIONS,
) -> Extensions:
    """The organisation certificate's extensions as ``(value, critical)`` pairs."""
    return [
        *_key_usage_extension(key_usage, violations),
        *_key_identifier_extensions(subject_key, issuer_key_id, violations),
        *_policy_extension(violations),
        *_basic_constraints_extension(violations),
    ]


def read_subject_eui64(name: x509.Name) -> Eui64:
    """The EUI-64 of a profile-conformant subject; ``ValueError`` otherwise.

    Exactly one x500UniqueIdentifier, encoded as a BIT STRING of exactly 64 bits.
    """
    attributes = name.get_attributes_for_oid(NameOID.X500_UNIQUE_IDENTIFIER)
    if len(attributes) != 1:
        raise ValueError(f"expected one x500UniqueIdentifier, found {len(attributes)}")
    attribute = attributes[0]
    if attribute._type != _ASN1Type.BitString or not isinstance(attribute.value, bytes):
        raise ValueError("x500UniqueIdentifier is not a BIT STRING")
    return Eui64.from_bytes(bit_string_payload(attribute.value))


def read_subject_role(name: x509.Name) -> RemotePartyRole:
    """The remote party role of a profile-conformant subject; ``ValueError`` otherwise."""
    attributes = name.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    if len(attributes) != 1:
        raise ValueError(f"expected one OU, found {len(attributes)}")
    value = attributes[0].value
    if not isinstance(value, str):
        raise ValueError("OU is not a string")
    return RemotePartyRole.from_ou_text(value)
