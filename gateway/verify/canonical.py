"""The signature profile as one fixed shape over canonical bytes (the fast path).

The verifier canonicalises the document once. The signature is the root's
last child, so its canonical bytes are a contiguous run that ends right
before its tail and the root's end tag; cutting that run out *is* the
enveloped-signature transform (C14N renders every node from its ancestors
only, so removing a subtree changes no other byte).

The run must match :data:`_PROFILE` exactly: the one shape SPEC §4 allows,
with every element in the signature's own prefix, no namespace declaration
inside it, no attribute but ``Algorithm`` and ``URI=""``, whitespace only
between elements. Because that grammar is balanced and the run ends at the
real end tag, a match can only be the real ds:Signature element. The
values (digest, r||s, issuer, serial) are read from the match, and the
SignedInfo bytes that ECDSA checks are taken from the same run, so what is
verified is exactly what was parsed.

When the run does not match, :func:`gateway.verify.signature.explain`
walks the tree to name the broken rule (it is slow and only runs on
rejection). Tests check that the walk and this shape agree on every vector.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from lxml import etree

from gateway.checks import Check, VerificationError
from gateway.namespaces import DS

# Unrolled loops ("a*(?:b a*)*") rather than alternations: same language, far fewer backtracking steps.
_WS = rb"[ \t\n]*(?:&#xD;[ \t\n]*)*"
_BASE64 = rb"[A-Za-z0-9+/= \t\n]*(?:&#xD;[A-Za-z0-9+/= \t\n]*)*"
_PLAIN_WS = rb"[ \t\n]*"
_PLAIN_BASE64 = rb"[A-Za-z0-9+/= \t\n]*"
_P = rb"(?P=p)"

# Algorithm URIs of the profile (mirrored in gateway.verify.signature).
_EXC_C14N = rb"http://www\.w3\.org/2001/10/xml-exc-c14n#"
_ENVELOPED = rb"http://www\.w3\.org/2000/09/xmldsig#enveloped-signature"
_ECDSA_SHA256 = rb"http://www\.w3\.org/2001/04/xmldsig-more#ecdsa-sha256"
_SHA256 = rb"http://www\.w3\.org/2001/04/xmlenc#sha256"


def _profile(ws: bytes, base64: bytes) -> re.Pattern[bytes]:
    """The profile's grammar with the given whitespace and base64 sub-patterns."""

    def leaf(name: bytes, algorithm: bytes) -> bytes:
        return b"<" + _P + name + b' Algorithm="' + algorithm + b'">' + ws + b"</" + _P + name + b">"

    return re.compile(
        b"<(?P<p>(?:[A-Za-z_][A-Za-z0-9_.-]*:)?)Signature"
        rb'(?P<decl>(?: xmlns(?::[A-Za-z_][A-Za-z0-9_.-]*)?="http://www\.w3\.org/2000/09/xmldsig#")?)>' + ws
        + b"(?P<signed_info><" + _P + b"SignedInfo>"
        + b"(?P<signed_info_inner>" + ws
        + leaf(b"CanonicalizationMethod", _EXC_C14N) + ws
        + leaf(b"SignatureMethod", _ECDSA_SHA256) + ws
        + b"<" + _P + b'Reference URI="">' + ws
        + b"<" + _P + b"Transforms>" + ws
        + leaf(b"Transform", _ENVELOPED) + ws
        + b"(?P<exclusive>" + leaf(b"Transform", _EXC_C14N) + ws + b")?"
        + b"</" + _P + b"Transforms>" + ws
        + leaf(b"DigestMethod", _SHA256) + ws
        + b"<" + _P + b"DigestValue>(?P<digest>" + base64 + b")</" + _P + b"DigestValue>" + ws
        + b"</" + _P + b"Reference>" + ws
        + b")</" + _P + b"SignedInfo>)" + ws
        + b"<" + _P + b"SignatureValue>(?P<value>" + base64 + b")</" + _P + b"SignatureValue>" + ws
        + b"<" + _P + b"KeyInfo>" + ws
        + b"<" + _P + b"X509Data>" + ws
        + b"<" + _P + b"X509IssuerSerial>" + ws
        + b"<" + _P + b"X509IssuerName>(?P<issuer>[^<]*)</" + _P + b"X509IssuerName>" + ws
        + b"<" + _P + b"X509SerialNumber>(?P<serial>" + ws + b"[0-9]{1,60}" + ws + b")</" + _P + b"X509SerialNumber>"
        + ws
        + b"</" + _P + b"X509IssuerSerial>" + ws
        + b"</" + _P + b"X509Data>" + ws
        + b"</" + _P + b"KeyInfo>" + ws
        + b"</" + _P + b"Signature>"
    )


_PROFILE = _profile(_WS, _BASE64)
_PROFILE_WITHOUT_REFERENCES = _profile(_PLAIN_WS, _PLAIN_BASE64)
"""The same language as :data:`_PROFILE` on runs without "&": the ``&#xD;`` alternatives cannot
match there. It is the common case (DUIS and signxml write no CR) and ~40% cheaper to match."""

_TEXT_ESCAPES = ((b"&#xD;", b"\r"), (b"&lt;", b"<"), (b"&gt;", b">"), (b"&amp;", b"&"))
_DS_DECLARATION_VALUE = b'="' + DS.encode() + b'"'


class CanonicalSignature(NamedTuple):
    """The profile's values, read from the canonical bytes; still unverified.

    A NamedTuple, immutable like a frozen dataclass but a third of the cost to build."""

    signed_content: bytes
    """The canonical document without the signature: what the reference digest covers."""
    signed_info: bytes
    """Exclusive C14N of SignedInfo: what the ECDSA signature covers."""
    exclusive_reference: bool
    digest_base64: bytes
    value_base64: bytes
    """Both with character references resolved; may hold whitespace, which base64 decoding drops."""
    issuer_text: str
    serial_text: str


class ProfileMismatch(Exception):
    """The signature's canonical bytes are not the profile's shape (the caller explains why)."""


def canonicalise(document: etree._ElementTree, *, exclusive: bool) -> bytes:
    """C14N of the document. libxml2 refuses relative namespace URIs (C14N 1.0 §2.1 leaves them
    undefined); that is the sender's error, so it becomes a 400, not an internal error."""
    try:
        return etree.tostring(document, method="c14n", exclusive=exclusive, with_comments=False)
    except etree.C14NError as exc:
        raise VerificationError(Check.NAMESPACE_URI, f"namespace URIs must be absolute ({exc})") from exc


def read_canonical_signature(canonical: bytes) -> CanonicalSignature:
    """Cuts the signature out of ``canonical`` and matches it against the profile.

    Precondition (:func:`gateway.verify.signature.find_signature` checks it on
    the tree): the document's one ds:Signature is the root's last child.
    """
    start, end = _signature_span(canonical)
    plain = canonical.find(b"&", start, end) < 0
    match = (_PROFILE_WITHOUT_REFERENCES if plain else _PROFILE).fullmatch(canonical, start, end)
    if match is None:
        raise ProfileMismatch()
    digest, value, issuer, serial, exclusive = match.group("digest", "value", "issuer", "serial", "exclusive")
    if not plain:
        digest, value, issuer, serial = _unescape(digest), _unescape(value), _unescape(issuer), _unescape(serial)
    return CanonicalSignature(
        canonical[:start] + canonical[end:],
        _standalone_signed_info(match),
        exclusive is not None,
        digest,
        value,
        issuer.decode("utf-8"),
        serial.decode("ascii"),
    )


def _signature_span(canonical: bytes) -> tuple[int, int]:
    """Where the signature's bytes start and end, found from the end of the canonical bytes.

    In C14N output every "<" opens a tag (text and attribute values escape it,
    and the parser refused comments, PIs and CDATA), and the output ends with
    the root's end tag. The signature is the root's last child, so only its
    tail text can lie between its end tag and the root's: the last end tag
    but one is the signature's, and names it (prefix included). Whatever else
    stood there could not match the profile, which ends with that end tag.
    """
    close = canonical.rfind(b"</", 0, canonical.rfind(b"</"))
    end = canonical.find(b">", close) + 1
    if close < 0 or end <= 0:
        raise ProfileMismatch()
    opening = b"<" + canonical[close + 2 : end - 1]
    after = len(opening)
    start = end
    while True:
        # The last such start tag before the end tag: a nested one, which the profile forbids, fails the match.
        start = canonical.rfind(opening, 0, start)
        if start < 0:
            raise ProfileMismatch()
        if canonical[start + after : start + after + 1] in (b" ", b">"):
            return start, end


def _standalone_signed_info(match: re.Match[bytes]) -> bytes:
    """Exclusive C14N of SignedInfo as its own apex: its prefix declared on it, nothing else.

    The profile shape admits no namespace declaration and no prefixed
    attribute inside SignedInfo, so exclusive C14N renders exactly one
    declaration (the visibly used prefix) on the apex and leaves every other
    byte as it is in the document's canonical form.
    """
    prefix, inner = match.group("p", "signed_info_inner")
    name = prefix + b"SignedInfo"
    declaration = b" xmlns:" + prefix[:-1] if prefix else b" xmlns"
    return b"".join((b"<", name, declaration, _DS_DECLARATION_VALUE, b">", inner, b"</", name, b">"))


def _unescape(raw: bytes) -> bytes:
    if b"&" not in raw:
        return raw
    for escaped, plain in _TEXT_ESCAPES:
        raw = raw.replace(escaped, plain)
    return raw
