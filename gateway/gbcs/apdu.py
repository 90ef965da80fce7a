"""The GBCS General-Signing APDU (``DF``): the signed envelope of every critical command.

Layout, each variable field framed ``length ‖ value`` with a minimal BER length
(offsets from the ECS02 IMMEDIATE pre-command of the RTDS vectors)::

    0   DF                        general-signing tag (not signed)
    1   09 01 00000000000003EA    transaction-id: 9 bytes = CRA flag 01 ‖ 8-byte counter 1002
    11  08 90B3D51F30010000       originator system title: the User ID
    20  08 00DB1234567890A0       recipient system title: the Device ID
    29  00                        date-time: absent (or 0C ‖ 12-byte DLMS date-time)
    30  02 001A                   other-information: message code ECS02 (may continue with
                                  supplementary remote party id / counters / certificate)
    33  66 D9 20 0003EA 00 …      content: 0x66 bytes, here a DLMS access-request
    136 (nothing)                 signature: absent in a Pre-Command as DCC Boxed and the
                                  RTDS issue it; ``00`` (null) as the Green Book puts it;
                                  ``40`` ‖ 64-byte r‖s once signed

The signature covers bytes 1 … end of content (everything but the tag and the
signature field), ECDSA P-256 with SHA-256.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import IntEnum

from gateway.eui64 import Eui64
from gateway.gbcs.ber import Reader, encode_octets
from gateway.gbcs.errors import ApduError

GENERAL_SIGNING_TAG = 0xDF
TRANSACTION_ID_SIZE = 9
SYSTEM_TITLE_SIZE = 8
DATE_TIME_SIZE = 12
MESSAGE_CODE_SIZE = 2
SIGNATURE_SIZE = 64
COUNTER_LIMIT = 1 << 64

# other-information: message code (2), then optionally supplementary remote party
# id (8), its counter (8), and either a supplementary originator counter (8) or a
# remote party key-agreement certificate (anything longer).
_FIXED_OTHER_INFORMATION_SIZES = frozenset({2, 10, 18, 26})
_LONGEST_FIXED_OTHER_INFORMATION = 26


class CraFlag(IntEnum):
    """First byte of the transaction-id: what kind of message this is."""

    COMMAND = 1
    RESPONSE = 2
    ALERT = 3


@dataclass(frozen=True, slots=True)
class GeneralSigningApdu:
    """One parsed General-Signing APDU; every field is checked on construction."""

    cra_flag: CraFlag
    counter: int
    """The 8-byte transaction counter; for commands, the DUIS RequestID counter."""
    originator: Eui64
    recipient: Eui64
    date_time: bytes | None
    """12-byte GBCS (DLMS) date-time, or None when absent (``00``)."""
    message_code: int
    """The first two bytes of ``other_information``; kept apart for policy checks."""
    other_information: bytes
    """The whole other-information field, so that unusual ones round-trip."""
    content: bytes
    signature: bytes | None = None
    """None: no signature field (a Pre-Command as the DCC issues it); b"": the null
    signature ``00``; 64 bytes: ECDSA P-256 r‖s."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "cra_flag", _cra_flag(self.cra_flag))
        _check_range("counter", self.counter, COUNTER_LIMIT)
        _check_date_time(self.date_time)
        _check_other_information(self.message_code, self.other_information)
        if not self.content:
            raise ApduError("content is empty")
        _check_signature(self.signature)

    @classmethod
    def parse(cls, data: bytes) -> GeneralSigningApdu:
        """Parses exactly one APDU; anything malformed or left over raises ApduError."""
        reader = Reader(data)
        reader.expect(GENERAL_SIGNING_TAG, "general-signing tag")
        cra_flag, counter = _read_transaction_id(reader)
        originator = Eui64.from_bytes(reader.sized_octets(SYSTEM_TITLE_SIZE, "originator system title"))
        recipient = Eui64.from_bytes(reader.sized_octets(SYSTEM_TITLE_SIZE, "recipient system title"))
        date_time = reader.octets("date-time") or None
        other_information = reader.octets("other-information")
        content = reader.octets("content")
        signature = _read_signature(reader)
        return cls(
            cra_flag=cra_flag,
            counter=counter,
            originator=originator,
            recipient=recipient,
            date_time=date_time,
            message_code=int.from_bytes(other_information[:MESSAGE_CODE_SIZE], "big"),
            other_information=other_information,
            content=content,
            signature=signature,
        )

    def encode(self) -> bytes:
        """The exact bytes ``parse`` read (the inverse of parse)."""
        return bytes([GENERAL_SIGNING_TAG]) + self.signed_part() + _encode_signature(self.signature)

    def signed_part(self) -> bytes:
        """The bytes the signature covers: after the ``DF`` tag up to the end of content."""
        transaction_id = bytes([self.cra_flag]) + self.counter.to_bytes(8, "big")
        return b"".join(
            (
                encode_octets(transaction_id),
                encode_octets(self.originator.to_bytes()),
                encode_octets(self.recipient.to_bytes()),
                encode_octets(self.date_time or b""),
                encode_octets(self.other_information),
                encode_octets(self.content),
            )
        )

    @property
    def is_signed(self) -> bool:
        """True when a 64-byte signature is present (not absent, not null)."""
        return self.signature is not None and len(self.signature) == SIGNATURE_SIZE

    def with_signature(self, signature: bytes) -> GeneralSigningApdu:
        """The same APDU carrying ``signature`` (64-byte r‖s) in place of any other."""
        if len(signature) != SIGNATURE_SIZE:
            raise ApduError(f"a signature is {SIGNATURE_SIZE} bytes (r‖s), not {len(signature)}")
        return replace(self, signature=bytes(signature))

    def without_signature(self) -> GeneralSigningApdu:
        """The Pre-Command form: the same APDU with no signature field at all."""
        return replace(self, signature=None)


def _cra_flag(value: int) -> CraFlag:
    try:
        return CraFlag(value)
    except ValueError:
        raise ApduError(f"CRA flag must be 1, 2 or 3, not {value}") from None


def _check_range(what: str, value: int, limit: int) -> None:
    if not 0 <= value < limit:
        raise ApduError(f"{what} {value} out of range")


def _check_date_time(date_time: bytes | None) -> None:
    if date_time is not None and len(date_time) != DATE_TIME_SIZE:
        raise ApduError(f"date-time must be absent or {DATE_TIME_SIZE} bytes, not {len(date_time)}")


def _check_other_information(message_code: int, other_information: bytes) -> None:
    size = len(other_information)
    if size not in _FIXED_OTHER_INFORMATION_SIZES and size <= _LONGEST_FIXED_OTHER_INFORMATION:
        raise ApduError(f"other-information of {size} bytes fits no GBCS layout")
    _check_range("message code", message_code, 1 << 16)
    if other_information[:MESSAGE_CODE_SIZE] != message_code.to_bytes(MESSAGE_CODE_SIZE, "big"):
        raise ApduError("message code disagrees with other-information")


def _check_signature(signature: bytes | None) -> None:
    if signature is not None and len(signature) not in (0, SIGNATURE_SIZE):
        raise ApduError(f"signature must be null or {SIGNATURE_SIZE} bytes, not {len(signature)}")


def _read_transaction_id(reader: Reader) -> tuple[CraFlag, int]:
    """``09 ‖ CRA flag ‖ 8-byte counter``: the length byte is part of the field, not a tag."""
    transaction_id = reader.sized_octets(TRANSACTION_ID_SIZE, "transaction-id")
    return _cra_flag(transaction_id[0]), int.from_bytes(transaction_id[1:], "big")


def _read_signature(reader: Reader) -> bytes | None:
    """Nothing (Pre-Command), ``00`` (null) or ``40`` ‖ 64 bytes, then the end of input."""
    if reader.at_end():
        return None
    size = reader.length("signature")
    if size not in (0, SIGNATURE_SIZE):
        raise ApduError(f"signature must be null (00) or 40 ‖ {SIGNATURE_SIZE} bytes, not length {size}")
    signature = reader.take(size, "signature")
    reader.expect_end("the signature")
    return signature


def _encode_signature(signature: bytes | None) -> bytes:
    return b"" if signature is None else encode_octets(signature)
