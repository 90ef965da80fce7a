"""X.509 names compared as names, not as strings.

``X509IssuerName`` is free text in the signature: DCC Boxed writes
``CN=Z1,OU=07`` while DUIS templates write ``CN=U1, OU=07``. The repository
looks certificates up by a :class:`NameKey`: the set of (attribute type,
normalised value) pairs, so spacing, attribute-type case, value case and
RDN order do not matter (SPEC §4). cryptography's RFC 4514 parser refuses the
space after a comma, hence this small strict parser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cryptography import x509

# Attribute short names that SMKI and RFC 4514 use, to dotted OIDs.
_SHORT_NAMES = {
    "CN": "2.5.4.3",
    "OU": "2.5.4.11",
    "O": "2.5.4.10",
    "C": "2.5.4.6",
    "L": "2.5.4.7",
    "ST": "2.5.4.8",
    "STREET": "2.5.4.9",
    "DC": "0.9.2342.19200300.100.1.25",
    "UID": "0.9.2342.19200300.100.1.1",
    "SERIALNUMBER": "2.5.4.5",
    "X500UNIQUEIDENTIFIER": "2.5.4.45",
}
_OID = re.compile(r"\A[0-2](?:\.(?:0|[1-9][0-9]*))+\Z")
_TYPE = re.compile(r"\A[A-Za-z][A-Za-z0-9-]*\Z")
_MAX_NAME_LENGTH = 1024


Rdn = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class NameKey:
    """An X.509 name reduced to what name matching compares.

    The RDNs, each a sorted tuple of (attribute OID, normalised value), sorted:
    RDN order does not matter (``CN=Z1,OU=07`` matches ``OU=07, CN=Z1``), but how
    attributes group into RDNs (``CN=Z1+OU=07`` is one RDN) and how often each
    occurs still do.
    """

    rdns: tuple[Rdn, ...]

    @classmethod
    def from_name(cls, name: x509.Name) -> NameKey:
        rdns = []
        for rdn in name.rdns:
            pairs = []
            for attribute in rdn:
                value = attribute.value
                text = value.hex() if isinstance(value, bytes) else value
                pairs.append((attribute.oid.dotted_string, _normalise(text)))
            rdns.append(tuple(sorted(pairs)))
        return cls(tuple(sorted(rdns)))

    @classmethod
    def parse(cls, text: str) -> NameKey:
        """Parses an RFC 4514-style string; raises ValueError with a reason."""
        if len(text) > _MAX_NAME_LENGTH:
            raise ValueError("issuer name too long")
        rdns = [
            tuple(sorted(_parse_attribute(part) for part in _split_unescaped(rdn, "+")))
            for rdn in _split_unescaped(text.strip(), ",")
        ]
        if not rdns:
            raise ValueError("empty issuer name")
        if not all(rdns):
            raise ValueError("empty relative distinguished name")
        return cls(tuple(sorted(rdns)))

    def __str__(self) -> str:
        return ",".join("+".join(f"{oid}={value}" for oid, value in rdn) for rdn in self.rdns)


def _normalise(value: str) -> str:
    """caseIgnoreMatch with insignificant-space handling, as X.520 matches names."""
    return " ".join(value.split()).casefold()


def _split_unescaped(text: str, separators: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    escaped = False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            current.append(char)
            escaped = True
        elif char in separators:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if escaped:
        raise ValueError("name ends inside an escape")
    parts.append("".join(current))
    if len(parts) == 1 and not parts[0].strip():
        return []
    return parts


def _parse_attribute(part: str) -> tuple[str, str]:
    attribute_type, equals, raw_value = part.partition("=")
    attribute_type = attribute_type.strip()
    if not equals or not attribute_type:
        raise ValueError(f"not a type=value pair: {part.strip()!r}")
    oid = _resolve_type(attribute_type)
    return oid, _normalise(_unescape(raw_value.strip()))


def _resolve_type(attribute_type: str) -> str:
    if attribute_type.upper().startswith("OID."):
        attribute_type = attribute_type[4:]
    if _OID.match(attribute_type):
        return attribute_type
    if not _TYPE.match(attribute_type):
        raise ValueError(f"bad attribute type {attribute_type!r}")
    oid = _SHORT_NAMES.get(attribute_type.upper())
    if oid is None:
        raise ValueError(f"unknown attribute type {attribute_type!r}")
    return oid


def _unescape(value: str) -> str:
    if value.startswith("#"):
        # A hex-encoded BER value; compared as its hex text, as from_name does for bytes.
        return value[1:].lower()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    out: list[str] = []
    index = 0
    while index < len(value):
        char = value[index]
        if char != "\\":
            out.append(char)
            index += 1
            continue
        pair = value[index + 1 : index + 3]
        if len(pair) == 2 and all(c in "0123456789abcdefABCDEF" for c in pair):
            out.append(chr(int(pair, 16)))
            index += 3
        else:
            out.append(value[index + 1])
            index += 2
    return "".join(out)
