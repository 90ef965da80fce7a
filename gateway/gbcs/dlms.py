"""The handful of DLMS/COSEM A-XDR encodings that ESME (electricity) content needs.

An ESME command's content is a DLMS ``access-request`` (``D9``): a header, a list
of attribute specifications, then a list of data, one item per specification.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.gbcs.ber import encode_length

ACCESS_REQUEST_TAG = 0xD9
ACCESS_REQUEST_SET = 0x02
"""access-request-specification choice: set an attribute."""
CONTINUE_ON_ERROR = 0x20 << 24
"""Long-Invoke-Id-And-Priority high bits every RTDS command carries (processing option)."""
INVOKE_ID_MASK = 0x00FF_FFFF

ARRAY, STRUCTURE, BIT_STRING, DOUBLE_LONG, OCTET_STRING, ENUM = 0x01, 0x02, 0x04, 0x05, 0x09, 0x16

DATE_TIME_IMMEDIATE = bytes(9) + b"\x80\x00\xff"
"""All date fields zero: the RTDS form for "execute now"."""
DATE_TIME_NOT_SPECIFIED = b"\xff" * 9 + b"\x80\x00\xff"
"""All date fields "not specified": the RTDS form for cancelling a future-dated change."""
_DEVIATION_NOT_SPECIFIED = b"\x80\x00"
_CLOCK_STATUS_NOT_SPECIFIED = b"\xff"
_DAY_OF_WEEK_NOT_SPECIFIED = 0xFF


@dataclass(frozen=True, slots=True)
class CosemAttribute:
    """One attribute of one COSEM object: class id, OBIS code (6 bytes), attribute index."""

    class_id: int
    obis: bytes
    attribute: int

    def set_specification(self) -> bytes:
        """``02 ‖ class-id ‖ OBIS ‖ attribute``: "set this attribute" in an access-request."""
        return bytes([ACCESS_REQUEST_SET]) + self.class_id.to_bytes(2, "big") + self.obis + bytes([self.attribute])


def long_invoke_id(counter: int) -> bytes:
    """The access-request invoke id: the low 24 bits of the GBCS counter, as every vector shows."""
    return (CONTINUE_ON_ERROR | (counter & INVOKE_ID_MASK)).to_bytes(4, "big")


def access_request(counter: int, specifications: tuple[bytes, ...], data: tuple[bytes, ...]) -> bytes:
    """``D9 ‖ invoke id ‖ 00 (no date-time) ‖ specifications ‖ data``."""
    if len(specifications) != len(data):
        raise ValueError("an access-request carries one data item per specification")
    return (
        bytes([ACCESS_REQUEST_TAG])
        + long_invoke_id(counter)
        + b"\x00"
        + _sequence(specifications)
        + _sequence(data)
    )


def array(items: tuple[bytes, ...]) -> bytes:
    return bytes([ARRAY]) + _sequence(items)


def structure(*items: bytes) -> bytes:
    return bytes([STRUCTURE]) + _sequence(items)


def enum(value: int) -> bytes:
    return bytes([ENUM, value])


def double_long(value: int) -> bytes:
    """A signed 32-bit integer, big-endian."""
    return bytes([DOUBLE_LONG]) + value.to_bytes(4, "big", signed=True)


def octet_string(value: bytes) -> bytes:
    return bytes([OCTET_STRING]) + encode_length(len(value)) + value


def bit_string(bits: str) -> bytes:
    """``bits`` as "110": first bit is the most significant bit of the first byte."""
    padded = bits.ljust(-(-len(bits) // 8) * 8, "0")
    return bytes([BIT_STRING]) + encode_length(len(bits)) + int(padded, 2).to_bytes(len(padded) // 8, "big")


def date_time(moment: datetime) -> bytes:
    """12-byte DLMS date-time in UTC; weekday, deviation and clock status "not specified"."""
    utc = moment.astimezone(UTC)
    return (
        utc.year.to_bytes(2, "big")
        + bytes([utc.month, utc.day, _DAY_OF_WEEK_NOT_SPECIFIED, utc.hour, utc.minute, utc.second])
        + bytes([utc.microsecond // 10_000])
        + _DEVIATION_NOT_SPECIFIED
        + _CLOCK_STATUS_NOT_SPECIFIED
    )


def _sequence(items: tuple[bytes, ...]) -> bytes:
    return encode_length(len(items)) + b"".join(items)
