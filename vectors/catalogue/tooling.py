"""Test-vector tooling: builds signed DUIS requests and then breaks them on purpose.

Never used by the gateway itself. The gateway's own signer is
:func:`gateway.signing.sign_tree` (the DUIS form only); this module adds what
vectors need and a production signer must not offer:

* the signxml form (``enveloped-signature`` + an explicit exc-c14n transform,
  reference digested with *exclusive* C14N);
* other ``ds`` prefixes (``dsig:``, the default namespace), free-text
  X509IssuerName, base64 broken into CR LF lines as DCC Boxed emits it;
* deterministic ECDSA (RFC 6979), so the same context always yields the same
  bytes and a generated vector file can be diffed and hashed;
* :func:`resign` / :func:`redigest`, to re-sign SignedInfo or recompute the
  reference digest after a mutation, so a profile vector proves that the
  *profile* refuses it, not a broken signature.
"""

from __future__ import annotations

import base64
import copy
import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from lxml import etree

from gateway import duis_request
from gateway.duis_request import payment_mode_element
from gateway.eui64 import Eui64
from gateway.namespaces import DS, SR
from gateway.signing import detach_signature
from pki import IssuedCertificate

# The profile's algorithms (SPEC §4), written out here rather than imported from the
# verifier, so the generator and the checker cannot share a mistake.
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
ECDSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551

_DETERMINISTIC_ECDSA = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)
BASE64_LINE = 76
"""Line length of wrapped base64 (RFC 2045), as DCC Boxed writes SignatureValue."""


@dataclass(frozen=True, slots=True)
class RequestFields:
    """The header and body values of a DUIS SR 1.6 request (what a signer signs)."""

    originator: Eui64
    target: Eui64
    counter: int = 1000
    command_variant: int = 1
    service_reference: str = "1.6"
    service_reference_variant: str = "1.6"
    first_in_sequence: bool | None = None
    preceding_request_id: str | None = None
    payment_mode: str = "Credit"
    """``Credit`` or ``Prepayment`` (with fixed settings)."""

    @property
    def request_id(self) -> str:
        return f"{self.originator}:{self.target}:{self.counter}"


@dataclass(frozen=True, slots=True)
class SignatureStyle:
    """How :func:`sign` writes ds:Signature. The default is the DUIS form."""

    exclusive: bool = False
    """Add the exc-c14n transform and digest with exclusive C14N (the signxml form)."""
    ds_prefix: str | None = "ds"
    """Prefix for the XMLDSig namespace; None writes it as the default namespace."""
    issuer_name: str | None = None
    """X509IssuerName text; None writes the certificate issuer's RFC 4514 string."""
    wrap_base64: bool = False
    """Break base64 values into 76-character lines (DCC Boxed writes ``&#13;`` then a newline or a space)."""
    base64_line_end: str = "\r\n"


DUIS_FORM = SignatureStyle()
SIGNXML_FORM = SignatureStyle(exclusive=True)


def ds(local: str) -> str:
    return f"{{{DS}}}{local}"


def sr(local: str) -> str:
    return f"{{{SR}}}{local}"


# --- unsigned requests ----------------------------------------------------------


def request_tree(
    fields: RequestFields, *, sr_prefix: str | None = "sr", root_ds_prefix: str | None = "ds"
) -> etree._Element:
    """An unsigned request; ``sr_prefix=None`` makes sr the default namespace.

    ``root_ds_prefix`` binds the XMLDSig namespace on the root (DUIS templates use
    ``ds``, DCC Boxed ``ns3``); None leaves it to the signature.
    """
    return duis_request.request_tree(
        originator=fields.originator,
        target=fields.target,
        counter=fields.counter,
        command_variant=fields.command_variant,
        service_reference=fields.service_reference,
        service_reference_variant=fields.service_reference_variant,
        first_in_sequence=fields.first_in_sequence,
        preceding_request_id=fields.preceding_request_id,
        body=payment_mode_element(fields.payment_mode),
        sr_prefix=sr_prefix,
        root_ds_prefix=root_ds_prefix,
    )


# --- signing ----------------------------------------------------------------------


def sign(root: etree._Element, key: IssuedCertificate, style: SignatureStyle = DUIS_FORM) -> etree._Element:
    """Appends a fresh ds:Signature over the whole document (enveloped); returns the root."""
    for old in root.findall(ds("Signature")):
        detach_signature(root, old)
    digest = _document_digest(root, exclusive=style.exclusive)
    signature = _signature_skeleton(root, style)
    signed_info = signature[0]
    reference = signed_info[2]
    reference[2].text = encode_base64(digest, wrap=style.wrap_base64, line_end=style.base64_line_end)
    key_info = signature[2]
    issuer_serial = key_info[0][0]
    issuer_serial[0].text = style.issuer_name or key.certificate.issuer.rfc4514_string()
    issuer_serial[1].text = str(key.certificate.serial_number)
    resign(signature, key, wrap=style.wrap_base64, line_end=style.base64_line_end)
    return root


def resign(signature: etree._Element, key: IssuedCertificate, *, wrap: bool = False, line_end: str = "\r\n") -> None:
    """Recomputes SignatureValue over the signature's (possibly mutated) SignedInfo."""
    signed_info = signature.find(ds("SignedInfo"))
    value = signature.find(ds("SignatureValue"))
    if signed_info is None or value is None:
        raise ValueError("resign needs ds:SignedInfo and ds:SignatureValue")
    value.text = encode_base64(raw_signature(key, canonical_signed_info(signed_info)), wrap=wrap, line_end=line_end)


def redigest(root: etree._Element, signature: etree._Element, *, exclusive: bool = False) -> bytes:
    """Writes the digest of the document without ``signature`` into its DigestValue; returns it."""
    digest = digest_without(root, signature, exclusive=exclusive)
    digest_value = signature.find(f"{ds('SignedInfo')}/{ds('Reference')}/{ds('DigestValue')}")
    if digest_value is None:
        raise ValueError("redigest needs ds:SignedInfo/ds:Reference/ds:DigestValue")
    digest_value.text = encode_base64(digest)
    return digest


def digest_without(
    root: etree._Element, signature: etree._Element, *, exclusive: bool, algorithm: str = "sha256"
) -> bytes:
    """The digest of the canonical document with ``signature`` removed (enveloped-signature)."""
    clone = copy.deepcopy(root)
    twin = _follow(clone, _path_from(root, signature))
    parent = twin.getparent()
    if parent is None:
        raise ValueError("the signature must not be the root")
    detach_signature(parent, twin)
    return _document_digest(clone, exclusive=exclusive, algorithm=algorithm)


def canonical_signed_info(signed_info: etree._Element) -> bytes:
    return etree.tostring(signed_info, method="c14n", exclusive=True, with_comments=False)


def raw_signature(key: IssuedCertificate, data: bytes) -> bytes:
    """Deterministic ECDSA P-256/SHA-256 as r||s (32 bytes each)."""
    r, s = decode_dss_signature(key.private_key.sign(data, _DETERMINISTIC_ECDSA))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def encode_base64(raw: bytes, *, wrap: bool = False, line_end: str = "\r\n") -> str:
    text = base64.b64encode(raw).decode("ascii")
    if not wrap:
        return text
    lines = [text[i : i + BASE64_LINE] for i in range(0, len(text), BASE64_LINE)]
    return line_end.join(lines) + line_end


def to_bytes(root: etree._Element) -> bytes:
    """UTF-8 with an XML declaration, as :func:`gateway.signing.to_bytes` writes it."""
    return etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8")


# --- finding parts of a signed request ------------------------------------------


def the_signature(root: etree._Element) -> etree._Element:
    """The root's last child, which a freshly signed request has as its ds:Signature."""
    signature = root[-1]
    if signature.tag != ds("Signature"):
        raise ValueError("the root's last child is not ds:Signature")
    return signature


def signature_part(root: etree._Element, path: str) -> etree._Element:
    """An element under the signature by ds local names, e.g. ``SignedInfo/Reference``."""
    element = the_signature(root)
    for local in path.split("/"):
        found = element.find(f"{{{DS}}}{local}")
        if found is None:
            raise ValueError(f"no ds:{local} under {etree.QName(element).localname}")
        element = found
    return element


def header_field(root: etree._Element, local: str) -> etree._Element:
    found = root.find(f"{sr('Header')}/{sr(local)}")
    if found is None:
        raise ValueError(f"no sr:{local} in sr:Header")
    return found


# --- internals ------------------------------------------------------------------


def _document_digest(root: etree._Element, *, exclusive: bool, algorithm: str = "sha256") -> bytes:
    canonical = etree.tostring(root.getroottree(), method="c14n", exclusive=exclusive, with_comments=False)
    return hashlib.new(algorithm, canonical).digest()


def _signature_skeleton(root: etree._Element, style: SignatureStyle) -> etree._Element:
    signature = etree.SubElement(root, ds("Signature"), nsmap={style.ds_prefix: DS})
    signed_info = etree.SubElement(signature, ds("SignedInfo"))
    etree.SubElement(signed_info, ds("CanonicalizationMethod"), Algorithm=EXC_C14N)
    etree.SubElement(signed_info, ds("SignatureMethod"), Algorithm=ECDSA_SHA256)
    reference = etree.SubElement(signed_info, ds("Reference"), URI="")
    transforms = etree.SubElement(reference, ds("Transforms"))
    etree.SubElement(transforms, ds("Transform"), Algorithm=ENVELOPED)
    if style.exclusive:
        etree.SubElement(transforms, ds("Transform"), Algorithm=EXC_C14N)
    etree.SubElement(reference, ds("DigestMethod"), Algorithm=SHA256)
    etree.SubElement(reference, ds("DigestValue"))
    etree.SubElement(signature, ds("SignatureValue"))
    key_info = etree.SubElement(signature, ds("KeyInfo"))
    x509_data = etree.SubElement(key_info, ds("X509Data"))
    issuer_serial = etree.SubElement(x509_data, ds("X509IssuerSerial"))
    etree.SubElement(issuer_serial, ds("X509IssuerName"))
    etree.SubElement(issuer_serial, ds("X509SerialNumber"))
    return signature


def _path_from(root: etree._Element, element: etree._Element) -> list[int]:
    path: list[int] = []
    while element is not root:
        parent = element.getparent()
        if parent is None:
            raise ValueError("element is not under root")
        path.append(parent.index(element))
        element = parent
    return path[::-1]


def _follow(root: etree._Element, path: list[int]) -> etree._Element:
    element = root
    for index in path:
        element = element[index]
    return element


