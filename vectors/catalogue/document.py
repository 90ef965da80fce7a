"""Document, wrapping (XSW) and content vectors.

The DUIS signature is enveloped over the whole document (``URI=""``), so the
classic XSW attacks, which move the element an ID-based Reference points at,
become: hide an evil request inside the unsigned ds:Signature, move the
signature somewhere a naive ``.//Signature`` search still finds it, or wrap
the signed request inside an evil one.
"""

from __future__ import annotations

import base64
import copy
import dataclasses

from lxml import etree

from gateway.checks import Check
from gateway.namespaces import SR
from vectors.catalogue.base import (
    PITFALLS,
    SPEC4,
    XMLDSIG,
    XSW,
    evil_fields,
    replace_once,
    signed_bytes,
    signed_tree,
)
from vectors.catalogue.context import OTHER_USER
from vectors.catalogue.model import CONTENT, DOCUMENT, WRAPPING, Builder, Vector, VectorContext
from vectors.catalogue.tooling import (
    SIGNXML_FORM,
    ds,
    header_field,
    payment_mode_element,
    redigest,
    request_tree,
    resign,
    signature_part,
    sr,
    the_signature,
    to_bytes,
)

SCHEMA_REFERENCE = "schemas/dcc-gateway-duis.xsd; DUIS 5.4 XSD (Request: Header, Body, ds:Signature)"

# --- document type and schema ------------------------------------------------------


def _root_renamed(tag: str) -> Builder:
    def build(context: VectorContext) -> bytes:
        def edit(root: etree._Element) -> None:
            root.tag = tag

        return signed_bytes(context, edit=edit)

    return build


def header_field_missing(context: VectorContext) -> bytes:
    def edit(root: etree._Element) -> None:
        field = header_field(root, "CommandVariant")
        field.getparent().remove(field)

    return signed_bytes(context, edit=edit)


def header_fields_reordered(context: VectorContext) -> bytes:
    def edit(root: etree._Element) -> None:
        variant = header_field(root, "CommandVariant")
        reference = header_field(root, "ServiceReference")
        reference.addnext(variant)

    return signed_bytes(context, edit=edit)


def header_extra_element(context: VectorContext) -> bytes:
    def edit(root: etree._Element) -> None:
        etree.SubElement(root.find(sr("Header")), sr("UserRole")).text = "SC"

    return signed_bytes(context, edit=edit)


def header_foreign_element(context: VectorContext) -> bytes:
    def edit(root: etree._Element) -> None:
        etree.SubElement(root.find(sr("Header")), "{urn:x-evil}Override").text = "Prepayment"

    return signed_bytes(context, edit=edit)


def schema_version_missing(context: VectorContext) -> bytes:
    def edit(root: etree._Element) -> None:
        del root.attrib["schemaVersion"]

    return signed_bytes(context, edit=edit)


def body_two_children(context: VectorContext) -> bytes:
    def edit(root: etree._Element) -> None:
        root.find(sr("Body")).append(payment_mode_element("Prepayment"))

    return signed_bytes(context, edit=edit)


def counter_beyond_64_bits(context: VectorContext) -> bytes:
    fields = dataclasses.replace(context.request, counter=1 << 64)
    return signed_bytes(context, fields=fields)


# --- wrapping -------------------------------------------------------------------------


def _detached_signature(context: VectorContext) -> tuple[etree._Element, etree._Element]:
    """A validly signed request and its signature, detached from it."""
    original = signed_tree(context)
    signature = the_signature(original)
    original.remove(signature)
    return original, signature


def original_inside_object(context: VectorContext) -> bytes:
    """XSW1 adapted: evil root, the original signature, the signed request inside ds:Object."""
    original, signature = _detached_signature(context)
    evil = request_tree(evil_fields(context))
    evil.append(signature)
    etree.SubElement(signature, ds("Object")).append(original)
    return to_bytes(evil)


def evil_inside_object(context: VectorContext) -> bytes:
    """The signed request untouched; an evil sr:Request hidden in a ds:Object of its signature."""
    root = signed_tree(context)
    etree.SubElement(the_signature(root), ds("Object")).append(request_tree(evil_fields(context)))
    return to_bytes(root)


def evil_inside_key_info(context: VectorContext) -> bytes:
    root = signed_tree(context)
    signature_part(root, "KeyInfo").append(request_tree(evil_fields(context)))
    return to_bytes(root)


def evil_inside_x509_data(context: VectorContext) -> bytes:
    root = signed_tree(context)
    signature_part(root, "KeyInfo/X509Data").append(request_tree(evil_fields(context)))
    return to_bytes(root)


def signature_into_body(context: VectorContext) -> bytes:
    root = signed_tree(context)
    root.find(sr("Body")).append(the_signature(root))
    return to_bytes(root)


def signature_into_header(context: VectorContext) -> bytes:
    root = signed_tree(context)
    root.find(sr("Header")).append(the_signature(root))
    return to_bytes(root)


def signature_wrapped_in_ds_object(context: VectorContext) -> bytes:
    """The signature moved into a ds:Object that is the root's last child (the XSD skips ds content)."""
    root = signed_tree(context)
    signature = the_signature(root)
    wrapper = etree.SubElement(root, ds("Object"))
    wrapper.append(signature)
    return to_bytes(root)


def signed_request_in_evil_body(context: VectorContext) -> bytes:
    """XSW3/4 adapted: the signed request (signature and all) becomes the body of an evil one."""
    original = signed_tree(context)
    evil = request_tree(evil_fields(context))
    body = evil.find(sr("Body"))
    body.remove(body[0])
    body.append(original)
    etree.SubElement(evil, ds("Object"))
    return to_bytes(evil)


def signed_request_in_evil_body_with_copied_signature(context: VectorContext) -> bytes:
    """As above, with a copy of the original signature as the evil root's last child."""
    original = signed_tree(context)
    evil = request_tree(evil_fields(context))
    body = evil.find(sr("Body"))
    body.remove(body[0])
    body.append(original)
    evil.append(copy.deepcopy(the_signature(original)))
    return to_bytes(evil)


def duplicate_signature_sibling(context: VectorContext) -> bytes:
    root = signed_tree(context)
    root.append(copy.deepcopy(the_signature(root)))
    return to_bytes(root)


def duplicate_signature_nested(context: VectorContext) -> bytes:
    root = signed_tree(context)
    signature = the_signature(root)
    signature_part(root, "KeyInfo").append(copy.deepcopy(signature))
    return to_bytes(root)


def signature_not_last(context: VectorContext) -> bytes:
    root = signed_tree(context)
    root.find(sr("Header")).addnext(the_signature(root))
    return to_bytes(root)


def signature_removed(context: VectorContext) -> bytes:
    root = signed_tree(context)
    root.remove(the_signature(root))
    return to_bytes(root)


def signature_replaced_by_other_ds_element(context: VectorContext) -> bytes:
    root = signed_tree(context)
    root.remove(the_signature(root))
    etree.SubElement(root, ds("Object"))
    return to_bytes(root)


def second_header_appended(context: VectorContext) -> bytes:
    root = signed_tree(context)
    evil = request_tree(evil_fields(context))
    root.append(evil.find(sr("Header")))
    return to_bytes(root)


def second_body_appended(context: VectorContext) -> bytes:
    root = signed_tree(context)
    evil = request_tree(evil_fields(context))
    root.append(evil.find(sr("Body")))
    return to_bytes(root)


def second_body_before_signature(context: VectorContext) -> bytes:
    root = signed_tree(context)
    evil = request_tree(evil_fields(context))
    the_signature(root).addprevious(evil.find(sr("Body")))
    return to_bytes(root)


# --- content changed after signing ---------------------------------------------------


def counter_changed(context: VectorContext) -> bytes:
    root = signed_tree(context)
    header_field(root, "RequestID").text = evil_fields(context).request_id
    return to_bytes(root)


def target_changed(context: VectorContext) -> bytes:
    root = signed_tree(context)
    other = dataclasses.replace(context.request, target=context.other_user)
    header_field(root, "RequestID").text = other.request_id
    return to_bytes(root)


def payment_mode_changed(context: VectorContext) -> bytes:
    root = signed_tree(context)
    body = root.find(sr("Body"))
    body.replace(body[0], payment_mode_element("Prepayment"))
    return to_bytes(root)


def schema_version_changed(context: VectorContext) -> bytes:
    root = signed_tree(context)
    root.set("schemaVersion", "5.3")
    return to_bytes(root)


_NAMESPACE_ON_ROOT = (b"<sr:Request ", b'<sr:Request xmlns:evil="urn:x-evil" ')


def namespace_added_duis_form(context: VectorContext) -> bytes:
    return replace_once(signed_bytes(context), *_NAMESPACE_ON_ROOT)


def namespace_added_signxml_form(context: VectorContext) -> bytes:
    return replace_once(signed_bytes(context, style=SIGNXML_FORM), *_NAMESPACE_ON_ROOT)


def namespace_added_on_signature(context: VectorContext) -> bytes:
    return replace_once(signed_bytes(context), b"<ds:Signature>", b'<ds:Signature xmlns:evil="urn:x-evil">')


def whitespace_in_text(context: VectorContext) -> bytes:
    root = signed_tree(context)
    field = header_field(root, "RequestID")
    field.text = f" {field.text} "
    return to_bytes(root)


def whitespace_between_elements(context: VectorContext) -> bytes:
    root = signed_tree(context)
    root.find(sr("Header")).text = "\n    "
    return to_bytes(root)


def whitespace_after_signature(context: VectorContext) -> bytes:
    root = signed_tree(context)
    the_signature(root).tail = "\n"
    return to_bytes(root)


def digest_recomputed(context: VectorContext) -> bytes:
    """The attacker changes the content and fixes DigestValue, but cannot re-sign SignedInfo."""
    root = signed_tree(context)
    header_field(root, "RequestID").text = evil_fields(context).request_id
    redigest(root, the_signature(root))
    return to_bytes(root)


def signed_by_other_key(context: VectorContext) -> bytes:
    """SignedInfo signed with another user's key while KeyInfo names the originator's certificate."""
    root = signed_tree(context)
    resign(the_signature(root), context.certificate(OTHER_USER))
    return to_bytes(root)


def signature_bit_flipped(context: VectorContext) -> bytes:
    root = signed_tree(context)
    value = signature_part(root, "SignatureValue")
    raw = bytearray(base64.b64decode(value.text or ""))
    raw[40] ^= 0x01
    value.text = base64.b64encode(bytes(raw)).decode("ascii")
    return to_bytes(root)


DOCUMENT_VECTORS: tuple[Vector, ...] = (
    Vector(
        "document-type-response-root",
        DOCUMENT,
        "A signed sr:Response sent where a Service Request is expected.",
        "SPEC §5 (E13 request type / URL); gateway/verify/verifier.py _document_kind",
        _root_renamed(f"{{{SR}}}Response"),
        Check.DOCUMENT_TYPE.check_id,
    ),
    Vector(
        "document-type-foreign-namespace",
        DOCUMENT,
        "Request in a namespace that is not DUIS.",
        "DOMAIN.md 'DUIS messages' (namespaces); gateway/schema.py",
        _root_renamed("{urn:x-evil}Request"),
        Check.DOCUMENT_TYPE.check_id,
    ),
    Vector(
        "document-type-no-namespace",
        DOCUMENT,
        "Request in no namespace (a local-name match would take it).",
        "STYLE.md (never match by local name); DOMAIN.md 'DUIS messages'",
        _root_renamed("Request"),
        Check.DOCUMENT_TYPE.check_id,
    ),
    Vector(
        "schema-header-field-missing",
        DOCUMENT,
        "sr:CommandVariant left out of the header (signed that way).",
        SCHEMA_REFERENCE,
        header_field_missing,
        Check.SCHEMA.check_id,
    ),
    Vector(
        "schema-header-fields-reordered",
        DOCUMENT,
        "sr:ServiceReference before sr:CommandVariant (signed that way).",
        SCHEMA_REFERENCE,
        header_fields_reordered,
        Check.SCHEMA.check_id,
    ),
    Vector(
        "schema-header-extra-element",
        DOCUMENT,
        "An extra sr:UserRole element in the header (DUIS has no role field).",
        f"{SCHEMA_REFERENCE}; DOMAIN.md 'DUIS messages' (no role field)",
        header_extra_element,
        Check.SCHEMA.check_id,
    ),
    Vector(
        "schema-header-foreign-element",
        DOCUMENT,
        "An element from another namespace in the header.",
        SCHEMA_REFERENCE,
        header_foreign_element,
        Check.SCHEMA.check_id,
    ),
    Vector(
        "schema-version-missing",
        DOCUMENT,
        "sr:Request without its required schemaVersion attribute.",
        SCHEMA_REFERENCE,
        schema_version_missing,
        Check.SCHEMA.check_id,
    ),
    Vector(
        "schema-body-two-children",
        DOCUMENT,
        "sr:Body holding two service request elements.",
        SCHEMA_REFERENCE,
        body_two_children,
        Check.SCHEMA.check_id,
    ),
    Vector(
        "schema-counter-beyond-64-bits",
        DOCUMENT,
        "RequestID counter 2^64 (one beyond uint64).",
        f"{SCHEMA_REFERENCE}; DOMAIN.md 'DUIS messages' (counter is uint64)",
        counter_beyond_64_bits,
        Check.SCHEMA.check_id,
    ),
)

WRAPPING_VECTORS: tuple[Vector, ...] = (
    Vector(
        "xsw-original-request-inside-object",
        WRAPPING,
        "XSW1/XSW5 adapted: evil root (Prepayment, new counter) carrying the original signature, whose "
        "ds:Object holds the original signed request.",
        f"{XSW} (XSW1, XSW5); {PITFALLS}",
        original_inside_object,
        Check.SIGNATURE_OBJECT.check_id,
    ),
    Vector(
        "xsw-evil-request-inside-object",
        WRAPPING,
        "Signed request untouched, an evil sr:Request inside a ds:Object of its signature: signxml and "
        "xmlsec1 verify it, and it is XSD-valid.",
        f"{PITFALLS}; {XSW} (XSW7/XSW8)",
        evil_inside_object,
        Check.SIGNATURE_OBJECT.check_id,
    ),
    Vector(
        "xsw-evil-request-inside-keyinfo",
        WRAPPING,
        "An evil sr:Request inside ds:KeyInfo (unsigned).",
        f"{PITFALLS}; {XSW}",
        evil_inside_key_info,
        Check.KEY_INFO.check_id,
    ),
    Vector(
        "xsw-evil-request-inside-x509data",
        WRAPPING,
        "An evil sr:Request inside ds:X509Data, beside X509IssuerSerial.",
        f"{PITFALLS}; {XSW}",
        evil_inside_x509_data,
        Check.KEY_INFO.check_id,
    ),
    Vector(
        "xsw-signature-moved-into-body",
        WRAPPING,
        "The signature moved into sr:Body (a './/Signature' search still finds it).",
        f"{XSW}; {PITFALLS} (signxml default location './/'); {SPEC4} (last child of the root)",
        signature_into_body,
        Check.SCHEMA.check_id,
    ),
    Vector(
        "xsw-signature-moved-into-header",
        WRAPPING,
        "The signature moved into sr:Header.",
        f"{XSW}; {SPEC4}",
        signature_into_header,
        Check.SCHEMA.check_id,
    ),
    Vector(
        "xsw-signature-wrapped-in-ds-object",
        WRAPPING,
        "The signature moved inside a ds:Object that is the root's last child: the XSD skips ds content, "
        "so the profile must notice the signature is not the root's child.",
        f"{XSW}; {SPEC4} (last child of the root)",
        signature_wrapped_in_ds_object,
        Check.SIGNATURE_POSITION.check_id,
    ),
    Vector(
        "xsw-signed-request-inside-evil-body",
        WRAPPING,
        "XSW3/XSW4 adapted: the whole signed request becomes the sr:Body of an evil request (the lax body "
        "wildcard validates it as an sr:Request), with an empty ds:Object closing the evil root.",
        f"{XSW} (XSW3, XSW4)",
        signed_request_in_evil_body,
        Check.SIGNATURE_POSITION.check_id,
    ),
    Vector(
        "xsw-signed-request-inside-evil-body-signature-copied",
        WRAPPING,
        "As above, with a copy of the original signature as the evil root's last child.",
        f"{XSW} (XSW3, XSW4)",
        signed_request_in_evil_body_with_copied_signature,
        Check.SIGNATURE_DUPLICATE.check_id,
    ),
    Vector(
        "signature-duplicate-siblings",
        WRAPPING,
        "Two identical ds:Signature elements at the end of the root (the XSD allows one).",
        f"{SPEC4} (exactly one ds:Signature); {SCHEMA_REFERENCE}",
        duplicate_signature_sibling,
        Check.SCHEMA.check_id,
    ),
    Vector(
        "signature-duplicate-nested-in-keyinfo",
        WRAPPING,
        "A copy of the signature nested in its own ds:KeyInfo.",
        f"{SPEC4} (exactly one ds:Signature)",
        duplicate_signature_nested,
        Check.SIGNATURE_DUPLICATE.check_id,
    ),
    Vector(
        "signature-not-last",
        WRAPPING,
        "The signature between sr:Header and sr:Body.",
        f"{SPEC4} (last child of the root); {SCHEMA_REFERENCE}",
        signature_not_last,
        Check.SCHEMA.check_id,
    ),
    Vector(
        "signature-removed",
        WRAPPING,
        "The signature deleted (the XSD requires a ds element last).",
        f"{SPEC4}; {SCHEMA_REFERENCE}",
        signature_removed,
        Check.SCHEMA.check_id,
    ),
    Vector(
        "signature-replaced-by-other-ds-element",
        WRAPPING,
        "The signature replaced by an empty ds:Object, which satisfies the XSD's ds wildcard.",
        SPEC4,
        signature_replaced_by_other_ds_element,
        Check.SIGNATURE_MISSING.check_id,
    ),
    Vector(
        "second-header-appended-after-signing",
        WRAPPING,
        "An evil sr:Header appended after the signature (a first-match reader would still see the "
        "signed one; a last-match reader the evil one).",
        f"{XSW}; {SCHEMA_REFERENCE}",
        second_header_appended,
        Check.SCHEMA.check_id,
    ),
    Vector(
        "second-body-appended-after-signing",
        WRAPPING,
        "An evil sr:Body appended after the signature.",
        f"{XSW}; {SCHEMA_REFERENCE}",
        second_body_appended,
        Check.SCHEMA.check_id,
    ),
    Vector(
        "second-body-before-signature",
        WRAPPING,
        "An evil sr:Body inserted between the signed sr:Body and the signature.",
        f"{XSW}; {SCHEMA_REFERENCE}",
        second_body_before_signature,
        Check.SCHEMA.check_id,
    ),
)

CONTENT_VECTORS: tuple[Vector, ...] = (
    Vector(
        "content-counter-changed",
        CONTENT,
        "RequestID counter changed after signing.",
        f"{XMLDSIG} §3.2.1 (reference validation)",
        counter_changed,
        Check.DIGEST_MISMATCH.check_id,
    ),
    Vector(
        "content-target-changed",
        CONTENT,
        "RequestID target device changed after signing.",
        f"{XMLDSIG} §3.2.1",
        target_changed,
        Check.DIGEST_MISMATCH.check_id,
    ),
    Vector(
        "content-payment-mode-changed",
        CONTENT,
        "sr:Credit replaced by sr:Prepayment after signing (the MP134B content rule's target).",
        f"{XMLDSIG} §3.2.1; DOMAIN.md (MP134B R5)",
        payment_mode_changed,
        Check.DIGEST_MISMATCH.check_id,
    ),
    Vector(
        "content-schema-version-changed",
        CONTENT,
        "schemaVersion attribute changed after signing.",
        f"{XMLDSIG} §3.2.1",
        schema_version_changed,
        Check.DIGEST_MISMATCH.check_id,
    ),
    Vector(
        "content-namespace-added-duis-form",
        CONTENT,
        "An unused namespace declaration added on the root of a DUIS-form request: with only "
        "enveloped-signature the reference is inclusive C14N 1.0, where in-scope declarations count.",
        f"{PITFALLS}; {XMLDSIG} §4.4.3.2 (default C14N 1.0 for the reference); Canonical XML 1.0 §2.3",
        namespace_added_duis_form,
        Check.DIGEST_MISMATCH.check_id,
    ),
    Vector(
        "content-namespace-added-signxml-form",
        CONTENT,
        "The same added declaration on a signxml-form request (explicit exc-c14n transform): exclusive "
        "C14N omits declarations no element uses, so the signed octets are unchanged and the request is "
        "accepted, as xmlsec1 and signxml accept it. Harmless: no element or attribute changes meaning.",
        f"{PITFALLS}; Exclusive XML Canonicalization 1.0 §3 (visibly utilized namespaces)",
        namespace_added_signxml_form,
        None,
    ),
    Vector(
        "content-namespace-added-on-signature",
        CONTENT,
        "An unused namespace declaration added on ds:Signature. Nothing signed changes (the signature is "
        "outside the reference and SignedInfo is exclusive C14N), yet it is refused: the profile's canonical "
        "shape admits only the XMLDSig declaration on ds:Signature. Deliberately strict: no known signer "
        "(DUIS templates, DCC Boxed, signxml, xmlsec1) writes others.",
        f"{SPEC4}; gateway/verify/canonical.py (_PROFILE)",
        namespace_added_on_signature,
        Check.SIGNATURE_STRUCTURE.check_id,
    ),
    Vector(
        "content-whitespace-in-text",
        CONTENT,
        "Spaces around the RequestID text (the XSD's xs:token would hide it; the digest must not).",
        f"{XMLDSIG} §3.2.1; Canonical XML 1.0 §1.1 (text is preserved)",
        whitespace_in_text,
        Check.DIGEST_MISMATCH.check_id,
    ),
    Vector(
        "content-whitespace-between-elements",
        CONTENT,
        "Indentation added inside sr:Header after signing.",
        "Canonical XML 1.0 §1.1 (whitespace in content is preserved)",
        whitespace_between_elements,
        Check.DIGEST_MISMATCH.check_id,
    ),
    Vector(
        "content-whitespace-after-signature",
        CONTENT,
        "A newline after </ds:Signature> inside the root: it is part of the signed content (the "
        "enveloped transform removes the element, not the text after it).",
        f"{XMLDSIG} §6.6.4; gateway/signing.py detach_signature",
        whitespace_after_signature,
        Check.DIGEST_MISMATCH.check_id,
    ),
    Vector(
        "content-digest-recomputed",
        CONTENT,
        "Counter changed and DigestValue recomputed to match: SignedInfo no longer matches its signature.",
        f"{XMLDSIG} §3.2.2 (signature validation)",
        digest_recomputed,
        Check.SIGNATURE_INVALID.check_id,
    ),
    Vector(
        "signature-by-other-key",
        CONTENT,
        "SignedInfo signed with another user's key; KeyInfo still names the originator's certificate.",
        f"{SPEC4} (the key comes from the repository, never from the message)",
        signed_by_other_key,
        Check.SIGNATURE_INVALID.check_id,
    ),
    Vector(
        "signature-value-bit-flipped",
        CONTENT,
        "One bit of s flipped (r and s still in range).",
        f"{XMLDSIG} §3.2.2",
        signature_bit_flipped,
        Check.SIGNATURE_INVALID.check_id,
    ),
)
