"""The hardened parser: every limit exactly at its bound (accepted) and one step beyond (refused),
and each refused construct named by its check id.

Small Limits keep the documents readable; the default limits are checked
once each so that a changed default cannot go unnoticed.
"""

from __future__ import annotations

import pytest

from gateway.checks import Check, VerificationError
from gateway.parse import HardenedParser, Limits


def refused(parser: HardenedParser, data: bytes) -> str:
    with pytest.raises(VerificationError) as error:
        parser.parse(data)
    return error.value.check_id


def element(depth: int) -> bytes:
    """``depth`` nested elements (the root is at depth 1)."""
    return b"<e>" * depth + b"</e>" * depth


def with_children(count: int) -> bytes:
    """A root and ``count - 1`` empty children: ``count`` elements in all."""
    return b"<r>" + b"<c/>" * (count - 1) + b"</r>"


def with_attributes(count: int) -> bytes:
    attributes = b"".join(b' a%d="v"' % index for index in range(count))
    return b"<r" + attributes + b"/>"


def with_namespaces(count: int) -> bytes:
    declarations = b"".join(b' xmlns:n%d="urn:n%d"' % (index, index) for index in range(count))
    return b"<r" + declarations + b"/>"


def of_size(size: int) -> bytes:
    shell = b"<r></r>"
    return b"<r>" + b"x" * (size - len(shell)) + b"</r>"


# --- size ----------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [64, 256 * 1024])
def test_size_at_limit_is_accepted_and_one_more_byte_refused(limit: int) -> None:
    parser = HardenedParser(Limits(max_body_bytes=limit))
    assert len(of_size(limit)) == limit
    assert parser.parse(of_size(limit)).getroot().tag == "r"
    assert refused(parser, of_size(limit + 1)) == Check.SIZE_LIMIT.check_id


def test_default_size_limit_is_256_kib() -> None:
    parser = HardenedParser()
    parser.parse(of_size(256 * 1024))
    assert refused(parser, of_size(256 * 1024 + 1)) == Check.SIZE_LIMIT.check_id


def test_size_is_checked_before_anything_else() -> None:
    """An oversize document is refused as such even when it is also malformed."""
    parser = HardenedParser(Limits(max_body_bytes=16))
    assert refused(parser, b"<!DOCTYPE r><r>" + b"x" * 16) == Check.SIZE_LIMIT.check_id


# --- depth ---------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 5, 32])
def test_depth_at_limit_is_accepted_and_one_deeper_refused(limit: int) -> None:
    parser = HardenedParser(Limits(max_depth=limit))
    parser.parse(element(limit))
    assert refused(parser, element(limit + 1)) == Check.DEPTH_LIMIT.check_id


def test_default_depth_limit_is_32() -> None:
    parser = HardenedParser()
    parser.parse(element(32))
    assert refused(parser, element(33)) == Check.DEPTH_LIMIT.check_id


def test_libxml2_depth_ceiling_is_reported_as_depth_limit() -> None:
    """libxml2 stops at depth 256 without huge_tree, whatever Limits says; that too is depth-limit."""
    parser = HardenedParser(Limits(max_depth=255, max_elements=10_000))
    parser.parse(element(255))
    assert refused(parser, element(300)) == Check.DEPTH_LIMIT.check_id


@pytest.mark.parametrize("depth", [0, 256, 5000])
def test_a_depth_limit_beyond_libxml2s_is_refused(depth: int) -> None:
    """libxml2 stops at 256 anyway, and the depth XPath has one step per level."""
    with pytest.raises(ValueError, match="max_depth"):
        Limits(max_depth=depth)


def test_depth_is_checked_even_when_the_byte_counts_are_small() -> None:
    """The byte-count shortcut (few '<' and '=') must not skip the depth check."""
    parser = HardenedParser(Limits(max_depth=3, max_elements=100, max_attributes_per_element=100))
    assert refused(parser, element(4)) == Check.DEPTH_LIMIT.check_id


# --- elements ------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 10, 5000])
def test_elements_at_limit_are_accepted_and_one_more_refused(limit: int) -> None:
    parser = HardenedParser(Limits(max_elements=limit))
    parser.parse(with_children(limit))
    assert refused(parser, with_children(limit + 1)) == Check.ELEMENT_LIMIT.check_id


def test_default_element_limit_is_5000() -> None:
    parser = HardenedParser()
    parser.parse(with_children(5000))
    assert refused(parser, with_children(5001)) == Check.ELEMENT_LIMIT.check_id


def test_text_with_angle_brackets_escaped_does_not_count_as_elements() -> None:
    parser = HardenedParser(Limits(max_elements=2))
    root = parser.parse(b"<r><c>&lt;a&gt;&lt;b&gt;&lt;c&gt;</c></r>").getroot()
    assert [element.tag for element in root.iter()] == ["r", "c"]
    assert root[0].text == "<a><b><c>"


# --- attributes ----------------------------------------------------------------------


@pytest.mark.parametrize("limit", [0, 3, 16])
def test_attributes_at_limit_are_accepted_and_one_more_refused(limit: int) -> None:
    parser = HardenedParser(Limits(max_attributes_per_element=limit))
    parser.parse(with_attributes(limit))
    assert refused(parser, with_attributes(limit + 1)) == Check.ATTRIBUTE_LIMIT.check_id


def test_attribute_limit_is_per_element() -> None:
    """Many attributes spread over elements are fine; the cost that matters is per element."""
    parser = HardenedParser(Limits(max_attributes_per_element=2))
    parser.parse(b'<r a="1" b="2"><c a="1" b="2"/><c a="1" b="2"/></r>')
    assert refused(parser, b'<r a="1" b="2"><c a="1" b="2" d="3"/></r>') == Check.ATTRIBUTE_LIMIT.check_id


def test_equals_signs_in_text_do_not_count_as_attributes() -> None:
    parser = HardenedParser(Limits(max_attributes_per_element=1))
    root = parser.parse(b'<r a="1">a=b=c=d=e</r>').getroot()
    assert (dict(root.attrib), root.text) == ({"a": "1"}, "a=b=c=d=e")


def test_namespace_declarations_are_not_attributes() -> None:
    parser = HardenedParser(Limits(max_attributes_per_element=1, max_namespace_declarations=8))
    root = parser.parse(b'<r xmlns="urn:d" xmlns:a="urn:a" xmlns:b="urn:b" a:x="1"/>').getroot()
    assert dict(root.attrib) == {"{urn:a}x": "1"}
    assert root.nsmap == {None: "urn:d", "a": "urn:a", "b": "urn:b"}


# --- namespace declarations --------------------------------------------------------------


@pytest.mark.parametrize("limit", [0, 3, 32])
def test_namespace_declarations_at_limit_are_accepted_and_one_more_refused(limit: int) -> None:
    parser = HardenedParser(Limits(max_namespace_declarations=limit))
    parser.parse(with_namespaces(limit))
    assert refused(parser, with_namespaces(limit + 1)) == Check.NAMESPACE_LIMIT.check_id


def test_namespace_declarations_are_counted_over_the_whole_document() -> None:
    parser = HardenedParser(Limits(max_namespace_declarations=2))
    parser.parse(b'<r xmlns:a="urn:a"><c xmlns:b="urn:b"/></r>')
    document = b'<r xmlns:a="urn:a"><c xmlns:b="urn:b"/><c xmlns="urn:c"/></r>'
    assert refused(parser, document) == Check.NAMESPACE_LIMIT.check_id


def test_the_word_xmlns_in_text_counts_too() -> None:
    """The namespace limit counts "xmlns" on the bytes (cheap, conservative): text mentioning it counts."""
    parser = HardenedParser(Limits(max_namespace_declarations=1))
    assert refused(parser, b"<r>xmlns xmlns</r>") == Check.NAMESPACE_LIMIT.check_id


# --- encodings -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "text"),
    [
        pytest.param(b"<r/>", None, id="bare"),
        pytest.param(b'<?xml version="1.0"?><r/>', None, id="declaration"),
        pytest.param(b"<?xml version='1.0' encoding='UTF-8'?><r>x</r>", "x", id="utf-8"),
        pytest.param(b'<?xml version="1.0" encoding="utf8" standalone="no"?><r/>', None, id="utf8-standalone"),
        pytest.param(b'\xef\xbb\xbf<?xml version="1.0" encoding="UTF-8"?><r>x</r>', "x", id="utf-8-bom"),
        pytest.param("<r>caf\u00e9 \u20ac</r>".encode(), "caf\u00e9 \u20ac", id="non-ascii"),
    ],
)
def test_utf8_documents_are_accepted(document: bytes, text: str | None) -> None:
    """Accepted, and read as UTF-8: the root and its text come out as written (the BOM is not text)."""
    root = HardenedParser().parse(document).getroot()
    assert (root.tag, root.text) == ("r", text)


@pytest.mark.parametrize(
    "document",
    [
        b'<?xml version="1.0" encoding="ISO-8859-1"?><r>\xe9</r>',
        b'<?xml version="1.0" encoding="UTF-16"?><r/>',
        b'<?xml version="1.0" encoding="US-ASCII"?><r/>',
        '<?xml version="1.0" encoding="UTF-16"?><r/>'.encode("utf-16"),
        b"\xfe\xff" + '<?xml version="1.0" encoding="UTF-16"?><r/>'.encode("utf-16-be"),
        '<?xml version="1.0" encoding="UTF-32"?><r/>'.encode("utf-32"),
    ],
    ids=["latin-1", "utf-16-declared", "us-ascii", "utf-16-bom", "utf-16be-bom", "utf-32-bom"],
)
def test_other_encodings_are_refused(document: bytes) -> None:
    assert refused(HardenedParser(), document) == Check.ENCODING.check_id


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be", "utf-32-le"])
def test_utf16_and_utf32_without_bom_are_refused(codec: str) -> None:
    document = '<?xml version="1.0" encoding="UTF-16"?><r/>'.encode(codec)
    assert refused(HardenedParser(), document) == Check.ENCODING.check_id


def test_comment_in_utf16_without_bom_is_refused() -> None:
    document = '<?xml version="1.0" encoding="UTF-16"?><r>10<!---->00</r>'.encode("utf-16-le")
    assert refused(HardenedParser(), document) in {Check.ENCODING.check_id, Check.COMMENT.check_id}


@pytest.mark.parametrize(
    "raw", [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82"], ids=["ff", "overlong", "surrogate", "truncated"]
)
def test_invalid_utf8_is_an_encoding_error(raw: bytes) -> None:
    assert refused(HardenedParser(), b"<r>" + raw + b"</r>") == Check.ENCODING.check_id


def test_invalid_utf8_is_refused() -> None:
    """Whatever it is called, invalid UTF-8 never parses."""
    assert refused(HardenedParser(), b"<r>\xff</r>") in {Check.ENCODING.check_id, Check.NOT_WELL_FORMED.check_id}


# --- markup that DUIS never uses ----------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "check"),
    [
        (b"<!DOCTYPE r><r/>", Check.DTD),
        (b'<!DOCTYPE r [<!ENTITY e "x">]><r>&e;</r>', Check.DTD),
        (b'<!DOCTYPE r SYSTEM "file:///etc/passwd"><r/>', Check.DTD),
        (b'<!DOCTYPE r [<!ENTITY % p SYSTEM "http://x.example/"> %p;]><r/>', Check.DTD),
        (b"<!ATTLIST r a CDATA #IMPLIED><r/>", Check.DTD),
        (b'<!ENTITY e "x"><r/>', Check.ENTITY),
        (b"<r>&e;</r>", Check.ENTITY),
        (b"<!-- c --><r/>", Check.COMMENT),
        (b"<r>1<!---->2</r>", Check.COMMENT),
        (b"<r/><!-- c -->", Check.COMMENT),
        (b"<r><![CDATA[x]]></r>", Check.CDATA),
        (b"<r><?pi x?></r>", Check.PROCESSING_INSTRUCTION),
        (b'<?xml version="1.0"?><?pi x?><r/>', Check.PROCESSING_INSTRUCTION),
        (b"<r/><?pi x?>", Check.PROCESSING_INSTRUCTION),
        (b' <?xml version="1.0"?><r/>', Check.PROCESSING_INSTRUCTION),
    ],
    ids=[
        "doctype",
        "internal-entity",
        "external-dtd",
        "parameter-entity",
        "attlist",
        "entity-declaration",
        "undefined-entity",
        "comment-before",
        "comment-in-text",
        "comment-after",
        "cdata",
        "pi-in-element",
        "pi-after-declaration",
        "pi-after-root",
        "declaration-not-first",
    ],
)
def test_refused_markup_is_named(document: bytes, check: Check) -> None:
    assert refused(HardenedParser(), document) == check.check_id


def test_leading_processing_instruction_without_declaration_is_named() -> None:
    refused_as = refused(HardenedParser(), b'<?xml-stylesheet href="x"?><r/>')
    assert refused_as == Check.PROCESSING_INSTRUCTION.check_id


def test_predefined_entities_and_character_references_are_accepted() -> None:
    tree = HardenedParser().parse(b"<r>&lt;&amp;&gt;&quot;&apos;&#x31;&#50;</r>")
    assert tree.getroot().text == "<&>\"'12"


# --- not well-formed ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "document",
    [
        b"",
        b"<r>",
        b"<r></s>",
        b"<r/>trailing",
        b"<r/><r/>",
        b"<?xml version='1.0' encoding=UTF-8?><r/>",
        b"<r>&#0;</r>",
        b"<r a='1' a='2'/>",
        b"<p:r/>",
    ],
    ids=[
        "empty",
        "unclosed",
        "mismatched",
        "trailing-text",
        "two-roots",
        "bad-declaration",
        "nul-reference",
        "duplicate-attribute",
        "undeclared-prefix",
    ],
)
def test_not_well_formed_is_refused(document: bytes) -> None:
    assert refused(HardenedParser(), document) == Check.NOT_WELL_FORMED.check_id


def test_parse_takes_bytes_only() -> None:
    with pytest.raises(TypeError):
        HardenedParser().parse("<r/>")  # type: ignore[arg-type]


def test_a_parser_is_reusable_after_a_refusal() -> None:
    parser = HardenedParser()
    refused(parser, b"<r>")
    assert parser.parse(b"<r/>").getroot().tag == "r"
