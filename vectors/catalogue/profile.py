"""XMLDSig profile vectors (SPEC §4) and ECDSA / encoding malleability.

Where a vector changes SignedInfo, SignatureValue is recomputed with the
signer's own key (:func:`~vectors.catalogue.tooling.resign`): the request is
what a misconfigured or hostile *legitimate* client would send, so only the
profile can refuse it, not a broken signature.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from lxml import etree

from gateway.checks import Check
from gateway.namespaces import DS
from vectors.catalogue.base import BEST_PRACTICES, PITFALLS, SPEC4, XMLDSIG, reparsed, signed_tree
from vectors.catalogue.model import MALLEABILITY, PROFILE, Builder, Vector, VectorContext
from vectors.catalogue.tooling import (
    DUIS_FORM,
    ENVELOPED,
    EXC_C14N,
    P256_ORDER,
    SignatureStyle,
    digest_without,
    ds,
    encode_base64,
    resign,
    to_bytes,
)

C14N10 = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
C14N11 = "http://www.w3.org/2006/12/xml-c14n11"
EXC_C14N_COMMENTS = EXC_C14N + "WithComments"
XPATH = "http://www.w3.org/TR/1999/REC-xpath-19991116"
XPATH_FILTER2 = "http://www.w3.org/2002/06/xmldsig-filter2"
XSLT = "http://www.w3.org/TR/1999/REC-xslt-19991116"
BASE64_TRANSFORM = "http://www.w3.org/2000/09/xmldsig#base64"
SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"
SHA512 = "http://www.w3.org/2001/04/xmlenc#sha512"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
ECDSA_SHA1 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha1"
ECDSA_SHA384 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384"
HMAC_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256"
EXC_C14N_NS = "http://www.w3.org/2001/10/xml-exc-c14n#"
XSL_NS = "http://www.w3.org/1999/XSL/Transform"

SignatureEdit = Callable[[etree._Element, VectorContext], None]


def part(signature: etree._Element, path: str) -> etree._Element:
    """A descendant of ds:Signature by ds local names, e.g. ``SignedInfo/Reference``."""
    element = signature
    for local in path.split("/"):
        found = element.find(ds(local))
        if found is None:
            raise ValueError(f"no ds:{local} under ds:{etree.QName(element).localname}")
        element = found
    return element


def resigned(edit: SignatureEdit, style: SignatureStyle = DUIS_FORM) -> Builder:
    """A signed request whose ds:Signature is edited, then SignedInfo re-signed by the signer."""

    def build(context: VectorContext) -> bytes:
        root = signed_tree(context, style=style)
        signature = root[-1]
        edit(signature, context)
        resign(signature, context.signer)
        return to_bytes(root)

    return build


def edited(edit: SignatureEdit) -> Builder:
    """A signed request whose ds:Signature is edited outside SignedInfo (no re-signing)."""

    def build(context: VectorContext) -> bytes:
        root = signed_tree(context)
        edit(root[-1], context)
        return to_bytes(root)

    return build


# --- edits: Reference -------------------------------------------------------------


def _set_reference_attribute(name: str, value: str) -> SignatureEdit:
    def edit(signature: etree._Element, _: VectorContext) -> None:
        part(signature, "SignedInfo/Reference").set(name, value)

    return edit


def _reference_uri_removed(signature: etree._Element, _: VectorContext) -> None:
    del part(signature, "SignedInfo/Reference").attrib["URI"]


def _second_reference(signature: etree._Element, _: VectorContext) -> None:
    reference = part(signature, "SignedInfo/Reference")
    reference.addnext(copy.deepcopy(reference))


# --- edits: Transforms --------------------------------------------------------------


def _transforms(signature: etree._Element) -> etree._Element:
    return part(signature, "SignedInfo/Reference/Transforms")


def _set_transforms(*algorithms: str) -> SignatureEdit:
    def edit(signature: etree._Element, _: VectorContext) -> None:
        transforms = _transforms(signature)
        for child in list(transforms):
            transforms.remove(child)
        for algorithm in algorithms:
            etree.SubElement(transforms, ds("Transform"), Algorithm=algorithm)

    return edit


def _xpath_transform(signature: etree._Element, _: VectorContext) -> None:
    transform = etree.SubElement(_transforms(signature), ds("Transform"), Algorithm=XPATH)
    etree.SubElement(transform, ds("XPath")).text = "not(ancestor-or-self::ds:Signature)"


def _xpath_filter2_transform(signature: etree._Element, _: VectorContext) -> None:
    transform = etree.SubElement(_transforms(signature), ds("Transform"), Algorithm=XPATH_FILTER2)
    xpath = etree.SubElement(transform, f"{{{XPATH_FILTER2}}}XPath", Filter="subtract")
    xpath.text = "//*[local-name()='Body']"


def _xslt_transform(signature: etree._Element, _: VectorContext) -> None:
    transform = etree.SubElement(_transforms(signature), ds("Transform"), Algorithm=XSLT)
    stylesheet = etree.SubElement(transform, f"{{{XSL_NS}}}stylesheet", version="1.0")
    etree.SubElement(stylesheet, f"{{{XSL_NS}}}template", match="/")


def _transforms_removed(signature: etree._Element, _: VectorContext) -> None:
    transforms = _transforms(signature)
    transforms.getparent().remove(transforms)


def _inclusive_namespaces_on_transform(signature: etree._Element, _: VectorContext) -> None:
    transform = _transforms(signature)[-1]
    etree.SubElement(transform, f"{{{EXC_C14N_NS}}}InclusiveNamespaces", PrefixList="sr ds")


# --- edits: SignedInfo algorithms -------------------------------------------------------


def _set_algorithm(path: str, algorithm: str) -> SignatureEdit:
    def edit(signature: etree._Element, _: VectorContext) -> None:
        part(signature, path).set("Algorithm", algorithm)

    return edit


def _inclusive_namespaces_on_c14n(signature: etree._Element, _: VectorContext) -> None:
    method = part(signature, "SignedInfo/CanonicalizationMethod")
    etree.SubElement(method, f"{{{EXC_C14N_NS}}}InclusiveNamespaces", PrefixList="sr")


def _sha1_digest(signature: etree._Element, _: VectorContext) -> None:
    part(signature, "SignedInfo/Reference/DigestMethod").set("Algorithm", SHA1)
    digest = digest_without(signature.getparent(), signature, exclusive=False, algorithm="sha1")
    part(signature, "SignedInfo/Reference/DigestValue").text = encode_base64(digest)


def _hmac_with_output_length(signature: etree._Element, _: VectorContext) -> None:
    method = part(signature, "SignedInfo/SignatureMethod")
    method.set("Algorithm", HMAC_SHA256)
    etree.SubElement(method, ds("HMACOutputLength")).text = "0"


# --- edits: values ---------------------------------------------------------------------


def _set_text(path: str, text: str) -> SignatureEdit:
    def edit(signature: etree._Element, _: VectorContext) -> None:
        part(signature, path).text = text

    return edit


def _digest_of_length(length: int) -> SignatureEdit:
    def edit(signature: etree._Element, _: VectorContext) -> None:
        element = part(signature, "SignedInfo/Reference/DigestValue")
        digest = base64.b64decode(element.text or "")
        element.text = encode_base64((digest * 2)[:length])

    return edit


def _r_s(signature: etree._Element) -> tuple[int, int]:
    raw = base64.b64decode(part(signature, "SignatureValue").text or "")
    return int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")


def _set_raw_signature(signature: etree._Element, raw: bytes) -> None:
    part(signature, "SignatureValue").text = encode_base64(raw)


def _signature_from(transform: Callable[[int, int], bytes]) -> SignatureEdit:
    def edit(signature: etree._Element, _: VectorContext) -> None:
        r, s = _r_s(signature)
        _set_raw_signature(signature, transform(r, s))

    return edit


def _pair(r: int, s: int) -> bytes:
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _non_canonical_base64(signature: etree._Element, _: VectorContext) -> None:
    """Sets the unused low bits of the last base64 digit: decodes to the same 64 bytes."""
    element = part(signature, "SignatureValue")
    text = element.text or ""
    if not text.endswith("=="):
        raise ValueError("64 bytes encode with '==' padding")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet.index(text[-3])
    element.text = text[:-3] + alphabet[last | 0x0F] + "=="


# --- edits: KeyInfo ---------------------------------------------------------------------


def _add_to(path: str, make: Callable[[VectorContext], etree._Element]) -> SignatureEdit:
    def edit(signature: etree._Element, context: VectorContext) -> None:
        part(signature, path).append(make(context))

    return edit


def _certificate_element(context: VectorContext) -> etree._Element:
    element = etree.Element(ds("X509Certificate"))
    der = context.signer.certificate.public_bytes(serialization.Encoding.DER)
    element.text = base64.b64encode(der).decode("ascii")
    return element


def _key_value_element(context: VectorContext) -> etree._Element:
    dsig11 = "http://www.w3.org/2009/xmldsig11#"
    key_value = etree.Element(ds("KeyValue"))
    ec_key = etree.SubElement(key_value, f"{{{dsig11}}}ECKeyValue")
    etree.SubElement(ec_key, f"{{{dsig11}}}NamedCurve", URI="urn:oid:1.2.840.10045.3.1.7")
    point = context.signer.certificate.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    etree.SubElement(ec_key, f"{{{dsig11}}}PublicKey").text = base64.b64encode(point).decode("ascii")
    return key_value


def _simple(local: str, text: str | None = None, **attributes: str) -> Callable[[VectorContext], etree._Element]:
    def make(_: VectorContext) -> etree._Element:
        element = etree.Element(ds(local), **attributes)
        element.text = text
        return element

    return make


def _key_info_replaced_by(make: Callable[[VectorContext], etree._Element]) -> SignatureEdit:
    def edit(signature: etree._Element, context: VectorContext) -> None:
        key_info = part(signature, "KeyInfo")
        for child in list(key_info):
            key_info.remove(child)
        key_info.append(make(context))

    return edit


def _x509_data_replaced_by(make: Callable[[VectorContext], etree._Element]) -> SignatureEdit:
    def edit(signature: etree._Element, context: VectorContext) -> None:
        x509_data = part(signature, "KeyInfo/X509Data")
        for child in list(x509_data):
            x509_data.remove(child)
        x509_data.append(make(context))

    return edit


def _key_info_emptied(signature: etree._Element, _: VectorContext) -> None:
    key_info = part(signature, "KeyInfo")
    for child in list(key_info):
        key_info.remove(child)


def _key_info_removed(signature: etree._Element, _: VectorContext) -> None:
    signature.remove(part(signature, "KeyInfo"))


# --- edits: structure -----------------------------------------------------------------


def _set_attribute(path: str | None, name: str, value: str) -> SignatureEdit:
    def edit(signature: etree._Element, _: VectorContext) -> None:
        (part(signature, path) if path else signature).set(name, value)

    return edit


def _text_in_signed_info(signature: etree._Element, _: VectorContext) -> None:
    part(signature, "SignedInfo").text = "evil"


def _text_between_children(signature: etree._Element, _: VectorContext) -> None:
    part(signature, "SignedInfo").tail = "evil"


def _append_child(make: Callable[[], etree._Element]) -> SignatureEdit:
    def edit(signature: etree._Element, _: VectorContext) -> None:
        signature.append(make())

    return edit


def _swap_signed_info_and_value(signature: etree._Element, _: VectorContext) -> None:
    signature.insert(0, part(signature, "SignatureValue"))


def _signature_method_first(signature: etree._Element, _: VectorContext) -> None:
    signed_info = part(signature, "SignedInfo")
    signed_info.insert(0, part(signature, "SignedInfo/SignatureMethod"))


def _digest_value_before_method(signature: etree._Element, _: VectorContext) -> None:
    method = part(signature, "SignedInfo/Reference/DigestMethod")
    method.addprevious(part(signature, "SignedInfo/Reference/DigestValue"))


def _leading_zero_serial(signature: etree._Element, _: VectorContext) -> None:
    serial = part(signature, "KeyInfo/X509Data/X509IssuerSerial/X509SerialNumber")
    serial.text = "000" + (serial.text or "")


def _hex_serial(signature: etree._Element, context: VectorContext) -> None:
    serial = part(signature, "KeyInfo/X509Data/X509IssuerSerial/X509SerialNumber")
    serial.text = hex(context.signer.certificate.serial_number)


def _v(id: str, description: str, reference: str, build: Builder, check: Check | None) -> Vector:
    return Vector(id, PROFILE, description, reference, build, None if check is None else check.check_id)


_REF = f'{SPEC4}: one Reference URI=""'
_TRANSFORMS = f"{SPEC4}: enveloped-signature [+ exc-c14n]; {BEST_PRACTICES} §2.1 (avoid XPath/XSLT)"


def mixed_prefixes(context: VectorContext) -> bytes:
    data = to_bytes(signed_tree(context))
    start, end = data.index(b"<ds:SignedInfo>"), data.index(b"</ds:SignedInfo>") + len(b"</ds:SignedInfo>")
    inner = data[start:end].replace(b"<ds:", b"<dsig:").replace(b"</ds:", b"</dsig:")
    inner = inner.replace(b"<dsig:SignedInfo>", b'<dsig:SignedInfo xmlns:dsig="' + DS.encode() + b'">', 1)
    root = reparsed(data[:start] + inner + data[end:])
    resign(root[-1], context.signer)
    return to_bytes(root)


PROFILE_VECTORS: tuple[Vector, ...] = (
    # Reference
    _v(
        "reference-uri-fragment",
        'Reference URI="#request" (an ID-based reference, the XSW precondition).',
        f"{_REF}; {XMLDSIG} §4.4.3.3",
        resigned(_set_reference_attribute("URI", "#request")),
        Check.REFERENCE,
    ),
    _v(
        "reference-uri-external",
        "Reference to an external document over HTTP.",
        f"{_REF}; {BEST_PRACTICES} §2.2 (SSRF via dereferencing)",
        resigned(_set_reference_attribute("URI", "http://attacker.example/request.xml")),
        Check.REFERENCE,
    ),
    _v(
        "reference-uri-xpointer",
        'Reference URI="#xpointer(/)" (whole document, with comments).',
        f"{_REF}; {XMLDSIG} §4.4.3.3",
        resigned(_set_reference_attribute("URI", "#xpointer(/)")),
        Check.REFERENCE,
    ),
    _v(
        "reference-uri-missing",
        "Reference without a URI attribute (application-defined data).",
        f"{_REF}; {XMLDSIG} §4.4.3.1",
        resigned(_reference_uri_removed),
        Check.REFERENCE,
    ),
    _v("reference-two", "Two identical References in SignedInfo.", _REF, resigned(_second_reference), Check.REFERENCE),
    _v(
        "reference-id-attribute",
        "Reference carrying an Id attribute.",
        _REF,
        resigned(_set_reference_attribute("Id", "ref-1")),
        Check.REFERENCE,
    ),
    _v(
        "reference-type-attribute",
        "Reference carrying Type=…#Object.",
        _REF,
        resigned(_set_reference_attribute("Type", "http://www.w3.org/2000/09/xmldsig#Object")),
        Check.REFERENCE,
    ),
    # Transforms
    _v(
        "transforms-xpath",
        "An XPath transform after enveloped-signature.",
        f"{_TRANSFORMS}; {PITFALLS} (xmlsec runs XPath transforms)",
        resigned(_xpath_transform),
        Check.TRANSFORMS,
    ),
    _v(
        "transforms-xpath-filter2",
        "An XPath Filter 2.0 transform subtracting sr:Body from the signed content.",
        f"{_TRANSFORMS}; XML-Signature XPath Filter 2.0",
        resigned(_xpath_filter2_transform),
        Check.TRANSFORMS,
    ),
    _v(
        "transforms-xslt",
        "An XSLT transform (arbitrary code in the verifier).",
        f"{_TRANSFORMS}; {BEST_PRACTICES} Best Practice 2 (XSLT)",
        resigned(_xslt_transform),
        Check.TRANSFORMS,
    ),
    _v(
        "transforms-extra-inclusive-c14n",
        "enveloped-signature followed by inclusive C14N 1.0.",
        _TRANSFORMS,
        resigned(_set_transforms(ENVELOPED, C14N10)),
        Check.TRANSFORMS,
    ),
    _v(
        "transforms-exc-c14n-twice",
        "enveloped-signature, exc-c14n, exc-c14n.",
        _TRANSFORMS,
        resigned(_set_transforms(ENVELOPED, EXC_C14N, EXC_C14N)),
        Check.TRANSFORMS,
    ),
    _v(
        "transforms-exc-c14n-with-comments",
        "enveloped-signature then exc-c14n#WithComments.",
        _TRANSFORMS,
        resigned(_set_transforms(ENVELOPED, EXC_C14N_COMMENTS)),
        Check.TRANSFORMS,
    ),
    _v(
        "transforms-base64",
        "enveloped-signature then the base64 transform.",
        _TRANSFORMS,
        resigned(_set_transforms(ENVELOPED, BASE64_TRANSFORM)),
        Check.TRANSFORMS,
    ),
    _v(
        "transforms-element-missing",
        "Reference without ds:Transforms: nothing removes the signature.",
        _TRANSFORMS,
        resigned(_transforms_removed),
        Check.TRANSFORMS,
    ),
    _v("transforms-empty", "An empty ds:Transforms.", _TRANSFORMS, resigned(_set_transforms()), Check.TRANSFORMS),
    _v(
        "transforms-wrong-order",
        "exc-c14n before enveloped-signature.",
        _TRANSFORMS,
        resigned(_set_transforms(EXC_C14N, ENVELOPED)),
        Check.TRANSFORMS,
    ),
    _v(
        "transforms-exc-c14n-only",
        "exc-c14n without enveloped-signature.",
        _TRANSFORMS,
        resigned(_set_transforms(EXC_C14N)),
        Check.TRANSFORMS,
    ),
    _v(
        "transforms-inclusive-namespaces",
        "exc-c14n transform with an InclusiveNamespaces PrefixList child.",
        f"{_TRANSFORMS}; Exclusive XML Canonicalization 1.0 §3.1",
        resigned(_inclusive_namespaces_on_transform, SignatureStyle(exclusive=True)),
        Check.TRANSFORMS,
    ),
    # SignedInfo canonicalisation
    _v(
        "c14n-exc-with-comments",
        "CanonicalizationMethod exc-c14n#WithComments.",
        f"{SPEC4}; {PITFALLS} (comments)",
        resigned(_set_algorithm("SignedInfo/CanonicalizationMethod", EXC_C14N_COMMENTS)),
        Check.C14N_ALGORITHM,
    ),
    _v(
        "c14n-inclusive-1.0",
        "CanonicalizationMethod inclusive C14N 1.0 for SignedInfo.",
        SPEC4,
        resigned(_set_algorithm("SignedInfo/CanonicalizationMethod", C14N10)),
        Check.C14N_ALGORITHM,
    ),
    _v(
        "c14n-1.1",
        "CanonicalizationMethod C14N 1.1.",
        SPEC4,
        resigned(_set_algorithm("SignedInfo/CanonicalizationMethod", C14N11)),
        Check.C14N_ALGORITHM,
    ),
    _v(
        "c14n-inclusive-namespaces",
        "exc-c14n CanonicalizationMethod with an InclusiveNamespaces child.",
        f"{SPEC4}; Exclusive XML Canonicalization 1.0 §3.1",
        resigned(_inclusive_namespaces_on_c14n),
        Check.C14N_ALGORITHM,
    ),
    # Digest
    _v(
        "digest-sha1",
        "DigestMethod SHA-1 with a correct SHA-1 DigestValue.",
        f"{SPEC4}; {XMLDSIG} §6.2.1 (SHA-1 for verification only); {PITFALLS} (xmlsec accepts SHA-1)",
        resigned(_sha1_digest),
        Check.DIGEST_ALGORITHM,
    ),
    _v(
        "digest-sha512",
        "DigestMethod SHA-512.",
        SPEC4,
        resigned(_set_algorithm("SignedInfo/Reference/DigestMethod", SHA512)),
        Check.DIGEST_ALGORITHM,
    ),
    # SignatureMethod
    _v(
        "signature-method-rsa-sha256",
        "SignatureMethod rsa-sha256 (algorithm confusion).",
        f"{SPEC4}; {XMLDSIG} §6.4",
        resigned(_set_algorithm("SignedInfo/SignatureMethod", RSA_SHA256)),
        Check.SIGNATURE_ALGORITHM,
    ),
    _v(
        "signature-method-ecdsa-sha1",
        "SignatureMethod ecdsa-sha1.",
        f"{SPEC4}; RFC 4051 §2.3.6",
        resigned(_set_algorithm("SignedInfo/SignatureMethod", ECDSA_SHA1)),
        Check.SIGNATURE_ALGORITHM,
    ),
    _v(
        "signature-method-ecdsa-sha384",
        "SignatureMethod ecdsa-sha384.",
        SPEC4,
        resigned(_set_algorithm("SignedInfo/SignatureMethod", ECDSA_SHA384)),
        Check.SIGNATURE_ALGORITHM,
    ),
    _v(
        "signature-method-hmac-output-length",
        "hmac-sha256 with HMACOutputLength 0 (a MAC anyone can forge).",
        f"CVE-2009-0217 (HMAC truncation); {XMLDSIG} §6.3.1",
        resigned(_hmac_with_output_length),
        Check.SIGNATURE_ALGORITHM,
    ),
    _v(
        "signature-method-none",
        'SignatureMethod Algorithm="none".',
        f"{SPEC4}; RFC 8725 §2.1 (the 'none' algorithm)",
        resigned(_set_algorithm("SignedInfo/SignatureMethod", "none")),
        Check.SIGNATURE_ALGORITHM,
    ),
    _v(
        "signature-method-empty",
        'SignatureMethod Algorithm="".',
        SPEC4,
        resigned(_set_algorithm("SignedInfo/SignatureMethod", "")),
        Check.SIGNATURE_ALGORITHM,
    ),
    # DigestValue
    _v(
        "digest-value-20-bytes",
        "DigestValue of 20 bytes under SHA-256.",
        SPEC4,
        resigned(_digest_of_length(20)),
        Check.DIGEST_VALUE,
    ),
    _v(
        "digest-value-33-bytes",
        "DigestValue of 33 bytes under SHA-256.",
        SPEC4,
        resigned(_digest_of_length(33)),
        Check.DIGEST_VALUE,
    ),
    _v(
        "digest-value-not-base64",
        "DigestValue '!!not base64!!'.",
        f"{SPEC4}; RFC 4648 §4",
        resigned(_set_text("SignedInfo/Reference/DigestValue", "!!not base64!!")),
        Check.DIGEST_VALUE,
    ),
    _v(
        "digest-value-empty",
        "An empty DigestValue.",
        SPEC4,
        resigned(_set_text("SignedInfo/Reference/DigestValue", "")),
        Check.DIGEST_VALUE,
    ),
    # SignatureValue
    _v(
        "signature-value-der",
        "SignatureValue as a DER SEQUENCE{r, s} instead of raw r‖s.",
        f"{SPEC4}; {XMLDSIG} §6.4.3 (r‖s octet strings)",
        edited(_signature_from(lambda r, s: encode_dss_signature(r, s))),
        Check.SIGNATURE_VALUE,
    ),
    _v(
        "signature-value-63-bytes",
        "SignatureValue of 63 bytes.",
        f"{XMLDSIG} §6.4.3",
        edited(_signature_from(lambda r, s: _pair(r, s)[:63])),
        Check.SIGNATURE_VALUE,
    ),
    _v(
        "signature-value-65-bytes",
        "SignatureValue of 65 bytes.",
        f"{XMLDSIG} §6.4.3",
        edited(_signature_from(lambda r, s: _pair(r, s) + b"\x00")),
        Check.SIGNATURE_VALUE,
    ),
    _v(
        "signature-value-r-zero",
        "r = 0.",
        "SEC 1 v2 §4.1.4 step 1; FIPS 186-5 §6.4.2",
        edited(_signature_from(lambda r, s: _pair(0, s))),
        Check.SIGNATURE_VALUE,
    ),
    _v(
        "signature-value-s-zero",
        "s = 0.",
        "SEC 1 v2 §4.1.4 step 1",
        edited(_signature_from(lambda r, s: _pair(r, 0))),
        Check.SIGNATURE_VALUE,
    ),
    _v(
        "signature-value-r-equals-n",
        "r = n (the group order).",
        "SEC 1 v2 §4.1.4 step 1",
        edited(_signature_from(lambda r, s: _pair(P256_ORDER, s))),
        Check.SIGNATURE_VALUE,
    ),
    _v(
        "signature-value-s-equals-n",
        "s = n.",
        "SEC 1 v2 §4.1.4 step 1",
        edited(_signature_from(lambda r, s: _pair(r, P256_ORDER))),
        Check.SIGNATURE_VALUE,
    ),
    _v(
        "signature-value-r-max",
        "r = 2^256 − 1 (above n, still 32 bytes).",
        "SEC 1 v2 §4.1.4 step 1",
        edited(_signature_from(lambda r, s: _pair((1 << 256) - 1, s))),
        Check.SIGNATURE_VALUE,
    ),
    _v(
        "signature-value-not-base64",
        "SignatureValue '!!not base64!!'.",
        f"{SPEC4}; RFC 4648 §4",
        edited(_set_text("SignatureValue", "!!not base64!!")),
        Check.SIGNATURE_VALUE,
    ),
    _v(
        "signature-value-empty",
        "An empty SignatureValue.",
        SPEC4,
        edited(_set_text("SignatureValue", "")),
        Check.SIGNATURE_VALUE,
    ),
    _v(
        "signature-value-id-attribute",
        "SignatureValue with an Id attribute (XMLDSig allows it; the profile does not).",
        SPEC4,
        edited(_set_attribute("SignatureValue", "Id", "value-1")),
        Check.SIGNATURE_STRUCTURE,
    ),
    # KeyInfo
    _v(
        "key-info-x509-certificate-added",
        "The signer's own certificate embedded beside X509IssuerSerial.",
        f"{SPEC4} (never taken from the message); STYLE.md rule 6",
        edited(_add_to("KeyInfo/X509Data", _certificate_element)),
        Check.KEY_INFO,
    ),
    _v(
        "key-info-x509-certificate-only",
        "X509Data holding only an X509Certificate.",
        SPEC4,
        edited(_x509_data_replaced_by(_certificate_element)),
        Check.KEY_INFO,
    ),
    _v(
        "key-info-key-value",
        "KeyInfo holding an ECKeyValue (a bare public key).",
        f"{SPEC4}; {XMLDSIG} §4.5.2",
        edited(_key_info_replaced_by(_key_value_element)),
        Check.KEY_INFO,
    ),
    _v(
        "key-info-key-name",
        "KeyInfo holding a KeyName.",
        f"{SPEC4}; {XMLDSIG} §4.5.1",
        edited(_key_info_replaced_by(_simple("KeyName", "90-B3-D5-1F-30-AA-00-01"))),
        Check.KEY_INFO,
    ),
    _v(
        "key-info-retrieval-method",
        "KeyInfo with a RetrievalMethod pointing at an attacker URL (SSRF).",
        f"{SPEC4}; {XMLDSIG} §4.5.3; {BEST_PRACTICES} §2.2",
        edited(_key_info_replaced_by(_simple("RetrievalMethod", URI="http://attacker.example/key.xml"))),
        Check.KEY_INFO,
    ),
    _v(
        "key-info-x509-ski",
        "X509Data holding an X509SKI instead of X509IssuerSerial.",
        SPEC4,
        edited(_x509_data_replaced_by(_simple("X509SKI", "AAECAwQFBgc="))),
        Check.KEY_INFO,
    ),
    _v(
        "key-info-x509-subject-name",
        "X509Data holding an X509SubjectName.",
        SPEC4,
        edited(_x509_data_replaced_by(_simple("X509SubjectName", "OU=87"))),
        Check.KEY_INFO,
    ),
    _v("key-info-empty", "An empty ds:KeyInfo.", SPEC4, edited(_key_info_emptied), Check.KEY_INFO),
    _v("key-info-missing", "No ds:KeyInfo at all.", SPEC4, edited(_key_info_removed), Check.KEY_INFO),
    _v(
        "key-info-id-attribute",
        "ds:KeyInfo with an Id attribute.",
        SPEC4,
        edited(_set_attribute("KeyInfo", "Id", "key-1")),
        Check.KEY_INFO,
    ),
    _v(
        "key-info-issuer-name-malformed",
        "X509IssuerName that is not a distinguished name.",
        SPEC4,
        edited(_set_text("KeyInfo/X509Data/X509IssuerSerial/X509IssuerName", "not a name")),
        Check.KEY_INFO,
    ),
    _v(
        "key-info-serial-hex",
        "X509SerialNumber written in hex (the schema type is a decimal integer).",
        f"{XMLDSIG} §4.5.4 (X509SerialNumber is xs:integer)",
        edited(_hex_serial),
        Check.KEY_INFO,
    ),
    _v(
        "key-info-serial-negative",
        "X509SerialNumber -1.",
        SPEC4,
        edited(_set_text("KeyInfo/X509Data/X509IssuerSerial/X509SerialNumber", "-1")),
        Check.KEY_INFO,
    ),
    # Structure
    _v(
        "structure-signature-id-attribute",
        "ds:Signature with an Id attribute.",
        SPEC4,
        edited(_set_attribute(None, "Id", "sig-1")),
        Check.SIGNATURE_STRUCTURE,
    ),
    _v(
        "structure-signed-info-id-attribute",
        "ds:SignedInfo with an Id attribute.",
        SPEC4,
        resigned(_set_attribute("SignedInfo", "Id", "si-1")),
        Check.SIGNATURE_STRUCTURE,
    ),
    _v(
        "structure-text-in-signed-info",
        "Text inside ds:SignedInfo.",
        SPEC4,
        resigned(_text_in_signed_info),
        Check.SIGNATURE_STRUCTURE,
    ),
    _v(
        "structure-text-between-signature-children",
        "Text between ds:SignedInfo and ds:SignatureValue.",
        SPEC4,
        edited(_text_between_children),
        Check.SIGNATURE_STRUCTURE,
    ),
    _v(
        "structure-object",
        "An empty ds:Object after ds:KeyInfo (its content would be unsigned).",
        f"{SPEC4}; {PITFALLS}",
        edited(_append_child(lambda: etree.Element(ds("Object")))),
        Check.SIGNATURE_OBJECT,
    ),
    _v(
        "structure-unknown-ds-child",
        "An unknown ds:Evil element after ds:KeyInfo.",
        SPEC4,
        edited(_append_child(lambda: etree.Element(ds("Evil")))),
        Check.SIGNATURE_STRUCTURE,
    ),
    _v(
        "structure-foreign-child",
        "An element from another namespace after ds:KeyInfo.",
        SPEC4,
        edited(_append_child(lambda: etree.Element("{urn:x-evil}Extra"))),
        Check.SIGNATURE_STRUCTURE,
    ),
    _v(
        "structure-signature-value-first",
        "ds:SignatureValue before ds:SignedInfo.",
        f"{XMLDSIG} §4.1",
        edited(_swap_signed_info_and_value),
        Check.SIGNATURE_STRUCTURE,
    ),
    _v(
        "structure-signed-info-reordered",
        "SignatureMethod before CanonicalizationMethod.",
        f"{XMLDSIG} §4.4",
        resigned(_signature_method_first),
        Check.SIGNATURE_STRUCTURE,
    ),
    _v(
        "structure-mixed-ds-prefixes",
        "SignedInfo under a second prefix ('dsig:', declared on it) while the rest "
        "uses 'ds:'. Valid XMLDSig, but the profile's canonical shape requires one prefix and no declaration "
        "inside the signature: refused (deliberately strict; no known signer mixes prefixes).",
        f"{SPEC4}; gateway/verify/canonical.py (_PROFILE)",
        mixed_prefixes,
        Check.SIGNATURE_STRUCTURE,
    ),
    _v(
        "structure-reference-reordered",
        "DigestValue before DigestMethod.",
        f"{XMLDSIG} §4.4.3",
        resigned(_digest_value_before_method),
        Check.SIGNATURE_STRUCTURE,
    ),
)

MALLEABILITY_VECTORS: tuple[Vector, ...] = (
    Vector(
        "ecdsa-malleated-s",
        MALLEABILITY,
        "(r, n − s) in place of (r, s): also a valid ECDSA signature of the same SignedInfo. Accepted by "
        "design: replay protection keys on the signed RequestID counter, never on signature bytes.",
        f"{PITFALLS} (ECDSA malleability); SEC 1 v2 §4.1.4; Wycheproof ecdsa (acceptable)",
        edited(_signature_from(lambda r, s: _pair(r, P256_ORDER - s))),
        None,
    ),
    Vector(
        "base64-non-canonical-padding-bits",
        MALLEABILITY,
        "SignatureValue whose last base64 digit has its unused bits set: decodes to the same 64 bytes, so "
        "the signature is the same; accepted (another reason never to key on the signature's text).",
        "RFC 4648 §3.5 (canonical encoding; decoders MAY reject)",
        edited(_non_canonical_base64),
        None,
    ),
    Vector(
        "serial-number-leading-zeros",
        MALLEABILITY,
        "X509SerialNumber with leading zeros names the same certificate (xs:integer value); accepted.",
        f"{XMLDSIG} §4.5.4 (X509SerialNumber is xs:integer)",
        edited(_leading_zero_serial),
        None,
    ),
)
