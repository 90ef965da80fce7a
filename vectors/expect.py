"""What a run expects of the endpoint: the ``--expect`` profiles, and which vectors each judges.

``ours``
    Every vector of the suite, with the exact answer this gateway gives: the
    problem's ``check`` id and HTTP status for a refusal before authentication,
    the DUIS response code after it, a directive's verdict. For this gateway,
    or a build of it.

``strict-duis``
    Only the verdicts any strict DUIS gateway must give, whatever its error
    format: the catalogue's signature-level vectors (wrapping, content,
    profile, certificate, positive) whose verdict follows from XMLDSig, the
    DUIS signature profile (SPEC §4) and the SMKI certificate rules. A refusal
    is any HTTP 4xx but 404/405/408/429, which say nothing of the request's
    content (DUIS has no response code for a failed signature, so an
    endpoint that answers a forged request with a DUIS response has
    authenticated it); an acceptance is HTTP 200 with a signed ``sr:Response``,
    whatever its DUIS code (the policy may refuse what the signature let
    through). Everything else is left out, each vector with its reason
    (:func:`strict_duis_verdict`): the parser's and the schema's choices, this
    gateway's own policy and directives, and where this gateway is knowingly
    stricter or laxer than DUIS asks.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType

from vectors.catalogue.model import (
    CERTIFICATE,
    CONTENT,
    DOCUMENT,
    MALLEABILITY,
    PARSE,
    POSITIVE,
    PROFILE,
    WRAPPING,
    Vector,
)


class Profile(enum.Enum):
    OURS = "ours"
    STRICT_DUIS = "strict-duis"


class Verdict(enum.Enum):
    ACCEPT = "accept"
    REFUSE = "refuse"


SCENARIO_LEFT_OUT = "the SoLR scenario: this gateway's own policy, codes E40-E43 and /api/v1/admin directives"
"""Why strict-duis leaves out every stateful vector."""

_LEFT_OUT_CATEGORIES: Mapping[str, str] = MappingProxyType(
    {
        PARSE: "parser hardening and limits are this gateway's choices (SPEC §5): another gateway may parse "
        "the construct safely, or draw its limits elsewhere",
        DOCUMENT: "document type and schema are checked before the signature; another gateway may answer "
        "them with a DUIS code rather than refuse them",
        MALLEABILITY: "either verdict is acceptable (Wycheproof's 'acceptable'): the signature is the same, "
        "only its encoding differs",
    }
)

_SIGNXML_FORM = (
    "the signxml form (an explicit exc-c14n transform) is this gateway's extension of the DUIS form, "
    "whose only transform is enveloped-signature"
)
_CANONICAL_SHAPE = (
    "refused by this gateway's canonical shape (one ds prefix, no other declaration or attribute inside "
    "the signature); nothing signed changes, so a DUIS gateway may accept it"
)
_XMLDSIG_ATTRIBUTE = (
    "XMLDSig allows this attribute and the DUIS profile names no rule against it; this gateway's canonical shape "
    "refuses it"
)
_ISSUER_AS_NAME = (
    "this gateway compares X509IssuerName as an X.509 name; a gateway that compares the RFC 4514 text refuses it"
)

BEYOND_DUIS: Mapping[str, str] = MappingProxyType(
    {
        "signxml-form": _SIGNXML_FORM,
        "base64-wrapped-cr-lf-signxml-form": _SIGNXML_FORM,
        "ds-prefix-dsig-signxml-form": _SIGNXML_FORM,
        "content-namespace-added-signxml-form": _SIGNXML_FORM,
        "content-namespace-added-on-signature": _CANONICAL_SHAPE,
        "structure-mixed-ds-prefixes": _CANONICAL_SHAPE,
        "structure-signature-id-attribute": _XMLDSIG_ATTRIBUTE,
        "structure-signed-info-id-attribute": _XMLDSIG_ATTRIBUTE,
        "signature-value-id-attribute": _XMLDSIG_ATTRIBUTE,
        "key-info-id-attribute": _XMLDSIG_ATTRIBUTE,
        "reference-id-attribute": _XMLDSIG_ATTRIBUTE,
        "reference-type-attribute": _XMLDSIG_ATTRIBUTE,
        "issuer-name-spaces-and-rdn-order": _ISSUER_AS_NAME,
        "issuer-name-case-and-double-space": _ISSUER_AS_NAME,
        "certificate-ca-not-in-repository": "accepted here because importing a certificate is the act of trust "
        "(the ZAZ1 CA is not published); a gateway that demands the chain refuses it",
        "note-comment-between-elements": "a comment is never signed content; accepting one that stands alone "
        "between elements is this gateway's parser policy (for the real DUIS templates), and a gateway that "
        "refuses every comment is strict, not wrong",
        "certificate-profile-omit-aki": "accepted here because the real ZAZ1 xmlSign certificates have no "
        "authorityKeyIdentifier; a gateway that checks the SMKI profile to the letter refuses it",
    }
)
"""Signature-level vectors a strict DUIS gateway may answer otherwise, with the reason."""


def strict_duis_verdict(vector: Vector) -> tuple[Verdict | None, str]:
    """The verdict any strict DUIS gateway must give ``vector``, or None and why it is left out."""
    left_out = _LEFT_OUT_CATEGORIES.get(vector.category) or BEYOND_DUIS.get(vector.id)
    if left_out is not None:
        return None, left_out
    if vector.category not in (WRAPPING, CONTENT, PROFILE, CERTIFICATE, POSITIVE):
        raise ValueError(f"{vector.id}: no strict-DUIS rule for category {vector.category!r}")
    return (Verdict.ACCEPT if vector.expect_check is None else Verdict.REFUSE), ""
