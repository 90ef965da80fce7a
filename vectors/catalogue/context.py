"""Builds the :class:`VectorContext` from a test SMKI CA, and the baseline repository.

Every extra certificate a vector may need is issued here, once, under a fixed
name, so vectors stay declarative (``ctx.certificate(ROLE_SUPPLIER)``) and a
generated vector file is a pure function of the CA's seed and ``now``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from types import MappingProxyType

from gateway.eui64 import Eui64
from gateway.parse import Limits
from gateway.smki.repository import SmkiRepository
from vectors.catalogue.model import VectorContext
from vectors.catalogue.tooling import RequestFields
from pki import IssuedCertificate, ProfileViolations, RemotePartyRole, TestSmkiCa

UTC = dt.UTC
DEFAULT_NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DEFAULT_ORIGINATOR = Eui64.parse("90-B3-D5-1F-30-AA-00-01")
DEFAULT_OTHER_USER = Eui64.parse("90-B3-D5-1F-30-AA-00-02")
DEFAULT_TARGET = Eui64.parse("00-DB-12-34-56-78-90-A0")
FOREIGN_CA_NAME = "ZZ"
SHORT_LIFETIME = dt.timedelta(days=1)
"""The short-lived certificate is valid from now - 1 day to now + 1 day."""

# Names of the extra certificates (all for the originator's EUI-64 unless noted).
OTHER_USER = "other-user"
"""87 certificate of ``other_user``."""
TARGET_EUI = "target-eui"
"""87 certificate whose EUI-64 is the request's *target*, not its originator."""
NOT_IMPORTED = "not-imported"
"""A renewed 87 certificate nobody imported into the repository."""
SHORT_LIVED = "short-lived"
ROLE_SUPPLIER = "role-02"
ROLE_DSP = "role-89"
ROLE_ACB = "role-04"
LEGACY_137 = "legacy-ou-137"
"""OU written as the decimal text ``137`` (pre-1.4.1 DCC Boxed), i.e. dSPXmlSign."""
KEY_AGREEMENT = "key-agreement"
FOREIGN = "foreign-ca"
"""87 certificate issued by :data:`FOREIGN_CA_NAME`, whose CAs are never in the repository."""

VIOLATIONS: Mapping[str, ProfileViolations] = MappingProxyType(
    {
        "ou_text": ProfileViolations(ou_text="ZZ"),
        "omit_ou": ProfileViolations(omit_ou=True),
        "omit_eui64": ProfileViolations(omit_eui64=True),
        "eui64_raw": ProfileViolations(eui64_raw=bytes.fromhex("90B3D51F30AA")),
        "eui64_as_utf8": ProfileViolations(eui64_as_utf8=True),
        "key_usage_non_critical": ProfileViolations(key_usage_non_critical=True),
        "key_usage_two_bits": ProfileViolations(key_usage_two_bits=True),
        "omit_key_usage": ProfileViolations(omit_key_usage=True),
        "omit_policy": ProfileViolations(omit_policy=True),
        "policy_non_critical": ProfileViolations(policy_non_critical=True),
        "policy_oid": ProfileViolations(policy_oid="1.2.826.0.1.8641679.1.2.1.99"),
        "ski_length": ProfileViolations(ski_length=20),
        "omit_ski": ProfileViolations(omit_ski=True),
        "omit_aki": ProfileViolations(omit_aki=True),
        "curve_p384": ProfileViolations(curve_p384=True),
        "signed_by_unknown_ca": ProfileViolations(signed_by_unknown_ca=True),
        "basic_constraints_ca": ProfileViolations(basic_constraints_ca=True),
    }
)
"""One deliberately broken certificate per :class:`pki.ProfileViolations` field."""


def violation(field: str) -> str:
    """The certificate name of the violation of ``field``."""
    if field not in VIOLATIONS:
        raise KeyError(f"no ProfileViolations field {field!r}")
    return f"violation/{field}"


def xml_sign_label(eui64: Eui64) -> str:
    """The key label of a user's xmlSign certificate (as the test fixtures issue it)."""
    return f"xml-sign/{eui64.compact}"


def build_context(
    ca: TestSmkiCa,
    *,
    now: dt.datetime = DEFAULT_NOW,
    signer: IssuedCertificate | None = None,
    originator: Eui64 = DEFAULT_ORIGINATOR,
    target: Eui64 = DEFAULT_TARGET,
    other_user: Eui64 = DEFAULT_OTHER_USER,
    limits: Limits | None = None,
) -> VectorContext:
    """The context for ``ca``; ``signer`` defaults to the originator's 87 certificate."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    signer = signer or ca.issue(xml_sign_label(originator), eui64=originator, role=RemotePartyRole.XML_SIGN)
    foreign_ca = TestSmkiCa.create(ca.seed, not_before=ca.not_before, not_after=ca.not_after, name=FOREIGN_CA_NAME)
    request = RequestFields(originator=originator, target=target)
    certificates = _extra_certificates(ca, foreign_ca, request, other_user, now)
    return VectorContext(
        ca=ca,
        signer=signer,
        now=now,
        request=request,
        other_user=other_user,
        limits=limits or Limits(),
        certificates=MappingProxyType(certificates),
        foreign_ca=foreign_ca,
    )


def baseline_repository(context: VectorContext) -> SmkiRepository:
    """What every vector starts from: root CA, organisation CA and the signer's certificate."""
    repository = SmkiRepository()
    repository.add_certificate(context.ca.root.certificate)
    repository.add_certificate(context.ca.org.certificate)
    repository.add_certificate(context.signer.certificate)
    return repository


def _extra_certificates(
    ca: TestSmkiCa, foreign_ca: TestSmkiCa, request: RequestFields, other_user: Eui64, now: dt.datetime
) -> dict[str, IssuedCertificate]:
    originator = request.originator
    xml_sign = RemotePartyRole.XML_SIGN
    start = now.replace(microsecond=0) - SHORT_LIFETIME
    end = now.replace(microsecond=0) + SHORT_LIFETIME
    certificates = {
        OTHER_USER: ca.issue(xml_sign_label(other_user), eui64=other_user, role=xml_sign),
        TARGET_EUI: ca.issue("vectors/target-eui", eui64=request.target, role=xml_sign),
        NOT_IMPORTED: ca.issue("vectors/not-imported", eui64=originator, role=xml_sign),
        SHORT_LIVED: ca.issue("vectors/short-lived", eui64=originator, role=xml_sign, not_before=start, not_after=end),
        ROLE_SUPPLIER: ca.issue("vectors/role-02", eui64=originator, role=RemotePartyRole.SUPPLIER),
        ROLE_DSP: ca.issue("vectors/role-89", eui64=originator, role=RemotePartyRole.DSP_XML_SIGN),
        ROLE_ACB: ca.issue("vectors/role-04", eui64=originator, role=RemotePartyRole.ACB),
        LEGACY_137: ca.issue(
            "vectors/legacy-137", eui64=originator, role=xml_sign, violations=ProfileViolations(ou_text="137")
        ),
        KEY_AGREEMENT: ca.issue("vectors/key-agreement", eui64=originator, role=xml_sign, key_usage="keyAgreement"),
        FOREIGN: foreign_ca.issue("vectors/foreign", eui64=originator, role=xml_sign),
    }
    for field, violations in VIOLATIONS.items():
        certificates[violation(field)] = ca.issue(
            f"vectors/violation/{field}", eui64=originator, role=xml_sign, violations=violations
        )
    return certificates


def violation_fields() -> frozenset[str]:
    """Every field of :class:`pki.ProfileViolations` (to check :data:`VIOLATIONS` covers them)."""
    return frozenset(field.name for field in dataclasses.fields(ProfileViolations))
