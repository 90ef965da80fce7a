"""Certificate vectors: lookup, validity at the clock, revocation, role, SMKI profile, chain, binding.

Each vector signs a correct DUIS-form request with the certificate under
test and imports that certificate (``prepare``); time vectors move the clock
(``at``) to one second either side of, and onto, each validity boundary.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from types import MappingProxyType

from gateway.checks import Check
from gateway.smki.repository import SmkiRepository
from vectors.catalogue.base import PITFALLS, RFC5280, SPEC4, add_certificates, signed_bytes, signed_tree
from vectors.catalogue.context import (
    FOREIGN,
    KEY_AGREEMENT,
    LEGACY_137,
    NOT_IMPORTED,
    OTHER_USER,
    ROLE_ACB,
    ROLE_DSP,
    ROLE_SUPPLIER,
    SHORT_LIVED,
    TARGET_EUI,
    VIOLATIONS,
    violation,
)
from vectors.catalogue.model import CERTIFICATE, At, Builder, Prepare, Vector, VectorContext
from vectors.catalogue.tooling import signature_part, to_bytes
from pki import IssuedCertificate

SMKI_PROFILE = "SPEC §4 (SMKI organisation certificate profile); DOMAIN.md 'SMKI certificates'"
SIGNER_RULE = "SPEC §4 (an 87 xmlSign certificate whose EUI-64 is the RequestID originator)"
ONE_SECOND = dt.timedelta(seconds=1)


def signed_with(name: str) -> Builder:
    """The default request signed with the named extra certificate's key, naming that certificate."""

    def build(context: VectorContext) -> bytes:
        return signed_bytes(context, key=context.certificate(name))

    return build


def named_but_signed_by_signer(name: str) -> Builder:
    """KeyInfo names the extra certificate; the signer's own key signs (for certificates whose key
    could not produce a 64-byte P-256 signature at all)."""

    def build(context: VectorContext) -> bytes:
        pair = IssuedCertificate(context.certificate(name).certificate, context.signer.private_key)
        return signed_bytes(context, key=pair)

    return build


def _key_info_edit(issuer: Callable[[VectorContext], str] | None, serial: Callable[[VectorContext], int]) -> Builder:
    def build(context: VectorContext) -> bytes:
        root = signed_tree(context)
        issuer_serial = signature_part(root, "KeyInfo/X509Data/X509IssuerSerial")
        if issuer is not None:
            issuer_serial[0].text = issuer(context)
        issuer_serial[1].text = str(serial(context))
        return to_bytes(root)

    return build


unknown_serial = _key_info_edit(None, lambda c: c.signer.certificate.serial_number + 1)
unknown_issuer = _key_info_edit(lambda c: "CN=Nobody,OU=07", lambda c: c.signer.certificate.serial_number)
names_org_ca = _key_info_edit(
    lambda c: c.ca.org.certificate.issuer.rfc4514_string(), lambda c: c.ca.org.certificate.serial_number
)


def _short_lived(context: VectorContext) -> IssuedCertificate:
    return context.certificate(SHORT_LIVED)


def _at_not_before(offset: dt.timedelta) -> At:
    return lambda c: _short_lived(c).certificate.not_valid_before_utc + offset


def _at_not_after(offset: dt.timedelta) -> At:
    return lambda c: _short_lived(c).certificate.not_valid_after_utc + offset


def _revoked(when: Callable[[VectorContext], dt.datetime]) -> Prepare:
    """Imports a CRL of the organisation CA that revokes the signer's certificate at ``when``."""

    def prepare(context: VectorContext, repository: SmkiRepository) -> None:
        serial = context.signer.certificate.serial_number
        crl = context.ca.crl(
            [(serial, when(context))],
            this_update=context.now - dt.timedelta(days=2),
            next_update=context.now + dt.timedelta(days=30),
        )
        repository.add_crl(crl, source="vector CRL")

    return prepare


def _certificate_vector(
    id: str,
    description: str,
    reference: str,
    name: str,
    check: Check | None,
    *,
    build: Builder | None = None,
    at: At | None = None,
    known_issue: str | None = None,
) -> Vector:
    return Vector(
        id,
        CERTIFICATE,
        description,
        reference,
        build or signed_with(name),
        None if check is None else check.check_id,
        prepare=add_certificates(name),
        at=at,
        known_issue=known_issue,
    )


# What each ProfileViolations field must yield, where it is not certificate-profile.
_VIOLATION_OUTCOMES: Mapping[str, tuple[Check | None, str]] = MappingProxyType(
    {
        "signed_by_unknown_ca": (
            Check.CERTIFICATE_CHAIN,
            "Issuer name and AKI claim the organisation CA (in the repository), but another key signed it.",
        ),
        "omit_aki": (
            None,
            (
                "No authorityKeyIdentifier: accepted, because the real ZAZ1 xmlSign certificates have none "
                "(pki/profile.py); the chain is still checked by signature."
            ),
        ),
    }
)


def _violation_vector(field: str) -> Vector:
    check, note = _VIOLATION_OUTCOMES.get(field, (Check.CERTIFICATE_PROFILE, ""))
    violations = VIOLATIONS[field]
    setting = f"{field}={getattr(violations, field)!r}"
    description = f"Certificate breaking the SMKI profile one way: ProfileViolations({setting})."
    if note:
        description = f"{description} {note}"
    build = named_but_signed_by_signer(violation(field)) if field == "curve_p384" else None
    if field == "curve_p384":
        description += " KeyInfo names it; the signer's P-256 key signs (a P-384 key cannot make r‖s of 64 bytes)."
    return _certificate_vector(
        f"certificate-profile-{field.replace('_', '-')}",
        description,
        f"{SMKI_PROFILE}; pki/profile.py ProfileViolations.{field}",
        violation(field),
        check,
        build=build,
    )


CERTIFICATE_VECTORS: tuple[Vector, ...] = (
    Vector(
        "certificate-unknown-serial",
        CERTIFICATE,
        "KeyInfo names the organisation CA with a serial nobody was issued (signer's serial + 1).",
        f"{SPEC4} (looked up by issuer and serial)",
        unknown_serial,
        Check.CERTIFICATE_UNKNOWN.check_id,
    ),
    Vector(
        "certificate-unknown-issuer",
        CERTIFICATE,
        "KeyInfo names an issuer the repository does not know, with the signer's serial.",
        f"{SPEC4} (looked up by issuer and serial)",
        unknown_issuer,
        Check.CERTIFICATE_UNKNOWN.check_id,
    ),
    Vector(
        "certificate-not-imported",
        CERTIFICATE,
        "A genuine certificate of the originator, issued by the organisation CA but never imported.",
        f"{SPEC4} (trust comes from the repository only)",
        signed_with(NOT_IMPORTED),
        Check.CERTIFICATE_UNKNOWN.check_id,
    ),
    Vector(
        "certificate-names-organisation-ca",
        CERTIFICATE,
        "KeyInfo names the organisation CA's own certificate (issuer Root, its serial): CAs never sign requests.",
        SPEC4,
        names_org_ca,
        Check.CERTIFICATE_UNKNOWN.check_id,
    ),
    _certificate_vector(
        "certificate-one-second-before-not-before",
        "Verified at notBefore − 1 s.",
        f"{RFC5280} §4.1.2.5; STYLE.md rule 5 (one second either side)",
        SHORT_LIVED,
        Check.CERTIFICATE_NOT_YET_VALID,
        at=_at_not_before(-ONE_SECOND),
    ),
    _certificate_vector(
        "certificate-at-not-before",
        "Verified exactly at notBefore: the validity period is inclusive, accepted.",
        f"{RFC5280} §4.1.2.5 (notBefore through notAfter, inclusive)",
        SHORT_LIVED,
        None,
        at=_at_not_before(dt.timedelta(0)),
    ),
    _certificate_vector(
        "certificate-at-not-after",
        "Verified exactly at notAfter: inclusive, accepted.",
        f"{RFC5280} §4.1.2.5 (inclusive)",
        SHORT_LIVED,
        None,
        at=_at_not_after(dt.timedelta(0)),
    ),
    _certificate_vector(
        "certificate-one-second-after-not-after",
        "Verified at notAfter + 1 s.",
        f"{RFC5280} §4.1.2.5; STYLE.md rule 5",
        SHORT_LIVED,
        Check.CERTIFICATE_EXPIRED,
        at=_at_not_after(ONE_SECOND),
    ),
    Vector(
        "certificate-revoked",
        CERTIFICATE,
        "The signer's certificate revoked a day ago by a CRL of the organisation CA.",
        f"{SPEC4} (not revoked); {RFC5280} §5",
        lambda c: signed_bytes(c),
        Check.CERTIFICATE_REVOKED.check_id,
        prepare=_revoked(lambda c: c.now - dt.timedelta(days=1)),
    ),
    Vector(
        "certificate-revoked-at-now",
        CERTIFICATE,
        "Revocation dated exactly at the verifier's clock: revoked from that instant.",
        f"{RFC5280} §5.1.2.6 (revocationDate)",
        lambda c: signed_bytes(c),
        Check.CERTIFICATE_REVOKED.check_id,
        prepare=_revoked(lambda c: c.now),
    ),
    Vector(
        "certificate-revocation-in-future",
        CERTIFICATE,
        "A CRL entry dated tomorrow: not yet revoked, accepted.",
        f"{RFC5280} §5.1.2.6",
        lambda c: signed_bytes(c),
        None,
        prepare=_revoked(lambda c: c.now + dt.timedelta(days=1)),
    ),
    _certificate_vector(
        "certificate-role-02-supplier",
        "Signed with the originator's Supplier (02) digital-signing certificate, which signs GBCS pre-commands.",
        f"{SIGNER_RULE}; DOMAIN.md 'SMKI certificates'",
        ROLE_SUPPLIER,
        Check.CERTIFICATE_ROLE,
    ),
    _certificate_vector(
        "certificate-role-89-dsp",
        "Signed with a dSPXmlSign (89) certificate: only the DCC signs responses with it.",
        SIGNER_RULE,
        ROLE_DSP,
        Check.CERTIFICATE_ROLE,
    ),
    _certificate_vector(
        "certificate-role-04-acb",
        "Signed with an ACB (04) certificate.",
        SIGNER_RULE,
        ROLE_ACB,
        Check.CERTIFICATE_ROLE,
    ),
    _certificate_vector(
        "certificate-role-legacy-137",
        "Signed with a certificate whose OU is the pre-1.4.1 decimal '137': tolerated on DCC responses only.",
        f"{SIGNER_RULE}; DOMAIN.md 'SMKI certificates' (legacy DSP OU)",
        LEGACY_137,
        Check.CERTIFICATE_ROLE,
    ),
    _certificate_vector(
        "certificate-key-agreement",
        "Signed with an 87 certificate whose keyUsage is keyAgreement.",
        f"{SMKI_PROFILE} (separate signing and key-agreement certificates)",
        KEY_AGREEMENT,
        Check.CERTIFICATE_ROLE,
    ),
    *(_violation_vector(field) for field in VIOLATIONS),
    _certificate_vector(
        "certificate-ca-not-in-repository",
        "87 certificate from a CA the repository does not hold: no chain can be checked, and SPEC §4 only "
        "checks it when the CA is present (the ZAZ1 CA is not published). Accepted: importing a certificate "
        "is the act of trust.",
        f"{SPEC4} (chained to the organisation CA when that CA is in the repository)",
        FOREIGN,
        None,
    ),
    _certificate_vector(
        "signer-mismatch-other-user",
        "Another registered user's valid 87 certificate signs a request whose RequestID names the originator.",
        f"{SIGNER_RULE}; {PITFALLS} (KeyInfo is unsigned: bind the certificate to the originator)",
        OTHER_USER,
        Check.SIGNER_MISMATCH,
    ),
    _certificate_vector(
        "signer-mismatch-target-eui",
        "A certificate whose EUI-64 is the request's target device, not its originator.",
        SIGNER_RULE,
        TARGET_EUI,
        Check.SIGNER_MISMATCH,
    ),
)
