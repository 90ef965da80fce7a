"""Starting points for builders: a correctly signed request, and exact byte edits.

Every edit here refuses to be a no-op (``replace_once`` raises unless its
target occurs exactly once), so a vector cannot silently degrade into the
unmodified, valid request.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from lxml import etree

from gateway.smki.repository import SmkiRepository
from vectors.catalogue.model import Prepare, VectorContext
from vectors.catalogue.tooling import DUIS_FORM, RequestFields, SignatureStyle, request_tree, sign, to_bytes
from pki import IssuedCertificate

# References used by many vectors.
PITFALLS = "DOMAIN.md 'Known XML-signature pitfalls'"
SPEC4 = "SPEC §4 (XMLDSig profile)"
SPEC5 = "SPEC §5 (pre-authentication failures: 400/401/413/415)"
XMLDSIG = "W3C XML Signature Syntax and Processing 1.1"
BEST_PRACTICES = "W3C XML Signature Best Practices (W3C Note, 2013)"
XSW = "Somorovsky et al., 'On Breaking SAML: Be Whoever You Want to Be', USENIX Security 2012"
XML = "W3C XML 1.0 (Fifth Edition)"
RFC5280 = "RFC 5280"


def signed_tree(
    context: VectorContext,
    *,
    fields: RequestFields | None = None,
    style: SignatureStyle = DUIS_FORM,
    key: IssuedCertificate | None = None,
    sr_prefix: str | None = "sr",
    root_ds_prefix: str | None = "ds",
    edit: Callable[[etree._Element], None] | None = None,
) -> etree._Element:
    """A signed request tree; ``edit`` changes the unsigned tree before it is signed.

    ``root_ds_prefix`` binds the XMLDSig namespace on the root (``ds`` as DUIS templates do).
    """
    root = request_tree(fields or context.request, sr_prefix=sr_prefix, root_ds_prefix=root_ds_prefix)
    if edit is not None:
        edit(root)
    return sign(root, key or context.signer, style)


def signed_bytes(context: VectorContext, **options: object) -> bytes:
    return to_bytes(signed_tree(context, **options))  # type: ignore[arg-type]


def reparsed(data: bytes) -> etree._Element:
    """Bytes edited as text, back to a tree (so SignedInfo can be re-signed)."""
    return etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))


def evil_fields(context: VectorContext) -> RequestFields:
    """What an attacker wants executed instead: Prepayment, under a fresh counter."""
    return dataclasses.replace(context.request, payment_mode="Prepayment", counter=context.request.counter + 1)


def replace_once(data: bytes, old: bytes, new: bytes) -> bytes:
    count = data.count(old)
    if count != 1:
        raise ValueError(f"expected exactly one {old!r} in the document, found {count}")
    return data.replace(old, new)


def declaration_end(data: bytes) -> int:
    """The offset just after the XML declaration (which :func:`to_bytes` always writes)."""
    if not data.startswith(b"<?xml"):
        raise ValueError("the document has no XML declaration")
    return data.index(b"?>") + 2


def after_declaration(data: bytes, inserted: bytes) -> bytes:
    end = declaration_end(data)
    return data[:end] + inserted + data[end:]


def without_declaration(data: bytes) -> bytes:
    return data[declaration_end(data) :].lstrip(b"\n")


def counter_text(context: VectorContext) -> bytes:
    """The unique bytes ``:<counter><`` that end the RequestID text."""
    return f":{context.request.counter}<".encode()


def add_certificates(*names: str) -> Prepare:
    """A ``prepare`` step that imports the named extra certificates."""

    def prepare(context: VectorContext, repository: SmkiRepository) -> None:
        for name in names:
            repository.add_certificate(context.certificate(name).certificate)

    return prepare
