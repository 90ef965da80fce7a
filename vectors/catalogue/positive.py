"""Requests that MUST be accepted: the forms real signers emit, and harmless variations.

A false reject stops a supplier's prepayment customers being served, so these
matter to reviewers as much as the attacks do.
"""

from __future__ import annotations

import dataclasses

from lxml import etree

from gateway.namespaces import DS
from gateway.signing import SigningKey, sign_tree
from gateway.signing import to_bytes as gateway_to_bytes
from vectors.catalogue.base import (
    SPEC4,
    XML,
    XMLDSIG,
    counter_text,
    replace_once,
    signed_bytes,
    without_declaration,
)
from vectors.catalogue.model import POSITIVE, Builder, SignedFields, Vector, VectorContext
from vectors.catalogue.tooling import (
    SIGNXML_FORM,
    RequestFields,
    SignatureStyle,
    request_tree,
    resign,
    sign,
    the_signature,
    to_bytes,
)


def gateway_signer(context: VectorContext) -> bytes:
    """Signed by :func:`gateway.signing.sign_tree` itself (random ECDSA: bytes differ per run)."""
    key = SigningKey(context.signer.private_key, context.signer.certificate)
    return gateway_to_bytes(sign_tree(request_tree(context.request), key))


def duis_form(context: VectorContext) -> bytes:
    return signed_bytes(context)


def signxml_form(context: VectorContext) -> bytes:
    return signed_bytes(context, style=SIGNXML_FORM)


def _styled(style: SignatureStyle, **options: object) -> Builder:
    def build(context: VectorContext) -> bytes:
        return signed_bytes(context, style=style, **options)

    return build


def _issuer_name_written(template: str) -> Builder:
    """X509IssuerName as ``template`` with the CA name (``{name}``, ``{lower}``) filled in."""

    def build(context: VectorContext) -> bytes:
        text = template.format(name=context.ca.name, lower=context.ca.name.lower())
        return signed_bytes(context, style=SignatureStyle(issuer_name=text))

    return build


def _sequence_fields(context: VectorContext) -> RequestFields:
    return dataclasses.replace(
        context.request,
        counter=context.request.counter + 1,
        first_in_sequence=False,
        preceding_request_id=context.request.request_id,
    )


def sequenced(context: VectorContext) -> bytes:
    return signed_bytes(context, fields=_sequence_fields(context))


def _max_counter_fields(context: VectorContext) -> RequestFields:
    return dataclasses.replace(context.request, counter=(1 << 64) - 1)


def max_counter(context: VectorContext) -> bytes:
    return signed_bytes(context, fields=_max_counter_fields(context))


def _prepayment_fields(context: VectorContext) -> RequestFields:
    return dataclasses.replace(context.request, payment_mode="Prepayment")


def prepayment(context: VectorContext) -> bytes:
    return signed_bytes(context, fields=_prepayment_fields(context))


def utf8_bom(context: VectorContext) -> bytes:
    return b"\xef\xbb\xbf" + signed_bytes(context)


def no_declaration(context: VectorContext) -> bytes:
    return without_declaration(signed_bytes(context))


def double_quoted_declaration(context: VectorContext) -> bytes:
    body = without_declaration(signed_bytes(context))
    return b'<?xml version="1.0" encoding="utf-8" standalone="yes"?>\r\n' + body


def trailing_newline(context: VectorContext) -> bytes:
    return signed_bytes(context) + b"\r\n"


def pretty_printed(context: VectorContext) -> bytes:
    """Indented throughout, signed as indented (whitespace in the content is signed content)."""
    root = request_tree(context.request)
    etree.indent(root)
    sign(root, context.signer)
    signature = the_signature(root)
    etree.indent(signature, level=1)
    resign(signature, context.signer)
    return to_bytes(root)


def character_reference(context: VectorContext) -> bytes:
    counter = str(context.request.counter)
    escaped = f":&#x{ord(counter[0]):X};{counter[1:]}<".encode()
    return replace_once(signed_bytes(context), counter_text(context), escaped)


def dcc_boxed_layout(context: VectorContext) -> bytes:
    """As DCC Boxed writes it: root binds XMLDSig to ``ns3``, the signature declares ``ds`` itself,
    issuer 'CN=<CA>,OU=07', base64 wrapped with '&#13;' and a space."""
    style = SignatureStyle(issuer_name=f"CN={context.ca.name},OU=07", wrap_base64=True, base64_line_end="\r ")
    return signed_bytes(context, style=style, root_ds_prefix="ns3")


def redundant_ds_declarations(context: VectorContext) -> bytes:
    """``xmlns:ds`` repeated on SignedInfo and KeyInfo: superfluous, so C14N drops it."""
    declaration = b' xmlns:ds="' + DS.encode() + b'"'
    data = signed_bytes(context)
    for tag in (b"<ds:SignedInfo", b"<ds:KeyInfo"):
        data = replace_once(data, tag + b">", tag + declaration + b">")
    return data


def note_comment_between_elements(context: VectorContext) -> bytes:
    """A ``<!-- NOTE … -->`` between Header elements, as six real DUIS templates keep it once DCC Boxed's
    tool has signed them: C14N without comments leaves it out of the signed content."""
    return replace_once(signed_bytes(context), b"<sr:Body>", b"<!-- NOTE: as in the RTDS templates --><sr:Body>")


def lowercase_hex_request_id(context: VectorContext) -> bytes:
    def edit(root: etree._Element) -> None:
        field = root.find("{http://www.dccinterface.co.uk/ServiceUserGateway}Header")[0]
        field.text = (field.text or "").lower()

    return signed_bytes(context, edit=edit)


def _positive(
    id: str,
    description: str,
    reference: str,
    build: Builder,
    *,
    signed: SignedFields | None = None,
    known_issue: str | None = None,
) -> Vector:
    return Vector(id, POSITIVE, description, reference, build, None, signed=signed, known_issue=known_issue)


_WRAPPED = SignatureStyle(wrap_base64=True)

POSITIVE_VECTORS: tuple[Vector, ...] = (
    _positive(
        "duis-form-gateway-signer",
        "The DUIS form exactly as gateway.signing.sign_tree writes it (enveloped-signature only; reference "
        "over inclusive C14N 1.0).",
        f"{SPEC4}; DUIS templates; DCC Boxed",
        gateway_signer,
    ),
    _positive(
        "duis-form",
        "The DUIS form written by the vector tooling (deterministic ECDSA).",
        f"{SPEC4}; {XMLDSIG} §4.4.3.2",
        duis_form,
    ),
    _positive(
        "signxml-form",
        "The signxml form: enveloped-signature + exc-c14n transforms, reference over exclusive C14N.",
        f"{SPEC4} (as signxml writes it); Exclusive XML Canonicalization 1.0",
        signxml_form,
    ),
    _positive(
        "base64-wrapped-cr-lf",
        "DigestValue and SignatureValue broken into 76-character lines ending '&#13;\\n', as DCC Boxed emits.",
        f"{SPEC4} (whitespace inside base64 accepted); RFC 2045 §6.8",
        _styled(_WRAPPED),
    ),
    _positive(
        "base64-wrapped-cr-lf-signxml-form",
        "The signxml form with wrapped base64 values.",
        SPEC4,
        _styled(SignatureStyle(exclusive=True, wrap_base64=True)),
    ),
    _positive(
        "sr-prefix-s",
        "The DUIS namespace bound to 's:' instead of 'sr:'.",
        "Namespaces in XML 1.0 §3 (prefixes are not significant)",
        _styled(SignatureStyle(), sr_prefix="s"),
    ),
    _positive(
        "sr-default-namespace",
        "The DUIS namespace as the default namespace (no prefix).",
        "Namespaces in XML 1.0 §6.2",
        _styled(SignatureStyle(), sr_prefix=None),
    ),
    _positive(
        "sr-bound-to-prefix-ds",
        "The DUIS namespace bound to the prefix 'ds' on the root, XMLDSig rebinding 'ds' on the signature: "
        "legal, and confusing to anything that matches prefixes instead of namespaces.",
        "Namespaces in XML 1.0 §6.1 (scoping); STYLE.md (never match by prefix or local name)",
        _styled(SignatureStyle(), sr_prefix="ds", root_ds_prefix=None),
    ),
    _positive(
        "ds-default-namespace",
        'ds:Signature written as <Signature xmlns="…xmldsig#"> (no ds prefix anywhere).',
        "Namespaces in XML 1.0 §6.2; signxml writes ds:, xmlsec1 keeps the template's choice",
        _styled(SignatureStyle(ds_prefix=None), root_ds_prefix=None),
    ),
    _positive(
        "ds-prefix-dsig",
        "The XMLDSig namespace bound to 'dsig:' on the signature.",
        "Namespaces in XML 1.0 §3",
        _styled(SignatureStyle(ds_prefix="dsig"), root_ds_prefix=None),
    ),
    _positive(
        "ds-prefix-dsig-signxml-form",
        "The signxml form with the XMLDSig namespace bound to 'dsig:'.",
        "Namespaces in XML 1.0 §3",
        _styled(SignatureStyle(exclusive=True, ds_prefix="dsig"), root_ds_prefix=None),
    ),
    _positive(
        "note-comment-between-elements",
        "A comment standing alone between two elements (as the real DUIS templates carry NOTE comments): not "
        "signed content, accepted and removed before anything reads the request.",
        f"{XMLDSIG} §4.4.3.3 (the reference is canonicalised without comments); DUIS templates; DCC Boxed",
        note_comment_between_elements,
    ),
    _positive(
        "dcc-boxed-layout",
        "The layout of the real DCC Boxed responses: XMLDSig bound to 'ns3' on the root and to 'ds' on the "
        "signature, 'CN=<CA>,OU=07', SignatureValue wrapped with '&#13; '.",
        "../shared/duis/signed (DCC Boxed-signed responses); SPEC §4 (interop)",
        dcc_boxed_layout,
    ),
    _positive(
        "ds-redundant-declarations-inside",
        "xmlns:ds repeated on ds:SignedInfo and ds:KeyInfo (as libraries that build SignedInfo separately "
        "write it): superfluous declarations vanish in C14N, so the canonical shape is unchanged.",
        "Canonical XML 1.0 §2.3 (superfluous namespace declarations); Exclusive XML Canonicalization 1.0 §3",
        redundant_ds_declarations,
    ),
    _positive(
        "issuer-name-spaces-and-rdn-order",
        "X509IssuerName 'OU=07, CN=<CA>': a space after the comma and the RDNs in the other order.",
        f"{SPEC4} (compared as an X.509 name: 'CN=Z1,OU=07' and 'OU=07, CN=Z1' match)",
        _issuer_name_written("OU=07, CN={name}"),
    ),
    _positive(
        "issuer-name-case-and-double-space",
        "X509IssuerName 'cn=<ca>,  ou=07': lower-case types and value, two spaces.",
        f"{SPEC4}; X.520 caseIgnoreMatch",
        _issuer_name_written("cn={lower},  ou=07"),
    ),
    _positive(
        "first-in-sequence-and-preceding-request",
        "A request with FirstInSequence=false and PrecedingServiceRequestID (optional header fields).",
        "DOMAIN.md 'DUIS messages' (Request Header)",
        sequenced,
        signed=_sequence_fields,
    ),
    _positive(
        "prepayment-body",
        "SR 1.6 to Prepayment with its three settings.",
        "DOMAIN.md 'DUIS messages' (SR 1.6 body)",
        prepayment,
        signed=_prepayment_fields,
    ),
    _positive(
        "counter-uint64-max",
        "RequestID counter 18446744073709551615 (2^64 − 1).",
        "DOMAIN.md 'DUIS messages' (counter uint64)",
        max_counter,
        signed=_max_counter_fields,
    ),
    _positive(
        "utf8-bom",
        "The signed request preceded by a UTF-8 byte-order mark.",
        f"{XML} §4.3.3, Appendix F",
        utf8_bom,
    ),
    _positive(
        "no-xml-declaration",
        "The signed request without an XML declaration.",
        f"{XML} §2.8 (the declaration is optional)",
        no_declaration,
    ),
    _positive(
        "declaration-double-quotes-standalone",
        "Declaration with double quotes, lower-case 'utf-8', standalone='yes' and a CR LF after it.",
        f"{XML} §2.8, §2.9",
        double_quoted_declaration,
    ),
    _positive(
        "trailing-newline-after-root",
        "CR LF after the root's end tag (outside the document element: not signed content).",
        f"{XML} §2.1 (Misc); Canonical XML 1.0 §2.1",
        trailing_newline,
    ),
    _positive(
        "pretty-printed",
        "Indented throughout (signed as indented), including inside ds:Signature.",
        f"{XMLDSIG} §4.4.3.2; Canonical XML 1.0 §1.1",
        pretty_printed,
    ),
    _positive(
        "character-reference-in-text",
        "The counter's first digit written as a character reference: the same character, the same canonical form.",
        f"{XML} §4.1 (character references); Canonical XML 1.0 §1.1",
        character_reference,
    ),
    _positive(
        "request-id-lower-case-hex",
        "RequestID EUI-64s in lower-case hex, signed that way (the official DUIS XSD allows [A-Fa-f0-9]).",
        "DUIS 5.4 XSD sr:EUI; schemas/dcc-gateway-duis.xsd MessageId",
        lowercase_hex_request_id,
    ),
)
