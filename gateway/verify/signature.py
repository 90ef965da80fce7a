"""The DUIS XMLDSig profile (SPEC §4): a strict structural check, then the cryptography.

Only one shape is accepted, element by element and attribute by attribute::

    <ds:Signature>                                   last child of the root, the only one
      <ds:SignedInfo>
        <ds:CanonicalizationMethod Algorithm=exc-c14n/>
        <ds:SignatureMethod Algorithm=ecdsa-sha256/>
        <ds:Reference URI="">
          <ds:Transforms>enveloped-signature [, exc-c14n]</ds:Transforms>
          <ds:DigestMethod Algorithm=sha256/>
          <ds:DigestValue>base64 of 32 bytes</ds:DigestValue>
        </ds:Reference>
      </ds:SignedInfo>
      <ds:SignatureValue>base64 of r||s, 64 bytes</ds:SignatureValue>
      <ds:KeyInfo><ds:X509Data><ds:X509IssuerSerial>
        <ds:X509IssuerName/><ds:X509SerialNumber/>
      </ds:X509IssuerSerial></ds:X509Data></ds:KeyInfo>
    </ds:Signature>

With only ``enveloped-signature`` listed, XMLDSig canonicalises the reference
with *inclusive* C14N 1.0 (as DUIS and DCC Boxed do); with the explicit
exc-c14n transform (as signxml writes), exclusive C14N. The signature covers
the whole document but not itself, so nothing may hide inside it: no Object,
no extra children, no attributes, no text.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import re
from collections.abc import Callable
from typing import NamedTuple, NoReturn

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree

from gateway.checks import Check, VerificationError
from gateway.namespaces import DS, qname
from gateway.smki.names import NameKey
from gateway.verify.canonical import CanonicalSignature

EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
ECDSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"

SIGNATURE = qname(DS, "Signature")
SIGNED_INFO = qname(DS, "SignedInfo")
C14N_METHOD = qname(DS, "CanonicalizationMethod")
SIGNATURE_METHOD = qname(DS, "SignatureMethod")
REFERENCE = qname(DS, "Reference")
TRANSFORMS = qname(DS, "Transforms")
TRANSFORM = qname(DS, "Transform")
DIGEST_METHOD = qname(DS, "DigestMethod")
DIGEST_VALUE = qname(DS, "DigestValue")
SIGNATURE_VALUE = qname(DS, "SignatureValue")
KEY_INFO = qname(DS, "KeyInfo")
X509_DATA = qname(DS, "X509Data")
X509_ISSUER_SERIAL = qname(DS, "X509IssuerSerial")
X509_ISSUER_NAME = qname(DS, "X509IssuerName")
X509_SERIAL_NUMBER = qname(DS, "X509SerialNumber")
OBJECT = qname(DS, "Object")

# The group order n of P-256: r and s must lie in [1, n-1].
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_BASE64_WHITESPACE = b" \t\r\n"
_P256_ORDER_BYTES = P256_ORDER.to_bytes(32, "big")
_ZERO = bytes(32)
_SERIAL = re.compile(r"\A[0-9]{1,60}\Z")
_ECDSA = ec.ECDSA(hashes.SHA256())


class SignatureParts(NamedTuple):
    """What the profile check read from ds:Signature; bytes still unverified (immutable, cheap to build)."""

    signed_info_c14n: bytes
    reference_exclusive: bool
    digest: bytes
    signature_der: bytes
    """r and s (each checked to lie in [1, n-1]) as the DER ECDSA-Sig-Value that OpenSSL verifies."""
    issuer: NameKey
    serial: int


def find_signature(root: etree._Element) -> etree._Element:
    """The one ds:Signature, which must be the root's last child."""
    signatures = list(root.iter(SIGNATURE))
    if not signatures:
        raise VerificationError(Check.SIGNATURE_MISSING, "the document carries no ds:Signature")
    if len(signatures) > 1:
        raise VerificationError(
            Check.SIGNATURE_DUPLICATE, f"{len(signatures)} ds:Signature elements; exactly one is allowed"
        )
    signature = signatures[0]
    if signature.getparent() is not root or root[-1] is not signature:
        raise VerificationError(Check.SIGNATURE_POSITION, "ds:Signature must be the last child of the root")
    return signature


def explain(signature: etree._Element) -> NoReturn:
    """Names the rule a signature breaks; called only when the canonical fast path refused it.

    Walks the tree element by element (slow, but only on rejection). If the
    walk finds every element in place, what is left is what the canonical
    shape forbids and the tree hides: namespace declarations inside the
    signature, or foreign ones on it.
    """
    _no_attributes_or_text(signature, "ds:Signature")
    signed_info, signature_value, key_info = _signature_children(signature)
    _read_signed_info(signed_info)
    _read_signature_value((signature_value.text or "").encode())
    _read_key_info(key_info)
    raise VerificationError(
        Check.SIGNATURE_STRUCTURE,
        "ds:Signature does not have the profile's exact form (namespace declarations inside it, "
        "or of namespaces other than xmldsig on it, are not accepted)",
    )


def read_parts(found: CanonicalSignature, issuer_names: Callable[[str], NameKey] = NameKey.parse) -> SignatureParts:
    """Decodes and range-checks the values the canonical fast path extracted."""
    digest = _decode_base64(found.digest_base64, 32, Check.DIGEST_VALUE, "DigestValue")
    signature_der = _read_signature_value(found.value_base64)
    issuer, serial = _issuer_serial(found.issuer_text, found.serial_text, issuer_names)
    return SignatureParts(found.signed_info, found.exclusive_reference, digest, signature_der, issuer, serial)


def check_digest(expected: bytes, signed_content: bytes) -> None:
    if not hmac.compare_digest(expected, hashlib.sha256(signed_content).digest()):
        raise VerificationError(Check.DIGEST_MISMATCH, "the signed content was changed (reference digest differs)")


def check_ecdsa(parts: SignatureParts, public_key: ec.EllipticCurvePublicKey) -> None:
    try:
        public_key.verify(parts.signature_der, parts.signed_info_c14n, _ECDSA)
    except InvalidSignature as exc:
        raise VerificationError(Check.SIGNATURE_INVALID, "ECDSA signature does not verify with the certificate's key") from exc


# --- the structural walk ------------------------------------------------------


def _signature_children(signature: etree._Element) -> tuple[etree._Element, etree._Element, etree._Element]:
    children = _element_children(signature, "ds:Signature")
    tags = [child.tag for child in children]
    if OBJECT in tags:
        raise VerificationError(Check.SIGNATURE_OBJECT, "ds:Object is not allowed: its content would be unsigned")
    if tags[:2] != [SIGNED_INFO, SIGNATURE_VALUE]:
        raise VerificationError(
            Check.SIGNATURE_STRUCTURE, "ds:Signature must hold SignedInfo, SignatureValue, KeyInfo in that order"
        )
    if len(tags) == 2:
        raise VerificationError(Check.KEY_INFO, "ds:KeyInfo with X509IssuerSerial is required")
    if tags[2:] != [KEY_INFO]:
        raise VerificationError(
            Check.SIGNATURE_STRUCTURE, f"unexpected element in ds:Signature: {_local(children[3 if tags[2] == KEY_INFO else 2])}"
        )
    return children[0], children[1], children[2]


def _read_signed_info(signed_info: etree._Element) -> tuple[bool, bytes]:
    _no_attributes_or_text(signed_info, "ds:SignedInfo")
    children = _element_children(signed_info, "ds:SignedInfo")
    tags = [child.tag for child in children]
    if tags.count(REFERENCE) != 1:
        raise VerificationError(Check.REFERENCE, f"exactly one ds:Reference is allowed, found {tags.count(REFERENCE)}")
    if tags != [C14N_METHOD, SIGNATURE_METHOD, REFERENCE]:
        raise VerificationError(
            Check.SIGNATURE_STRUCTURE,
            "ds:SignedInfo must hold CanonicalizationMethod, SignatureMethod, Reference in that order",
        )
    method, signature_method, reference = children
    _algorithm(method, EXC_C14N, Check.C14N_ALGORITHM, "CanonicalizationMethod")
    _algorithm(signature_method, ECDSA_SHA256, Check.SIGNATURE_ALGORITHM, "SignatureMethod")
    return _read_reference(reference)


def _read_reference(reference: etree._Element) -> tuple[bool, bytes]:
    if dict(reference.attrib) != {"URI": ""}:
        raise VerificationError(
            Check.REFERENCE, 'ds:Reference must carry exactly URI="" (the whole document), nothing else'
        )
    _no_text(reference, "ds:Reference")
    children = _element_children(reference, "ds:Reference")
    if [child.tag for child in children] != [TRANSFORMS, DIGEST_METHOD, DIGEST_VALUE]:
        raise VerificationError(
            Check.TRANSFORMS if TRANSFORMS not in [c.tag for c in children] else Check.SIGNATURE_STRUCTURE,
            "ds:Reference must hold Transforms, DigestMethod, DigestValue in that order",
        )
    transforms, digest_method, digest_value = children
    exclusive = _read_transforms(transforms)
    _algorithm(digest_method, SHA256, Check.DIGEST_ALGORITHM, "DigestMethod")
    if digest_value.attrib or len(digest_value):
        raise VerificationError(Check.DIGEST_VALUE, "ds:DigestValue must be a bare text element")
    digest = _decode_base64((digest_value.text or "").encode(), 32, Check.DIGEST_VALUE, "DigestValue")
    return exclusive, digest


def _read_transforms(transforms: etree._Element) -> bool:
    """True for [enveloped, exc-c14n]; False for [enveloped] (inclusive C14N 1.0)."""
    _no_attributes_or_text(transforms, "ds:Transforms")
    children = _element_children(transforms, "ds:Transforms")
    algorithms = []
    for transform in children:
        if transform.tag != TRANSFORM or set(transform.attrib) != {"Algorithm"} or len(transform):
            raise VerificationError(Check.TRANSFORMS, "each ds:Transform must be a bare Algorithm reference")
        _no_text(transform, "ds:Transform")
        algorithms.append(transform.get("Algorithm"))
    if algorithms == [ENVELOPED]:
        return False
    if algorithms == [ENVELOPED, EXC_C14N]:
        return True
    raise VerificationError(
        Check.TRANSFORMS, f"transforms must be enveloped-signature [+ exc-c14n], got {algorithms}"
    )


def _read_signature_value(text: bytes) -> bytes:
    """The DER form of the XMLDSig r||s value, after the range check on r and s."""
    raw = _decode_base64(text, 64, Check.SIGNATURE_VALUE, "SignatureValue")
    r, s = raw[:32], raw[32:]
    # Equal-length big-endian byte strings compare as the integers they encode.
    if not (_ZERO < r < _P256_ORDER_BYTES and _ZERO < s < _P256_ORDER_BYTES):
        raise VerificationError(Check.SIGNATURE_VALUE, "ECDSA r and s must lie in [1, n-1]")
    return der_signature(r, s)


def der_signature(r: bytes, s: bytes) -> bytes:
    """ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER } in DER, for r and s in [1, n-1].

    Each INTEGER is minimal (no leading zero bytes) and positive (a zero byte
    when the top bit is set), so at most 33 bytes and every length fits in one
    byte. These are the bytes cryptography's encode_dss_signature writes, at a
    fraction of its cost; OpenSSL parses them strictly, so a wrong encoding
    could only make a good signature fail.
    """
    r = r.lstrip(b"\x00")
    s = s.lstrip(b"\x00")
    if r[0] & 0x80:
        r = b"\x00" + r
    if s[0] & 0x80:
        s = b"\x00" + s
    return bytes((0x30, 4 + len(r) + len(s), 0x02, len(r))) + r + bytes((0x02, len(s))) + s


def _read_key_info(key_info: etree._Element) -> None:
    x509_data = _only_child(key_info, X509_DATA, "ds:KeyInfo must hold exactly one ds:X509Data")
    issuer_serial = _only_child(
        x509_data, X509_ISSUER_SERIAL, "ds:X509Data must hold exactly one ds:X509IssuerSerial (no certificates)"
    )
    _no_attributes_or_text(issuer_serial, "ds:X509IssuerSerial")
    children = _element_children(issuer_serial, "ds:X509IssuerSerial")
    if [child.tag for child in children] != [X509_ISSUER_NAME, X509_SERIAL_NUMBER]:
        raise VerificationError(Check.KEY_INFO, "ds:X509IssuerSerial must hold X509IssuerName, X509SerialNumber")
    for child in children:
        if child.attrib or len(child):
            raise VerificationError(Check.KEY_INFO, "X509IssuerName and X509SerialNumber must be bare text")
    _issuer_serial(children[0].text or "", children[1].text or "", NameKey.parse)


def _issuer_serial(issuer_text: str, serial_text: str, issuer_names: Callable[[str], NameKey]) -> tuple[NameKey, int]:
    try:
        issuer = issuer_names(issuer_text)
    except ValueError as exc:
        raise VerificationError(Check.KEY_INFO, f"X509IssuerName: {exc}") from exc
    serial = serial_text.strip()
    if not _SERIAL.match(serial):
        raise VerificationError(Check.KEY_INFO, "X509SerialNumber must be a non-negative decimal integer")
    return issuer, int(serial)


def _only_child(parent: etree._Element, tag: str, message: str) -> etree._Element:
    if parent.attrib:
        raise VerificationError(Check.KEY_INFO, f"ds:{_local(parent)} takes no attributes")
    if parent.text and parent.text.strip():
        raise VerificationError(Check.KEY_INFO, message)
    children = list(parent)
    if len(children) != 1 or children[0].tag != tag or _has_text_tails(children):
        raise VerificationError(Check.KEY_INFO, message)
    return children[0]


# --- small helpers --------------------------------------------------------------


def _algorithm(element: etree._Element, expected: str, check: Check, name: str) -> None:
    if set(element.attrib) != {"Algorithm"} or len(element) or (element.text and element.text.strip()):
        raise VerificationError(check, f"ds:{name} must carry only an Algorithm attribute")
    algorithm = element.get("Algorithm")
    if algorithm != expected:
        raise VerificationError(check, f"ds:{name} {algorithm!r} is not allowed; only {expected!r}")


def _decode_base64(text: bytes, length: int, check: Check, name: str) -> bytes:
    # What base64.b64decode(..., validate=True) does after its argument checks, minus their cost.
    try:
        raw = binascii.a2b_base64(text.translate(None, _BASE64_WHITESPACE), strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise VerificationError(check, f"ds:{name} is not valid base64") from exc
    if len(raw) != length:
        raise VerificationError(check, f"ds:{name} must decode to {length} bytes, got {len(raw)}")
    return raw


def _element_children(parent: etree._Element, name: str) -> list[etree._Element]:
    children = list(parent)
    if _has_text_tails(children):
        raise VerificationError(Check.SIGNATURE_STRUCTURE, f"text is not allowed between the children of {name}")
    return children


def _has_text_tails(children: list[etree._Element]) -> bool:
    return any(child.tail and child.tail.strip() for child in children)


def _no_attributes_or_text(element: etree._Element, name: str) -> None:
    if element.attrib:
        raise VerificationError(Check.SIGNATURE_STRUCTURE, f"{name} takes no attributes")
    _no_text(element, name)


def _no_text(element: etree._Element, name: str) -> None:
    if element.text and element.text.strip():
        raise VerificationError(Check.SIGNATURE_STRUCTURE, f"text is not allowed in {name}")


def _local(element: etree._Element) -> str:
    return etree.QName(element).localname
