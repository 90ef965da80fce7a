"""Reads any GBCS message far enough to say what it is: its header, and what kind of content it carries.

A GBCS message on the wire is one of:

* a **General-Ciphering** APDU (``DD``): the MAC header around a General-Signing APDU (every
  command the DCC sends a device, most responses and alerts);
* a **General-Signing** APDU (``DF``) on its own: a Pre-Command (no signature), a Signed
  Pre-Command, or a response or alert a device signed.

Inside, the content is DLMS (electricity: ``D9`` access-request, ``DA`` access-response, ``0F``
data-notification), GBZ (gas and the comms hub's ZigBee side: profile ``0109``) or ASN.1 BER
(the security-credential use cases, CS02/CS03/CS04/CS07/CS08: read with asn1crypto, strictly,
so that a BER item must fill the content exactly).

:func:`read_message` returns a :class:`GbcsMessage`: CRA flag, originator, recipient, counter
(the transaction id), date-time, message code, signature state and content kind. It refuses
(:class:`~gateway.gbcs.errors.ApduError`) anything it cannot place. The content itself is not
interpreted here: that is the use case's business (SR 1.6 in :mod:`gateway.devices.content`).

Hand-written rather than dlms-cosem: the envelopes (``DD`` with GBCS's empty header fields,
``DF``) and DLMS's access service (``D9``/``DA``) are exactly what dlms-cosem does not implement,
and the header needs only the bounds-checked reader of :mod:`gateway.gbcs.ber`.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from asn1crypto import core

from gateway.eui64 import Eui64
from gateway.gbcs.apdu import DATE_TIME_SIZE, GENERAL_SIGNING_TAG, CraFlag, GeneralSigningApdu
from gateway.gbcs.ciphering import GENERAL_CIPHERING_TAG, GeneralCipheringApdu
from gateway.gbcs.dlms import ACCESS_REQUEST_TAG
from gateway.gbcs.errors import ApduError
from gateway.gbcs.zigbee import GBZ_PROFILE_ID

ACCESS_RESPONSE_TAG = 0xDA
DATA_NOTIFICATION_TAG = 0x0F
LONG_INVOKE_ID_SIZE = 4
_BER_TAGS = frozenset({0x30, 0x02, 0x04, 0x05})
"""SEQUENCE, INTEGER, OCTET STRING, NULL: the outer BER types of every RTDS security-credential content."""
_NOT_SPECIFIED = 0xFF
_DEVIATION_NOT_SPECIFIED = 0x8000


class Envelope(enum.StrEnum):
    GENERAL_CIPHERING = "general-ciphering"
    GENERAL_SIGNING = "general-signing"


class ContentKind(enum.StrEnum):
    DLMS_ACCESS_REQUEST = "dlms-access-request"
    DLMS_ACCESS_RESPONSE = "dlms-access-response"
    DLMS_DATA_NOTIFICATION = "dlms-data-notification"
    GBZ = "gbz"
    ASN1 = "asn1"

    @property
    def is_dlms(self) -> bool:
        return self in (ContentKind.DLMS_ACCESS_REQUEST, ContentKind.DLMS_ACCESS_RESPONSE, ContentKind.DLMS_DATA_NOTIFICATION)


class SignatureState(enum.StrEnum):
    SIGNED = "signed"
    """``40`` ‖ 64-byte r‖s."""
    NULL = "null"
    """``00``: the field is there, empty (every MAC-protected message)."""
    ABSENT = "absent"
    """No field at all: a Pre-Command as the DCC issues it."""


@dataclass(frozen=True, slots=True)
class GbcsMessage:
    """One GBCS message, read: its envelope, its General-Signing APDU and what its content is."""

    envelope: Envelope
    apdu: GeneralSigningApdu
    content_kind: ContentKind
    ciphering: GeneralCipheringApdu | None = None
    """The MAC header, for a General-Ciphering message."""

    @property
    def cra_flag(self) -> CraFlag:
        return self.apdu.cra_flag

    @property
    def counter(self) -> int:
        """The transaction id's 8-byte counter (a command's; its response and alerts echo it)."""
        return self.apdu.counter

    @property
    def originator(self) -> Eui64:
        return self.apdu.originator

    @property
    def recipient(self) -> Eui64:
        return self.apdu.recipient

    @property
    def message_code(self) -> int:
        return self.apdu.message_code

    @property
    def date_time(self) -> dt.datetime | None:
        """The header date-time as UTC, or None when absent or not a specified instant."""
        return None if self.apdu.date_time is None else decode_date_time(self.apdu.date_time)

    @property
    def signature(self) -> SignatureState:
        if self.apdu.signature is None:
            return SignatureState.ABSENT
        return SignatureState.SIGNED if self.apdu.is_signed else SignatureState.NULL

    def encode(self) -> bytes:
        """The exact bytes read."""
        return self.apdu.encode() if self.ciphering is None else self.ciphering.encode()


def read_message(data: bytes) -> GbcsMessage:
    """Reads exactly one GBCS message; raises ApduError for anything else."""
    if not data:
        raise ApduError("a GBCS message cannot be empty")
    if data[0] == GENERAL_CIPHERING_TAG:
        ciphering = GeneralCipheringApdu.parse(data)
        apdu = ciphering.payload
        return GbcsMessage(Envelope.GENERAL_CIPHERING, apdu, content_kind(apdu.content), ciphering)
    if data[0] == GENERAL_SIGNING_TAG:
        apdu = GeneralSigningApdu.parse(data)
        return GbcsMessage(Envelope.GENERAL_SIGNING, apdu, content_kind(apdu.content))
    raise ApduError(f"a GBCS message starts with DD or DF, not {data[0]:02X}")


def content_kind(content: bytes) -> ContentKind:
    """What a General-Signing APDU's content is, from its first bytes (BER: the whole of it)."""
    first = content[0]
    if first in (ACCESS_REQUEST_TAG, ACCESS_RESPONSE_TAG, DATA_NOTIFICATION_TAG):
        if len(content) <= LONG_INVOKE_ID_SIZE:
            raise ApduError("DLMS content shorter than its long-invoke-id")
        return {
            ACCESS_REQUEST_TAG: ContentKind.DLMS_ACCESS_REQUEST,
            ACCESS_RESPONSE_TAG: ContentKind.DLMS_ACCESS_RESPONSE,
            DATA_NOTIFICATION_TAG: ContentKind.DLMS_DATA_NOTIFICATION,
        }[first]
    if content[:2] == GBZ_PROFILE_ID.to_bytes(2, "big"):
        if len(content) < 3:
            raise ApduError("a GBZ payload is more than its profile id")
        return ContentKind.GBZ
    if first in _BER_TAGS:
        try:
            core.load(content, strict=True)
        except ValueError as exc:
            raise ApduError(f"ASN.1 content is not one BER item: {exc}") from exc
        return ContentKind.ASN1
    raise ApduError(f"content starting {first:02X} is neither DLMS, GBZ nor ASN.1")


def decode_date_time(value: bytes) -> dt.datetime | None:
    """A 12-byte DLMS date-time as UTC; None when a field is "not specified" or it is no date."""
    if len(value) != DATE_TIME_SIZE:
        raise ApduError(f"a date-time is {DATE_TIME_SIZE} bytes, not {len(value)}")
    year = int.from_bytes(value[0:2], "big")
    month, day, _weekday, hour, minute, second, hundredths = value[2:9]
    deviation = int.from_bytes(value[9:11], "big", signed=True)
    if year == 0xFFFF or _NOT_SPECIFIED in (month, day, hour, minute, second):
        return None
    # DLMS deviation: minutes from local time to UTC (UTC+1 is -60), so UTC = local + deviation.
    offset = dt.timedelta(0) if deviation == -_DEVIATION_NOT_SPECIFIED else dt.timedelta(minutes=deviation)
    try:
        local = dt.datetime(year, month, day, hour, minute, second,
                            0 if hundredths == _NOT_SPECIFIED else hundredths * 10_000)  # fmt: skip
    except ValueError:
        return None
    return (local + offset).replace(tzinfo=dt.UTC)
