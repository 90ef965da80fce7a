"""EUI-64 identifiers as DUIS writes them (``90-B3-D5-1F-30-01-00-00``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_DUIS_FORM = re.compile(r"\A[0-9A-F]{2}(?:-[0-9A-F]{2}){7}\Z")
_COMPACT_FORM = re.compile(r"\A[0-9A-Fa-f]{16}\Z")


@dataclass(frozen=True, order=True, slots=True)
class Eui64:
    """A 64-bit Extended Unique Identifier (User IDs and Device IDs)."""

    value: int

    def __post_init__(self) -> None:
        if not 0 <= self.value < 1 << 64:
            raise ValueError("EUI-64 out of range")

    @classmethod
    def parse(cls, text: str) -> Eui64:
        """Parses the DUIS hyphenated upper-case form; nothing else."""
        if not _DUIS_FORM.match(text):
            raise ValueError(f"not an EUI-64 in DUIS form: {text!r}")
        return cls(int(text.replace("-", ""), 16))

    @classmethod
    def parse_compact(cls, text: str) -> Eui64:
        """Parses 16 hex digits (DCC Boxed keystore keys, certificate dumps)."""
        if not _COMPACT_FORM.match(text):
            raise ValueError(f"not a 16-hex-digit EUI-64: {text!r}")
        return cls(int(text, 16))

    @classmethod
    def from_bytes(cls, raw: bytes) -> Eui64:
        if len(raw) != 8:
            raise ValueError("an EUI-64 is 8 bytes")
        return cls(int.from_bytes(raw, "big"))

    def to_bytes(self) -> bytes:
        return self.value.to_bytes(8, "big")

    def __str__(self) -> str:
        text = f"{self.value:016X}"  # on every hot path (store keys, audit records): no per-byte loop
        return f"{text[0:2]}-{text[2:4]}-{text[4:6]}-{text[6:8]}-{text[8:10]}-{text[10:12]}-{text[12:14]}-{text[14:16]}"

    @property
    def compact(self) -> str:
        return f"{self.value:016X}"
