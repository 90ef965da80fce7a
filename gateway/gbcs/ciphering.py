"""The GBCS MAC header: a General-Ciphering APDU (``DD``) wrapping a General-Signing one.

A COMMAND as the DCC sends it to the device (RTDS ``*_COMMAND_GBCS.HEX``)::

    DD 00 00 00 00 00 00          tag, then six empty fields GBCS leaves empty:
                                  transaction-id, originator, recipient,
                                  date-time, other-information, key-info
    81 DA                         ciphered-content length (BER)
    11                            security control (authenticated, suite 1)
    00000000                      invocation counter
    DF …                          the signed General-Signing APDU
    <12 bytes>                    GMAC tag

The tag is keyed by key agreement between the originator's and the device's
key-agreement keys; it is framed here, not checked.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.gbcs.apdu import GeneralSigningApdu
from gateway.gbcs.ber import Reader, encode_octets
from gateway.gbcs.errors import ApduError

GENERAL_CIPHERING_TAG = 0xDD
EMPTY_HEADER_FIELDS = 6
INVOCATION_COUNTER_SIZE = 4
MAC_SIZE = 12


@dataclass(frozen=True, slots=True)
class GeneralCipheringApdu:
    """A MAC-protected GBCS message whose payload is a General-Signing APDU."""

    security_control: int
    invocation_counter: int
    payload: GeneralSigningApdu
    mac: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.security_control <= 0xFF:
            raise ApduError("security control is one byte")
        if not 0 <= self.invocation_counter < 1 << (8 * INVOCATION_COUNTER_SIZE):
            raise ApduError("invocation counter is four bytes")
        if len(self.mac) != MAC_SIZE:
            raise ApduError(f"MAC must be {MAC_SIZE} bytes, not {len(self.mac)}")

    @classmethod
    def parse(cls, data: bytes) -> GeneralCipheringApdu:
        """Parses exactly one MAC-wrapped message; anything else raises ApduError."""
        reader = Reader(data)
        reader.expect(GENERAL_CIPHERING_TAG, "general-ciphering tag")
        for _ in range(EMPTY_HEADER_FIELDS):
            reader.expect(0x00, "general-ciphering header field (GBCS leaves it empty)")
        ciphered = Reader(reader.octets("ciphered content"))
        reader.expect_end("the ciphered content")
        security_control = ciphered.byte("security control")
        invocation_counter = int.from_bytes(ciphered.take(INVOCATION_COUNTER_SIZE, "invocation counter"), "big")
        if ciphered.remaining < MAC_SIZE:
            raise ApduError("ciphered content too short for its MAC")
        payload = ciphered.take(ciphered.remaining - MAC_SIZE, "payload")
        return cls(
            security_control=security_control,
            invocation_counter=invocation_counter,
            payload=GeneralSigningApdu.parse(payload),
            mac=ciphered.take(MAC_SIZE, "MAC"),
        )

    def encode(self) -> bytes:
        """The exact bytes ``parse`` read."""
        ciphered = (
            bytes([self.security_control])
            + self.invocation_counter.to_bytes(INVOCATION_COUNTER_SIZE, "big")
            + self.payload.encode()
            + self.mac
        )
        return bytes([GENERAL_CIPHERING_TAG]) + bytes(EMPTY_HEADER_FIELDS) + encode_octets(ciphered)
