"""One hardened XML parser: bytes in, a bounded lxml tree out, or VerificationError.

Order matters: cheap byte-level refusals first (size, encoding, any ``<!``
markup but comments: DTD, entities, CDATA), then libxml2 with every network,
DTD and entity feature off, then the structural limits (depth, width,
attributes, namespace declarations) *before* anything canonicalises the tree,
because exclusive C14N is quadratic in attributes per element.
DUIS documents carry none of the refused constructs, so refusing them costs
no real traffic and removes whole classes of attack (XXE, entity bombs).

Comments. The real DUIS templates (RTDS) carry comments between elements
(``<!-- NOTE: … -->`` in Header and Body), and DCC Boxed's signing tool signs
them as they are, so a harness sends them. The signature covers the document
canonicalised *without* comments, so a comment is never signed content. One
that stands alone between elements (only whitespace on either side) carries
nothing and is accepted; it is then removed from the tree every later stage
reads, which is therefore exactly the signed content. Refused: a comment
beside text (``…:10<!---->02``: C14N signs ``…:1002`` while a naive reader of
the first text node sees ``…:10``, the SAML comment-truncation attack), one
outside the root element, and one inside ``ds:Signature`` (whose shape the
profile fixes exactly).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lxml import etree

from gateway.checks import Check, VerificationError
from gateway.namespaces import DS

_SIGNATURE = f"{{{DS}}}Signature"


@dataclass(frozen=True, slots=True)
class Limits:
    """Ingress limits; all are enforced before any canonicalisation."""

    max_body_bytes: int = 256 * 1024
    """The largest DUIS template is ~26 KB; a quarter of a megabyte leaves room."""
    max_depth: int = 32
    """Nesting depth of elements, root at depth 1 (DUIS needs about 12)."""
    max_elements: int = 5000
    """Elements in the whole document."""
    max_attributes_per_element: int = 16
    """Attributes on one element (c14n cost is quadratic in this)."""
    max_namespace_declarations: int = 32
    """``xmlns`` occurrences in the whole document (c14n cost grows with them).

    Counted on the bytes, so the text "xmlns" in content counts too: conservative."""

    def __post_init__(self) -> None:
        # libxml2 refuses nesting beyond 256 by itself; the depth check is an XPath
        # with one step per level, so an unbounded value would also break it.
        if not 1 <= self.max_depth <= 255:
            raise ValueError("max_depth must be between 1 and 255")
        if self.max_body_bytes < 1 or self.max_elements < 1:
            raise ValueError("max_body_bytes and max_elements must be positive")
        if self.max_attributes_per_element < 0 or self.max_namespace_declarations < 0:
            raise ValueError("attribute and namespace limits cannot be negative")


# An XML declaration, if present, must be first and name UTF-8 (or nothing).
_XML_DECLARATION = re.compile(
    rb"<\?xml\s+version\s*=\s*[\"']1\.[0-9]+[\"']"
    rb"(?:\s+encoding\s*=\s*[\"'](?P<enc>[A-Za-z0-9._-]+)[\"'])?"
    rb"(?:\s+standalone\s*=\s*[\"'](?:yes|no)[\"'])?\s*\?>"
)
_UTF8_NAMES = frozenset({b"utf-8", b"utf8"})
_NON_UTF8_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff", b"\xff\xfe\x00\x00")


def _new_parser(*, remove_comments: bool = False) -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_blank_text=False,
        remove_comments=remove_comments,
        remove_pis=False,
        strip_cdata=False,
        collect_ids=False,
        recover=False,
    )


class HardenedParser:
    """Parses untrusted bytes under :class:`Limits`. Immutable after construction.

    lxml parsers are not safe to share across threads, so each thread that
    parses (the event loop, or a crypto worker) should own its instance.
    """

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._parser = _new_parser()
        self._parser_without_comments = _new_parser(remove_comments=True)
        depth = self.limits.max_depth
        too_deep = "/" + "/*" * (depth + 1)
        too_many_attributes = f"//*[count(@*) > {self.limits.max_attributes_per_element}]"
        self._too_deep = etree.XPath(f"boolean({too_deep})")
        self._count_elements = etree.XPath("count(//*)")
        self._too_many_attributes = etree.XPath(f"boolean({too_many_attributes})")
        # One XPath evaluation when the byte counts do not bound the tree; the slow path names the failure.
        self._any_violation = etree.XPath(
            f"boolean({too_deep} | {too_many_attributes}) or count(//*) > {self.limits.max_elements}"
        )

    def parse(self, data: bytes) -> etree._ElementTree:
        """Returns the parsed document or raises VerificationError."""
        if not isinstance(data, bytes):
            raise TypeError("parse() takes the raw bytes as received")
        self._check_bytes(data)
        try:
            root = etree.fromstring(data, self._parser)
        except etree.XMLSyntaxError as exc:
            raise _syntax_error(exc) from exc
        tree = root.getroottree()
        if self._check_tree(tree, data):
            # Every comment stands alone between elements (checked): the same bytes without them
            # are the signed content, whitespace and all.
            tree = etree.fromstring(data, self._parser_without_comments).getroottree()
        return tree

    # --- byte level -------------------------------------------------------

    def _check_bytes(self, data: bytes) -> None:
        if len(data) > self.limits.max_body_bytes:
            raise VerificationError(
                Check.SIZE_LIMIT, f"document is {len(data)} bytes; the limit is {self.limits.max_body_bytes}"
            )
        _check_encoding(data)
        _refuse_markup(data)
        declarations = data.count(b"xmlns")
        if declarations > self.limits.max_namespace_declarations:
            raise VerificationError(
                Check.NAMESPACE_LIMIT,
                f"{declarations} namespace declarations; the limit is {self.limits.max_namespace_declarations}",
            )

    # --- tree level -------------------------------------------------------

    def _check_tree(self, tree: etree._ElementTree, data: bytes) -> bool:
        """Refuses what the tree shows; returns whether it holds (acceptable) comments."""
        info = tree.docinfo
        if info.internalDTD is not None:
            raise VerificationError(Check.DTD, "document type declarations are not accepted")
        encoding = (info.encoding or "").upper()
        if encoding not in ("UTF-8", "UTF8"):
            raise VerificationError(Check.ENCODING, f"document decoded as {encoding or 'unknown'}: only UTF-8 is accepted")
        root = tree.getroot()
        outside = root.getprevious() if root.getprevious() is not None else root.getnext()
        if outside is not None:
            if isinstance(outside, etree._Comment):
                raise VerificationError(Check.COMMENT, "comments outside the root element are not accepted")
            # Defence in depth: the byte scan already refused PIs in UTF-8 input.
            raise VerificationError(Check.PROCESSING_INSTRUCTION, "processing instructions are not accepted")
        # One walk in C for the common case of neither (lxml filters node types without proxies).
        has_comments = next(root.iter(etree.Comment, etree.ProcessingInstruction), None) is not None
        if has_comments:
            if next(root.iter(etree.ProcessingInstruction), None) is not None:
                raise VerificationError(Check.PROCESSING_INSTRUCTION, "processing instructions are not accepted")
            _check_comments(root)
        # Bounds from the bytes (UTF-8, checked above; no CDATA or PI): every
        # attribute needs an "=", every "<" opens a tag (or is the XML
        # declaration or a comment), every end tag starts "</". When the counts
        # cannot exceed the limits, the tree needs no walk at all: nesting cannot
        # be deeper than the number of start tags. A comment's text only adds to
        # the "=" and the "<" not followed by "/", so it can only send a
        # document to the walk, never past it.
        limits = self.limits
        tags = data.count(b"<")
        if data.count(b"=") <= limits.max_attributes_per_element and tags <= limits.max_elements:
            if tags - data.count(b"</") > limits.max_depth and self._too_deep(tree):
                self._name_violation(tree)
        elif self._any_violation(tree):
            self._name_violation(tree)
        return has_comments

    def _name_violation(self, tree: etree._ElementTree) -> None:
        """The slow path: says which limit the one-shot XPath found broken."""
        if self._too_deep(tree):
            raise VerificationError(Check.DEPTH_LIMIT, f"elements nest deeper than {self.limits.max_depth}")
        if self._too_many_attributes(tree):
            raise VerificationError(
                Check.ATTRIBUTE_LIMIT,
                f"an element has more than {self.limits.max_attributes_per_element} attributes",
            )
        elements = int(self._count_elements(tree))
        raise VerificationError(Check.ELEMENT_LIMIT, f"{elements} elements; the limit is {self.limits.max_elements}")


def _check_comments(root: etree._Element) -> None:
    """Each comment stands alone between elements, outside ``ds:Signature`` (module docstring)."""
    for comment in root.iter(etree.Comment):
        previous = comment.getprevious()
        parent = comment.getparent()
        before = previous.tail if previous is not None else (parent.text if parent is not None else None)
        if not _blank(before) or not _blank(comment.tail):
            raise VerificationError(
                Check.COMMENT, "a comment beside text is not accepted: the signature covers the text as if it were absent"
            )
        if any(ancestor.tag == _SIGNATURE for ancestor in comment.iterancestors()):
            raise VerificationError(Check.COMMENT, "comments inside ds:Signature are not accepted")


def _blank(text: str | None) -> bool:
    return text is None or not text.strip(" \t\r\n")


def _check_encoding(data: bytes) -> None:
    """UTF-8 only. The byte-level refusals below read ASCII markup, which is sound only in UTF-8:
    UTF-16 or UTF-32 text without a BOM would hide ``<!--`` from them (hence the NUL check, and
    the parsed encoding is checked again after parsing)."""
    if data.startswith(_NON_UTF8_BOMS) or b"\x00" in data:
        raise VerificationError(Check.ENCODING, "only UTF-8 is accepted")
    offset = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    if data.startswith(b"<?xml", offset) and data[offset + 5 : offset + 6] not in (b" ", b"\t", b"\r", b"\n"):
        raise VerificationError(Check.PROCESSING_INSTRUCTION, "processing instructions are not accepted")
    if data.startswith(b"<?xml", offset):
        match = _XML_DECLARATION.match(data, offset)
        if match is None:
            raise VerificationError(Check.NOT_WELL_FORMED, "malformed XML declaration")
        encoding = match.group("enc")
        if encoding is not None and encoding.lower() not in _UTF8_NAMES:
            raise VerificationError(Check.ENCODING, f"encoding {encoding.decode()!r}: only UTF-8 is accepted")
        offset = match.end()
    # Looking for the single byte first is a memchr; "?" is rare in DUIS documents.
    if data.find(b"?", offset) >= 0 and data.find(b"<?", offset) >= 0:
        raise VerificationError(Check.PROCESSING_INSTRUCTION, "processing instructions are not accepted")
    # Invalid UTF-8 is refused by libxml2 itself (see _syntax_error).


def _refuse_markup(data: bytes) -> None:
    """DUIS uses no ``<!`` markup but comments (whose place the tree check judges); names the first
    other kind found. A comment's own text is skipped."""
    if b"!" not in data:  # a memchr: most documents hold no "!" at all
        return
    position = data.find(b"<!")
    while position >= 0:
        if data.startswith(b"<!--", position):
            end = data.find(b"-->", position + 4)
            if end < 0:
                return  # unterminated: libxml2 names it not well-formed
            position = data.find(b"<!", end + 3)
            continue
        _refuse_declaration(data[position : position + 9].upper())


def _refuse_declaration(head: bytes) -> None:
    if head.startswith(b"<![CDATA["):
        raise VerificationError(Check.CDATA, "CDATA sections are not accepted")
    if head.startswith(b"<!DOCTYPE"):
        raise VerificationError(Check.DTD, "document type declarations are not accepted")
    if head.startswith(b"<!ENTITY"):
        raise VerificationError(Check.ENTITY, "entity declarations are not accepted")
    raise VerificationError(Check.DTD, "markup declarations are not accepted")


def _syntax_error(exc: etree.XMLSyntaxError) -> VerificationError:
    message = str(getattr(exc, "msg", None) or exc).strip()
    line = getattr(exc, "lineno", None)
    reason = f"line {line}: {message}" if line else message
    if "Entity" in message and "not defined" in message:
        return VerificationError(Check.ENTITY, f"undefined entity reference ({reason})")
    if any(text in message for text in ("not proper UTF-8", "Invalid bytes in character encoding", "labelled UTF-16")):
        return VerificationError(Check.ENCODING, f"not valid UTF-8 ({reason})")
    if "Excessive depth" in message:
        return VerificationError(Check.DEPTH_LIMIT, reason)
    return VerificationError(Check.NOT_WELL_FORMED, reason)
