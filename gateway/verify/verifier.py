"""The verification pipeline: bytes in, a verified document out, or VerificationError.

    parse (limits, hardened)  ->  document type  ->  schema
      ->  canonicalise once; the signature's bytes must be the profile's shape
      ->  certificate (repository, clock, CRL, role)
      ->  reference digest (document minus signature)  ->  ECDSA (SignedInfo)
      ->  bind signer EUI-64 to the signed originator  ->  verified document

The certificate always comes from the SMKI repository by issuer and serial.
Signer rules per document kind:

* Service Requests and directives: an xmlSign (``87``) certificate whose
  EUI-64 is the originator of the signed RequestID / DirectiveID.
* Responses and alerts: the DCC's dSPXmlSign (``89``) or ACB (``04``)
  certificate, EUI-64 = the DSP User ID (DCC Boxed signs responses with both,
  and with a pre-1.4.1 certificate whose OU reads ``137``).
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol, cast

from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree

from gateway.checks import Check, VerificationError
from gateway.clock import Clock
from gateway.eui64 import Eui64
from gateway.parse import HardenedParser, Limits
from gateway.smki.certificate import KeyUsage, RoleCode, SmkiCertificate
from gateway.smki.names import NameKey
from gateway.smki.repository import SmkiRepository
from gateway.verify import canonical, documents, signature
from gateway.verify.documents import VerifiedDirective, VerifiedDocument, VerifiedRequest

DCC_BOXED_DSP_USER_ID = Eui64.parse("90-B3-D5-1F-30-00-00-02")


class DocumentKind(enum.Enum):
    REQUEST = documents.REQUEST
    RESPONSE = documents.RESPONSE
    DIRECTIVE = documents.DIRECTIVE_ROOT


ALL_KINDS = frozenset(DocumentKind)
_KINDS_BY_TAG: Mapping[object, DocumentKind] = MappingProxyType({kind.value: kind for kind in DocumentKind})
_REQUESTS_ONLY = frozenset({DocumentKind.REQUEST})
_DIRECTIVES_ONLY = frozenset({DocumentKind.DIRECTIVE})


@dataclass(frozen=True, slots=True)
class SignerRule:
    """Which certificates may sign a kind of document."""

    roles: frozenset[int]
    accept_legacy_role_text: bool = False


SIGNER_RULES = {
    DocumentKind.REQUEST: SignerRule(frozenset({RoleCode.XML_SIGN})),
    DocumentKind.DIRECTIVE: SignerRule(frozenset({RoleCode.XML_SIGN})),
    DocumentKind.RESPONSE: SignerRule(
        frozenset({RoleCode.DSP_XML_SIGN, RoleCode.ACCESS_CONTROL_BROKER}), accept_legacy_role_text=True
    ),
}


class SchemaValidator(Protocol):
    def validate(self, root: etree._Element) -> None:
        """Raises VerificationError(Check.SCHEMA | Check.DOCUMENT_TYPE, ...)."""
        ...


RevocationDelay = Callable[[SmkiCertificate, dt.datetime], bool]
"""Answers whether a PMA delay keeps a revoked certificate usable at that time (MP134A)."""


class Verifier:
    """Verifies signed DUIS documents against an SMKI repository at the injected clock.

    Holds no per-call state; not thread-safe only because its lxml parser
    is not: give each thread its own Verifier.
    """

    def __init__(
        self,
        repository: SmkiRepository,
        clock: Clock,
        *,
        schemas: SchemaValidator | None = None,
        limits: Limits | None = None,
        dsp_user_id: Eui64 = DCC_BOXED_DSP_USER_ID,
        revocation_delay: RevocationDelay | None = None,
    ) -> None:
        self.repository = repository
        self._clock = clock
        self._schemas = schemas
        self._parser = HardenedParser(limits)
        self._dsp_user_id = dsp_user_id
        self._revocation_delay = revocation_delay
        self._issuer_names = IssuerNameCache()

    def verify(self, data: bytes, *, accept: frozenset[DocumentKind] = ALL_KINDS) -> VerifiedDocument:
        tree = self._parser.parse(data)
        root = tree.getroot()
        kind = _document_kind(root, accept)
        if self._schemas is not None:
            self._schemas.validate(root)
        element = signature.find_signature(root)
        found = _canonical_signature(tree, element)
        parts = signature.read_parts(found, self._issuer_names.parse)
        signer, public_key = self._trusted_certificate(parts, SIGNER_RULES[kind])
        signature.check_digest(parts.digest, found.signed_content)
        signature.check_ecdsa(parts, public_key)
        return self._bind_signer(kind, root, signer)

    def verify_request(self, data: bytes) -> VerifiedRequest:
        return cast(VerifiedRequest, self.verify(data, accept=_REQUESTS_ONLY))

    def verify_directive(self, data: bytes) -> VerifiedDirective:
        return cast(VerifiedDirective, self.verify(data, accept=_DIRECTIVES_ONLY))

    # --- certificate ----------------------------------------------------------

    def _trusted_certificate(
        self, parts: signature.SignatureParts, rule: SignerRule
    ) -> tuple[SmkiCertificate, ec.EllipticCurvePublicKey]:
        found = self.repository.lookup(parts.issuer, parts.serial)
        if found is None:
            raise VerificationError(
                Check.CERTIFICATE_UNKNOWN,
                f"no certificate with serial {parts.serial} from issuer {parts.issuer} in the SMKI repository",
            )
        if found.profile_error is not None or found.public_key is None:
            raise VerificationError(Check.CERTIFICATE_PROFILE, f"certificate breaks the SMKI profile: {found.profile_error}")
        chain_error = self.repository.chain_error(found)
        if chain_error is not None:
            raise VerificationError(Check.CERTIFICATE_CHAIN, chain_error)
        self._check_role(found, rule)
        self._check_time(found)
        return found, found.public_key

    def _check_role(self, certificate: SmkiCertificate, rule: SignerRule) -> None:
        if certificate.key_usage is not KeyUsage.DIGITAL_SIGNATURE:
            raise VerificationError(Check.CERTIFICATE_ROLE, "certificate is not for digital signatures")
        if certificate.role not in rule.roles:
            wanted = "/".join(f"{role:02X}" for role in sorted(rule.roles))
            raise VerificationError(
                Check.CERTIFICATE_ROLE, f"certificate role {certificate.role:02X} may not sign this document (needs {wanted})"
            )
        if certificate.legacy_role_text and not rule.accept_legacy_role_text:
            raise VerificationError(Check.CERTIFICATE_ROLE, "legacy decimal role text is accepted on DCC responses only")

    def _check_time(self, certificate: SmkiCertificate) -> None:
        now = self._clock.now()
        if now < certificate.not_before:
            raise VerificationError(
                Check.CERTIFICATE_NOT_YET_VALID, f"certificate valid from {certificate.not_before.isoformat()}"
            )
        if now > certificate.not_after:
            raise VerificationError(Check.CERTIFICATE_EXPIRED, f"certificate expired at {certificate.not_after.isoformat()}")
        revoked = self.repository.revoked_at(certificate)
        if revoked is not None and revoked <= now:
            if self._revocation_delay is None or not self._revocation_delay(certificate, now):
                raise VerificationError(Check.CERTIFICATE_REVOKED, f"certificate revoked at {revoked.isoformat()}")

    # --- binding ------------------------------------------------------------------

    def _bind_signer(self, kind: DocumentKind, root: etree._Element, signer: SmkiCertificate) -> VerifiedDocument:
        if kind is DocumentKind.REQUEST:
            request = documents.signed_request(root, signer)
            _same_eui64(signer, request.originator, "the RequestID originator")
            return request
        if kind is DocumentKind.DIRECTIVE:
            directive = documents.signed_directive(root, signer)
            _same_eui64(signer, directive.directive_id.originator, "the DirectiveID originator")
            return directive
        _same_eui64(signer, self._dsp_user_id, "the DCC's DSP User ID")
        return documents.signed_response(root, signer)


class IssuerNameCache:
    """X509IssuerName text -> NameKey, bounded: the text is attacker-chosen.

    Parsing an issuer name costs as much as the rest of the signature walk;
    real traffic names a handful of CAs, so a small cache pays.
    """

    def __init__(self, capacity: int = 256) -> None:
        self._capacity = capacity
        self._parsed: dict[str, NameKey] = {}

    def parse(self, text: str) -> NameKey:
        found = self._parsed.get(text)
        if found is None:
            found = NameKey.parse(text)
            if len(self._parsed) >= self._capacity:
                self._parsed.clear()
            self._parsed[text] = found
        return found


def _canonical_signature(tree: etree._ElementTree, element: etree._Element) -> canonical.CanonicalSignature:
    """One canonicalisation: inclusive C14N for the DUIS form; exclusive only when the reference asks.

    ``element`` is the signature find_signature returned: the root's last child."""
    try:
        found = canonical.read_canonical_signature(canonical.canonicalise(tree, exclusive=False))
        if found.exclusive_reference:
            found = canonical.read_canonical_signature(canonical.canonicalise(tree, exclusive=True))
    except canonical.ProfileMismatch:
        signature.explain(element)
    return found


def _document_kind(root: etree._Element, accept: frozenset[DocumentKind]) -> DocumentKind:
    kind = _KINDS_BY_TAG.get(root.tag)  # a plain lookup: calling the Enum costs ten times as much
    if kind is None:
        raise VerificationError(Check.DOCUMENT_TYPE, f"unexpected root element {root.tag}")
    if kind not in accept:
        names = ", ".join(sorted(k.name.lower() for k in accept))
        raise VerificationError(Check.DOCUMENT_TYPE, f"a {kind.name.lower()} is not accepted here (expects {names})")
    return kind


def _same_eui64(signer: SmkiCertificate, expected: Eui64, what: str) -> None:
    if signer.eui64 != expected:
        raise VerificationError(
            Check.SIGNER_MISMATCH, f"signed by EUI-64 {signer.eui64}, which is not {what} ({expected})"
        )
