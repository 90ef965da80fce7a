"""What verification returns: typed views built only from the signed tree.

Each object is created by the verifier after the digest and the ECDSA check
passed, and exposes only signed content: header fields and the body element
(or, for directives, the root's children before the signature). The
ds:Signature itself is unsigned and is never exposed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from lxml import etree

from gateway.checks import Check, VerificationError
from gateway.eui64 import Eui64
from gateway.namespaces import DIRECTIVE, SR, qname
from gateway.smki.certificate import SmkiCertificate

# The official RequestIDType admits lower-case hex; identifiers are normalised through Eui64.
# The eight "XX-" groups are written out: a repeated group costs the regex engine twice as much.
_HEX_BYTE = "[0-9A-Fa-f][0-9A-Fa-f]"
_EUI64_TEXT = _HEX_BYTE + ("-" + _HEX_BYTE) * 7
_ID = re.compile(rf"\A(?P<originator>{_EUI64_TEXT}):(?P<target>{_EUI64_TEXT}):(?P<counter>[0-9]{{1,20}})\Z")

REQUEST = qname(SR, "Request")
RESPONSE = qname(SR, "Response")
DIRECTIVE_ROOT = qname(DIRECTIVE, "Directive")
HEADER = qname(SR, "Header")
_SR_PREFIX = f"{{{SR}}}"
_SR_PREFIX_LENGTH = len(_SR_PREFIX)
_DIRECTIVE_ID = qname(DIRECTIVE, "DirectiveID")
BODY = qname(SR, "Body")


@dataclass(frozen=True, slots=True, order=True)
class MessageId:
    """A DUIS RequestID / ResponseID: ``originator:target:counter``."""

    originator: Eui64
    target: Eui64
    counter: int
    _text: str | None = field(default=None, init=False, compare=False, repr=False)
    """Its text once written: a request's ID is written into its audit records, its store rows,
    its answer and its log line."""

    @classmethod
    def parse(cls, text: str) -> MessageId:
        match = _ID.match(text.strip())
        if match is None:
            raise ValueError(f"not an originator:target:counter identifier: {text!r}")
        originator, target, counter_text = match.groups()
        counter = int(counter_text)
        if counter >= 1 << 64:
            raise ValueError("counter exceeds 64 bits")
        # The pattern already fixed each EUI-64's form; skip Eui64.parse's second regex.
        return cls(Eui64(int(originator.replace("-", ""), 16)), Eui64(int(target.replace("-", ""), 16)), counter)

    def swapped(self) -> MessageId:
        """The ResponseID for this RequestID: originator and target swapped, same counter."""
        return MessageId(self.target, self.originator, self.counter)

    def __str__(self) -> str:
        if self._text is None:
            object.__setattr__(self, "_text", f"{self.originator}:{self.target}:{self.counter}")
        return self._text  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class VerifiedRequest:
    """A DUIS Service Request whose signature and certificate checked out."""

    signer: SmkiCertificate
    request_id: MessageId
    command_variant: int
    service_reference: str
    service_reference_variant: str
    first_in_sequence: bool | None
    preceding_request_id: MessageId | None
    body: etree._Element
    """The single child of sr:Body."""

    @property
    def originator(self) -> Eui64:
        return self.request_id.originator

    @property
    def target(self) -> Eui64:
        return self.request_id.target


@dataclass(frozen=True, slots=True)
class VerifiedResponse:
    """A DUIS Response (e.g. signed by DCC Boxed) whose signature checked out."""

    signer: SmkiCertificate
    request_id: MessageId | None
    response_id: MessageId | None
    response_code: str
    body: etree._Element


@dataclass(frozen=True, slots=True)
class VerifiedDirective:
    """A gateway directive (SPEC §6) whose signature checked out."""

    signer: SmkiCertificate
    directive_id: MessageId
    content: tuple[etree._Element, ...]
    """The root's element children before ds:Signature, in document order."""
    root_attributes: tuple[tuple[str, str], ...]


VerifiedDocument = VerifiedRequest | VerifiedResponse | VerifiedDirective


def read_message_id(text: str | None, what: str) -> MessageId:
    try:
        return MessageId.parse(text or "")
    except ValueError as exc:
        raise VerificationError(Check.SCHEMA, f"{what}: {exc}") from exc


def signed_request(root: etree._Element, signer: SmkiCertificate) -> VerifiedRequest:
    header, body = _header_and_body(root)
    fields = _header_fields(header)
    preceding = fields.get("PrecedingServiceRequestID")
    first = fields.get("FirstInSequence")
    return VerifiedRequest(
        signer=signer,
        request_id=read_message_id(fields.get("RequestID"), "RequestID"),
        command_variant=int(fields.get("CommandVariant", "0")),
        service_reference=fields.get("ServiceReference", ""),
        service_reference_variant=fields.get("ServiceReferenceVariant", ""),
        first_in_sequence=None if first is None else first in ("true", "1"),
        preceding_request_id=None if preceding is None else read_message_id(preceding, "PrecedingServiceRequestID"),
        body=_only_child(body),
    )


def signed_response(root: etree._Element, signer: SmkiCertificate) -> VerifiedResponse:
    header, body = _header_and_body(root)
    fields = _header_fields(header)
    request_id = fields.get("RequestID")
    response_id = fields.get("ResponseID")
    return VerifiedResponse(
        signer=signer,
        request_id=None if request_id is None else read_message_id(request_id, "RequestID"),
        response_id=None if response_id is None else read_message_id(response_id, "ResponseID"),
        response_code=fields.get("ResponseCode", ""),
        body=_only_child(body),
    )


def signed_directive(root: etree._Element, signer: SmkiCertificate) -> VerifiedDirective:
    content = tuple(child for child in root[:-1] if isinstance(child.tag, str))
    return VerifiedDirective(
        signer=signer,
        directive_id=read_message_id(_child(root, _DIRECTIVE_ID).text, "DirectiveID"),
        content=content,
        root_attributes=tuple(sorted((str(k), str(v)) for k, v in root.attrib.items())),
    )


def _header_and_body(root: etree._Element) -> tuple[etree._Element, etree._Element]:
    """sr:Header and sr:Body, the first two children (the schema fixed the order)."""
    if len(root) < 2 or root[0].tag != HEADER or root[1].tag != BODY:
        raise VerificationError(Check.SCHEMA, "expected sr:Header then sr:Body")
    return root[0], root[1]


def _header_fields(header: etree._Element) -> dict[str, str]:
    """sr:Header's children by local name (the schema already fixed their order and namespace)."""
    fields = {}
    for child in header:
        tag = child.tag  # lxml builds the string on each access: read it once
        if tag.startswith(_SR_PREFIX):
            fields[tag[_SR_PREFIX_LENGTH:]] = (child.text or "").strip()
    return fields


def _child(parent: etree._Element, tag: str) -> etree._Element:
    # Iterating children beats ElementPath's find() on Clark names by ~10x.
    for child in parent:
        if child.tag == tag:
            return child
    raise VerificationError(Check.SCHEMA, f"missing {tag.partition('}')[2]}")


def _only_child(parent: etree._Element) -> etree._Element:
    children = list(parent)
    if len(children) != 1:
        raise VerificationError(Check.SCHEMA, f"{etree.QName(parent).localname} must hold exactly one element")
    return children[0]
