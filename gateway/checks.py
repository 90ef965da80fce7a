"""Pre-authentication checks: their machine-readable ids and the one error type.

Every failure before the sender is authenticated (parse, limits, schema,
signature, certificate) raises :class:`VerificationError` carrying a
:class:`Check`. The HTTP layer turns it into an RFC 9457 problem with the
check's status; ``dcc-gateway verify --json`` prints ``check`` verbatim.
"""

from __future__ import annotations

import enum


class Check(enum.Enum):
    """A check that can fail, with the HTTP status its failure maps to."""

    def __init__(self, check_id: str, http_status: int) -> None:
        self.check_id = check_id
        self.http_status = http_status

    # --- limits and parsing (400 / 408 / 413 / 415) -----------------------
    SIZE_LIMIT = ("size-limit", 413)
    BODY_TIMEOUT = ("body-timeout", 408)
    ENCODING = ("encoding", 415)
    MEDIA_TYPE = ("media-type", 415)
    NOT_WELL_FORMED = ("not-well-formed", 400)
    DTD = ("dtd", 400)
    ENTITY = ("entity", 400)
    COMMENT = ("comment", 400)
    PROCESSING_INSTRUCTION = ("processing-instruction", 400)
    CDATA = ("cdata", 400)
    DEPTH_LIMIT = ("depth-limit", 400)
    ELEMENT_LIMIT = ("element-limit", 400)
    ATTRIBUTE_LIMIT = ("attribute-limit", 400)
    NAMESPACE_LIMIT = ("namespace-limit", 400)
    NAMESPACE_URI = ("namespace-uri", 400)
    DOCUMENT_TYPE = ("document-type", 400)
    SCHEMA = ("schema", 400)
    # --- signature profile and cryptography (401) -------------------------
    SIGNATURE_MISSING = ("signature-missing", 401)
    SIGNATURE_DUPLICATE = ("signature-duplicate", 401)
    SIGNATURE_POSITION = ("signature-position", 401)
    SIGNATURE_STRUCTURE = ("signature-structure", 401)
    SIGNATURE_OBJECT = ("signature-object", 401)
    KEY_INFO = ("key-info", 401)
    REFERENCE = ("reference", 401)
    TRANSFORMS = ("transforms", 401)
    C14N_ALGORITHM = ("c14n-algorithm", 401)
    SIGNATURE_ALGORITHM = ("signature-algorithm", 401)
    DIGEST_ALGORITHM = ("digest-algorithm", 401)
    DIGEST_VALUE = ("digest-value", 401)
    DIGEST_MISMATCH = ("digest-mismatch", 401)
    SIGNATURE_VALUE = ("signature-value", 401)
    SIGNATURE_INVALID = ("signature-invalid", 401)
    # --- certificate (401) -------------------------------------------------
    CERTIFICATE_UNKNOWN = ("certificate-unknown", 401)
    CERTIFICATE_NOT_YET_VALID = ("certificate-not-yet-valid", 401)
    CERTIFICATE_EXPIRED = ("certificate-expired", 401)
    CERTIFICATE_REVOKED = ("certificate-revoked", 401)
    CERTIFICATE_ROLE = ("certificate-role", 401)
    CERTIFICATE_PROFILE = ("certificate-profile", 401)
    CERTIFICATE_CHAIN = ("certificate-chain", 401)
    SIGNER_MISMATCH = ("signer-mismatch", 401)


class VerificationError(Exception):
    """A document failed a pre-authentication check."""

    def __init__(self, check: Check, detail: str) -> None:
        super().__init__(f"{check.check_id}: {detail}")
        self.check = check
        self.detail = detail

    @property
    def check_id(self) -> str:
        return self.check.check_id

    @property
    def http_status(self) -> int:
        return self.check.http_status
