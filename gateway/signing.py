"""Signs DUIS requests, responses and directives in the SPEC §4 profile (the DUIS form).

The gateway emits what DUIS and DCC Boxed emit: one ``enveloped-signature``
transform (so the reference digest is over inclusive C14N 1.0),
exc-c14n for SignedInfo, ecdsa-sha256 with raw r||s, and KeyInfo naming the
certificate by issuer and serial only.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from lxml import etree

from gateway.namespaces import DS
from gateway.parse import HardenedParser
from gateway.verify import signature as profile


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A private key and the certificate that names it in KeyInfo."""

    private_key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @classmethod
    def load(cls, key_path: Path, cert_path: Path) -> SigningKey:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_path}: not an EC private key")
        certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
        if certificate.public_key() != key.public_key():
            raise ValueError(f"{key_path} does not match the certificate {cert_path}")
        return cls(key, certificate)

    @property
    def issuer_name(self) -> str:
        return self.certificate.issuer.rfc4514_string()


def sign_tree(root: etree._Element, key: SigningKey) -> etree._Element:
    """Replaces any ds:Signature on the root by a fresh one over the rest; returns the root.
    (A signer of many documents uses :class:`EnvelopedSigner`, which writes the same bytes.)"""
    for old in root.findall(profile.SIGNATURE):
        detach_signature(root, old)
    digest = hashlib.sha256(etree.tostring(root.getroottree(), method="c14n", exclusive=False, with_comments=False))
    signature = _signature_element(root, digest.digest(), key)
    signed_info = signature[0]
    canonical = etree.tostring(signed_info, method="c14n", exclusive=True, with_comments=False)
    der = key.private_key.sign(canonical, ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    value = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    signature[1].text = base64.b64encode(value).decode("ascii")  # SignatureValue
    return root


class EnvelopedSigner:
    """:func:`sign_tree` then :func:`to_bytes`, for a signer of many documents: the same bytes,
    for less. The key's ds:Signature differs between documents only in its DigestValue and
    SignatureValue, so its serialisation and its SignedInfo's exc-c14n form are computed once
    here, with holes for the two values; signing a document is then one c14n of it, one ECDSA
    signature, one serialisation of it and the signature's bytes spliced in before its end tag
    (where :func:`sign_tree` appends the element). Stateless after construction: any thread."""

    _DIGEST_HOLE = "D" * 44
    """A SHA-256 digest in base64 is 44 characters; the holes are text no escaping changes."""
    _VALUE_HOLE = "S" * 88
    """An ECDSA P-256 r||s in base64 is 88 characters."""

    def __init__(self, key: SigningKey) -> None:
        self._key = key
        signature = signature_template(key)
        signature[0][2][2].text = self._DIGEST_HOLE  # SignedInfo/Reference/DigestValue
        signature[1].text = self._VALUE_HOLE  # SignatureValue
        canonical = etree.tostring(signature[0], method="c14n", exclusive=True, with_comments=False)
        self._signed_info = canonical.split(self._DIGEST_HOLE.encode())
        serialised = etree.tostring(signature, encoding="UTF-8")
        head, rest = serialised.split(self._DIGEST_HOLE.encode())
        middle, tail = rest.split(self._VALUE_HOLE.encode())
        self._element = (head, middle, tail)
        if len(self._signed_info) != 2:
            raise ValueError("the signature template's SignedInfo does not hold its digest once")

    def sign(self, root: etree._Element) -> bytes:
        """``root``'s document signed and serialised (:func:`to_bytes`), ``root`` left as it was. A
        root that carries a ds:Signature already, or no child to end before, is signed by
        :func:`sign_tree` instead (which changes it); the gateway's own documents never are."""
        if root.find(profile.SIGNATURE) is not None or len(root) == 0:
            return to_bytes(sign_tree(root, self._key))
        canonical = etree.tostring(root.getroottree(), method="c14n", exclusive=False, with_comments=False)
        digest = base64.b64encode(hashlib.sha256(canonical).digest())
        signed_info = digest.join(self._signed_info)
        r, s = decode_dss_signature(self._key.private_key.sign(signed_info, ec.ECDSA(hashes.SHA256())))
        value = base64.b64encode(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
        document = to_bytes(root)
        end_tag = document.rindex(b"</")
        head, middle, tail = self._element
        return b"".join((document[:end_tag], head, digest, middle, value, tail, document[end_tag:]))


def signature_template(key: SigningKey) -> etree._Element:
    """The ds:Signature :func:`sign_tree` adds for ``key``, with its digest and signature values empty."""
    return _signature_element(etree.Element("template"), b"", key)


def sign_bytes(data: bytes, key: SigningKey, *, parser: HardenedParser | None = None) -> bytes:
    """Signs a serialised document; comments (e.g. template notes) are dropped first.

    The input is parsed by the hardened parser, except that comments are
    allowed: DUIS templates carry a note inside their placeholder signature.
    """
    safe = parser or HardenedParser()
    root = _parse_for_signing(data, safe)
    return to_bytes(sign_tree(root, key))


def detach_signature(root: etree._Element, signature: etree._Element) -> None:
    """Removes a signature element but keeps the text after it, as the enveloped transform does.

    lxml stores the text that follows an element as that element's tail, so a
    plain remove() would also drop whitespace that is part of the signed content.
    """
    tail = signature.tail
    previous = signature.getprevious()
    root.remove(signature)
    if tail:
        if previous is not None:
            previous.tail = (previous.tail or "") + tail
        else:
            root.text = (root.text or "") + tail


def to_bytes(root: etree._Element) -> bytes:
    return etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8")


def _parse_for_signing(data: bytes, parser: HardenedParser) -> etree._Element:
    root = etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, remove_comments=True))
    return parser.parse(to_bytes(root)).getroot()


def _signature_element(root: etree._Element, digest: bytes, key: SigningKey) -> etree._Element:
    ds = f"{{{DS}}}"
    signature = etree.SubElement(root, ds + "Signature", nsmap={"ds": DS})
    signed_info = etree.SubElement(signature, ds + "SignedInfo")
    etree.SubElement(signed_info, ds + "CanonicalizationMethod", Algorithm=profile.EXC_C14N)
    etree.SubElement(signed_info, ds + "SignatureMethod", Algorithm=profile.ECDSA_SHA256)
    reference = etree.SubElement(signed_info, ds + "Reference", URI="")
    transforms = etree.SubElement(reference, ds + "Transforms")
    etree.SubElement(transforms, ds + "Transform", Algorithm=profile.ENVELOPED)
    etree.SubElement(reference, ds + "DigestMethod", Algorithm=profile.SHA256)
    etree.SubElement(reference, ds + "DigestValue").text = base64.b64encode(digest).decode("ascii")
    etree.SubElement(signature, ds + "SignatureValue")
    key_info = etree.SubElement(signature, ds + "KeyInfo")
    x509_data = etree.SubElement(key_info, ds + "X509Data")
    issuer_serial = etree.SubElement(x509_data, ds + "X509IssuerSerial")
    etree.SubElement(issuer_serial, ds + "X509IssuerName").text = key.issuer_name
    etree.SubElement(issuer_serial, ds + "X509SerialNumber").text = str(key.certificate.serial_number)
    return signature
