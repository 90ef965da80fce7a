"""BER definite lengths and a bounds-checked byte reader: the one place GBCS bytes are cut.

GBCS frames every variable field as ``length ‖ value`` with a BER definite length:
short form (``00``–``7F``) or long form (``81 xx``, ``82 xx xx``, ``83 xx xx xx``).
The reader accepts only the minimal encoding, so each value has exactly one byte
form and ``parse(data).encode() == data`` can hold for everything we accept.
"""

from __future__ import annotations

from gateway.gbcs.errors import ApduError

MAX_LENGTH_OCTETS = 3
"""Long-form lengths of up to 3 octets (16 MiB): far above any GBCS message."""


def encode_length(length: int) -> bytes:
    """The minimal BER definite-length octets for ``length``."""
    if length < 0:
        raise ValueError("a length cannot be negative")
    if length < 0x80:
        return bytes([length])
    size = (length.bit_length() + 7) // 8
    if size > MAX_LENGTH_OCTETS:
        raise ApduError(f"length {length} needs more than {MAX_LENGTH_OCTETS} length octets")
    return bytes([0x80 | size]) + length.to_bytes(size, "big")


def encode_octets(value: bytes) -> bytes:
    """``length ‖ value``: how GBCS frames an octet-string field."""
    return encode_length(len(value)) + value


class Reader:
    """Reads one byte string front to back; every read names what it reads for the error.

    Created per parse call and discarded with it, so no state outlives a parse.
    """

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = bytes(data)
        self._pos = 0

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def at_end(self) -> bool:
        return self._pos == len(self._data)

    def take(self, count: int, what: str) -> bytes:
        """The next ``count`` bytes; truncation is an error, never a short read."""
        if count > self.remaining:
            raise ApduError(f"truncated {what}: {count} bytes needed, {self.remaining} left")
        chunk = self._data[self._pos : self._pos + count]
        self._pos += count
        return chunk

    def byte(self, what: str) -> int:
        return self.take(1, what)[0]

    def expect(self, value: int, what: str) -> None:
        found = self.byte(what)
        if found != value:
            raise ApduError(f"{what}: expected {value:02X}, found {found:02X}")

    def length(self, what: str) -> int:
        """A minimal BER definite length (no indefinite form, no leading zeros)."""
        first = self.byte(f"{what} length")
        if first < 0x80:
            return first
        size = first & 0x7F
        if size == 0:
            raise ApduError(f"{what}: indefinite length is not allowed")
        if size > MAX_LENGTH_OCTETS:
            raise ApduError(f"{what}: {size} length octets is more than {MAX_LENGTH_OCTETS}")
        value = int.from_bytes(self.take(size, f"{what} length"), "big")
        if value < 0x80 or value.bit_length() <= 8 * (size - 1):
            raise ApduError(f"{what}: length {value} is not minimally encoded")
        return value

    def octets(self, what: str) -> bytes:
        """A ``length ‖ value`` field."""
        return self.take(self.length(what), what)

    def sized_octets(self, size: int, what: str) -> bytes:
        """A ``length ‖ value`` field whose length GBCS fixes."""
        value = self.octets(what)
        if len(value) != size:
            raise ApduError(f"{what}: length must be {size}, not {len(value)}")
        return value

    def expect_end(self, what: str) -> None:
        if not self.at_end():
            raise ApduError(f"{self.remaining} trailing bytes after {what}")
