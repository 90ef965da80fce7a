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
from dataclasses import dataclass

from lxml import etree

from gateway.checks import Check, VerificationError
from gateway.namespaces import DS

# Unrolled loops ("a*(?:b a*)*") rather than alternations: same language, far fewer backtracking steps.
_WS = rb"[ \t\n]*(?:&#xD;[ \t\n]*)*"
_BASE64 = rb"[A-Za-z0-9+/= \t\n]*(?:&#xD;[A-Za-z0-9+/= \t\n]*)*"
_P = rb"(?P=p)"

# Algorithm URIs of the profile (mirrored in gateway.verify.signature).
_EXC_C14N = rb"http://www\.w3\.org/2001/10/xml-exc-c14n#"
_ENVELOPED = rb"http://www\.w3\.org/2000/09/xmldsig#enveloped-signature"
_ECDSA_SHA256 = rb"http://www\.w3\.org/2001/04/xmldsig-more#ecdsa-sha256"
_SHA256 = rb"http://www\.w3\.org/2001/04/xmlenc#sha256"


def _leaf(name: bytes, algorithm: bytes) -> bytes:
    return b"<" + _P + name + b' Algorithm="' + algorithm + b'">' + _WS + b"</" + _P + name + b">"


_PROFILE = re.compile(
    b"<(?P<p>(?:[A-Za-z_][A-Za-z0-9_.-]*:)?)Signature"
    rb'(?P<decl>(?: xmlns(?::[A-Za-z_][A-Za-z0-9_.-]*)?="http://www\.w3\.org/2000/09/xmldsig#")?)>' + _WS
    + b"(?P<signed_info><" + _P + b"SignedInfo>"
    + b"(?P<signed_info_inner>" + _WS
    + _leaf(b"CanonicalizationMethod", _EXC_C14N) + _WS
    + _leaf(b"SignatureMethod", _ECDSA_SHA256) + _WS
    + b"<" + _P + b'Reference URI="">' + _WS
    + b"<" + _P + b"Transforms>" + _WS
    + _leaf(b"Transform", _ENVELOPED) + _WS
    + b"(?P<exclusive>" + _leaf(b"Transform", _EXC_C14N) + _WS + b")?"
    + b"</" + _P + b"Transforms>" + _WS
    + _leaf(b"DigestMethod", _SHA256) + _WS
    + b"<" + _P + b"DigestValue>(?P<digest>" + _BASE64 + b")</" + _P + b"DigestValue>" + _WS
    + b"</" + _P + b"Reference>" + _WS
    + b")</" + _P + b"SignedInfo>)" + _WS
    + b"<" + _P + b"SignatureValue>(?P<value>" + _BASE64 + b")</" + _P + b"SignatureValue>" + _WS
    + b"<" + _P + b"KeyInfo>" + _WS
    + b"<" + _P + b"X509Data>" + _WS
    + b"<" + _P + b"X509IssuerSerial>" + _WS
    + b"<" + _P + b"X509IssuerName>(?P<issuer>[^<]*)</" + _P + b"X509IssuerName>" + _WS
    + b"<" + _P + b"X509SerialNumber>(?P<serial>" + _WS + b"[0-9]{1,60}" + _WS + b")</" + _P + b"X509SerialNumber>"
    + _WS
    + b"</" + _P + b"X509IssuerSerial>" + _WS
    + b"</" + _P + b"X509Data>" + _WS
    + b"</" + _P + b"KeyInfo>" + _WS
    + b"</" + _P + b"Signature>"
)

_TEXT_ESCAPES = ((b"&#xD;", b"\r"), (b"&lt;", b"<"), (b"&gt;", b">"), (b"&amp;", b"&"))


@dataclass(frozen=True, slots=True)
class CanonicalSignature:
    """The profile's values, read from the canonical bytes; still unverified."""

    signed_content: bytes
    """The canonical document without the signature: what the reference digest covers."""
    signed_info: bytes
    """Exclusive C14N of SignedInfo: what the ECDSA signature covers."""
    exclusive_reference: bool
    digest_text: str
    value_text: str
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


def read_canonical_signature(canonical: bytes, root: etree._Element, signature: etree._Element) -> CanonicalSignature:
    """Cuts the signature out of ``canonical`` and matches it against the profile."""
    start, end = _signature_span(canonical, root, signature)
    match = _PROFILE.fullmatch(canonical, start, end)
    if match is None:
        raise ProfileMismatch()
    return CanonicalSignature(
        signed_content=canonical[:start] + canonical[end:],
        signed_info=_standalone_signed_info(match),
        exclusive_reference=match.group("exclusive") is not None,
        digest_text=_unescape(match.group("digest")),
        value_text=_unescape(match.group("value")),
        issuer_text=_unescape(match.group("issuer")),
        serial_text=_unescape(match.group("serial")),
    )


def _signature_span(canonical: bytes, root: etree._Element, signature: etree._Element) -> tuple[int, int]:
    """Where the signature's bytes start and end: pinned by the root's end tag and the tail."""
    root_end = b"</" + _qualified(root) + b">"
    tail = _escape_text(signature.tail) if signature.tail else b""
    suffix = tail + root_end
    if not canonical.endswith(suffix):
        raise VerificationError(Check.SIGNATURE_POSITION, "ds:Signature must be the last child of the root")
    end = len(canonical) - len(suffix)
    opening = b"<" + _qualified(signature)
    start = end
    while True:
        start = canonical.rfind(opening, 0, start)
        if start < 0:
            raise ProfileMismatch()
        if canonical[start + len(opening) : start + len(opening) + 1] in (b" ", b">"):
            return start, end


def _standalone_signed_info(match: re.Match[bytes]) -> bytes:
    """Exclusive C14N of SignedInfo as its own apex: its prefix declared on it, nothing else.

    The profile shape admits no namespace declaration and no prefixed
    attribute inside SignedInfo, so exclusive C14N renders exactly one
    declaration (the visibly used prefix) on the apex and leaves every other
    byte as it is in the document's canonical form.
    """
    prefix = match.group("p")
    name = prefix + b"SignedInfo"
    declaration = b' xmlns:' + prefix[:-1] if prefix else b" xmlns"
    declaration += b'="' + DS.encode() + b'"'
    return b"<" + name + declaration + b">" + match.group("signed_info_inner") + b"</" + name + b">"


def _qualified(element: etree._Element) -> bytes:
    local = element.tag.rpartition("}")[2]
    return (f"{element.prefix}:{local}" if element.prefix else local).encode()


def _escape_text(text: str) -> bytes:
    """C14N text escaping (XML-C14N §2.3: &, <, >, and CR as &#xD;)."""
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#xD;").encode("utf-8")
    )


def _unescape(raw: bytes) -> str:
    if b"&" not in raw:
        return raw.decode("utf-8")
    for escaped, plain in _TEXT_ESCAPES:
        raw = raw.replace(escaped, plain)
    return raw.decode("utf-8")
