"""GBCS messages of the prepayment use cases, carrying a meter's own values, shaped like RTDS 4.5.0.

One builder per device answer, each laid out byte for byte as the RTDS vector of its
use case (``../shared/gbcs/rtds-4.5.0/<SRV>_<use case>/…_RESPONSE_GBCS.HEX``) with
the vector's constants replaced by the meter's values:

=========  ======  =====================================================================
use case   code    content of the response (ESME: DLMS access-response; GSME: GBZ/ZCL)
=========  ======  =====================================================================
CS01a 2.2  0x0007  ``DA ‖ invoke id ‖ 00 ‖ 01 00 ‖ 01 03 <action result>`` (Token Gateway enter)
CS01b 2.2  0x0097  ZCL Consumer Top Up Response: result, value applied, source, credit remaining
ECS82 4.18 0x0069  ``DA ‖ invoke id ‖ 00 00 ‖ 01 05 <meter balance> ‖ 01 01 00`` (get)
GCS60 4.18 0x008D  Read Attributes Responses: Metering 0x0A00 (bill to date, uint32) and
                   Prepayment 0x0001 (credit remaining, int32)
ECS09 2.5  0x0020  ``DA ‖ invoke id ‖ 00 00 ‖ 01 00 ‖ 01 03 <action result>``, signed
GCS06 2.5  0x0070  ZCL Default Response to Select Available Emergency Credit, signed
=========  ======  =====================================================================

Money. The vectors carry currency in thousandths of a penny (the CS01b vector applies
a 1250p UTRN as 1,250,000), so values here are pence × 1000.

Envelope. Non-critical answers (2.2, 4.18) come, as in the vectors, in a General-Ciphering
(``DD``) MAC header around an unsigned General-Signing APDU; the simulator does not
compute that MAC (its 12 bytes are zero: a limit named in the README). Critical answers
(2.5) are General-Signing APDUs signed by the meter's own DS key.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import IntEnum

from cryptography.hazmat.primitives.asymmetric import ec

from gateway.eui64 import Eui64
from gateway.gbcs import dlms, zigbee
from gateway.gbcs.apdu import CraFlag, GeneralSigningApdu
from gateway.gbcs.ciphering import MAC_SIZE, GeneralCipheringApdu
from gateway.gbcs.message_codes import DeviceType
from gateway.gbcs.signing import sign_apdu

MILLIPENCE = 1000
_ACCESS_RESPONSE_TAG = 0xDA
_ACTION, _GET = 0x03, 0x01
_NULL_DATA = 0x00
_AUTHENTICATED = 0x11
_GBZ_RESPONSE_HEADER = 0x01
_ZCL_SERVER_TO_CLIENT_SPECIFIC = 0x09
_ZCL_SERVER_TO_CLIENT_GENERAL = 0x08
_ZCL_READ_ATTRIBUTES_RESPONSE = 0x01
_ZCL_DEFAULT_RESPONSE = 0x0B
_CONSUMER_TOP_UP_RESPONSE = 0x03
_SELECT_AVAILABLE_EMERGENCY_CREDIT = 0x00
_METERING_CLUSTER = 0x0702
_BILL_TO_DATE_DELIVERED = 0x0A00
_CREDIT_REMAINING = 0x0001
_UINT32, _INT32 = 0x23, 0x2B
_NOT_APPLIED = -1  # FFFFFFFF in the CS01b error vector
_ECS09_REQUEST = bytes.fromhex("00010300700000130A01FF03010F00")
"""After the access-request's tag and invoke id: no date-time, one action (03) on class 112 (Credit),
0-0:19.10.1.255 (emergency credit), method 3, with integer 0."""
_GCS06_HEADER = bytes.fromhex("0109010107050008") + bytes([0x01])
"""GBZ, one component, Prepayment cluster, 8 bytes of ZCL, cluster-specific client to server; then sequence,
Select Available Emergency Credit (00), issue date-time (u32) and originating device."""


class PrepaymentCode(IntEnum):
    """GBCS message codes of the prepayment use cases (other-information, as in the RTDS vectors)."""

    CS01A_TOP_UP_ESME = 0x0007
    CS01B_TOP_UP_GSME = 0x0097
    ECS82_READ_METER_BALANCE_ESME = 0x0069
    GCS60_READ_METER_BALANCE_GSME = 0x008D
    ECS09_ACTIVATE_EMERGENCY_CREDIT_ESME = 0x0020
    GCS06_ACTIVATE_EMERGENCY_CREDIT_GSME = 0x0070


EMERGENCY_CREDIT_CODES: dict[DeviceType, PrepaymentCode] = {
    "ESME": PrepaymentCode.ECS09_ACTIVATE_EMERGENCY_CREDIT_ESME,
    "GSME": PrepaymentCode.GCS06_ACTIVATE_EMERGENCY_CREDIT_GSME,
}


class TopUpResult(IntEnum):
    """ZCL Prepayment Consumer Top Up Response result (the GSME's answer; the ESME's is success/failure)."""

    ACCEPTED = 0x00
    REJECTED_INVALID = 0x01
    REJECTED_DUPLICATE = 0x02


# --- CS01a / CS01b: Top Up Device ---------------------------------------------------------


def top_up_response(
    device_type: DeviceType,
    *,
    counter: int,
    meter: Eui64,
    user: Eui64,
    at: dt.datetime,
    result: TopUpResult,
    applied_pence: int,
    credit_pence: int,
) -> bytes:
    """The meter's answer to a top-up: accepted with what it applied, or refused."""
    accepted = result is TopUpResult.ACCEPTED
    if device_type == "ESME":
        code = PrepaymentCode.CS01A_TOP_UP_ESME
        content = _access_response(counter, (bytes([_NULL_DATA]),), (bytes([_ACTION, 0 if accepted else 1]),))
    else:
        code = PrepaymentCode.CS01B_TOP_UP_GSME
        applied = applied_pence * MILLIPENCE if accepted else _NOT_APPLIED
        remaining = credit_pence * MILLIPENCE if accepted else _NOT_APPLIED
        zcl = bytes([result]) + zigbee.s32(applied) + b"\x00" + zigbee.s32(remaining)
        content = _gbz((zigbee.PREPAYMENT_CLUSTER, _ZCL_SERVER_TO_CLIENT_SPECIFIC, _CONSUMER_TOP_UP_RESPONSE, zcl))
    return _mac_wrapped(_response(code, counter, meter, user, content, dlms.date_time(at)))


# --- ECS82 / GCS60: Read Meter Balance ----------------------------------------------------


def meter_balance_response(
    device_type: DeviceType, *, counter: int, meter: Eui64, user: Eui64, balance_pence: int, debt_pence: int
) -> bytes:
    """The meter's balance (credit less emergency credit used); a GSME also reports its bill to date."""
    if device_type == "ESME":
        code = PrepaymentCode.ECS82_READ_METER_BALANCE_ESME
        content = _access_response(counter, (dlms.double_long(balance_pence * MILLIPENCE),), (bytes([_GET, 0]),))
    else:
        code = PrepaymentCode.GCS60_READ_METER_BALANCE_GSME
        bill = _attribute(_BILL_TO_DATE_DELIVERED, _UINT32, zigbee.u32(max(0, debt_pence) * MILLIPENCE))
        credit = _attribute(_CREDIT_REMAINING, _INT32, zigbee.s32(balance_pence * MILLIPENCE))
        content = _gbz(
            (_METERING_CLUSTER, _ZCL_SERVER_TO_CLIENT_GENERAL, _ZCL_READ_ATTRIBUTES_RESPONSE, bill),
            (zigbee.PREPAYMENT_CLUSTER, _ZCL_SERVER_TO_CLIENT_GENERAL, _ZCL_READ_ATTRIBUTES_RESPONSE, credit),
        )
    return _mac_wrapped(_response(code, counter, meter, user, content, None))


# --- ECS09 / GCS06: Activate Emergency Credit -----------------------------------------------


def emergency_credit_response(
    device_type: DeviceType,
    *,
    counter: int,
    meter: Eui64,
    user: Eui64,
    activated: bool,
    meter_key: ec.EllipticCurvePrivateKey,
) -> bytes:
    """The meter's signed answer to a Signed Pre-Command (SMETS2) or the DCC's command (SMETS1)."""
    code = EMERGENCY_CREDIT_CODES[device_type]
    if device_type == "ESME":
        content = _access_response(counter, (bytes([_NULL_DATA]),), (bytes([_ACTION, 0 if activated else 1]),))
    else:
        status = 0x00 if activated else 0xC0  # the GCS06 success and error vectors
        content = _gbz(
            (
                zigbee.PREPAYMENT_CLUSTER,
                _ZCL_SERVER_TO_CLIENT_GENERAL,
                _ZCL_DEFAULT_RESPONSE,
                bytes([_SELECT_AVAILABLE_EMERGENCY_CREDIT, status]),
            )
        )
    return sign_apdu(_response(code, counter, meter, user, content, None), meter_key).encode()


def is_emergency_credit_content(device_type: DeviceType, content: bytes) -> bool:
    """Whether a Signed Pre-Command's content asks what ECS09/GCS06 ask (the RTDS Pre-Command's shape)."""
    if device_type == "ESME":
        return len(content) == 5 + len(_ECS09_REQUEST) and content[0] == dlms.ACCESS_REQUEST_TAG and content[5:] == _ECS09_REQUEST
    header = _GCS06_HEADER
    return len(content) == len(header) + 7 and content.startswith(header) and content[len(header) + 1] == 0x00


# --- framing --------------------------------------------------------------------------------


def _access_response(counter: int, data: tuple[bytes, ...], results: tuple[bytes, ...]) -> bytes:
    """``DA ‖ invoke id ‖ 00 (no date-time) ‖ 00 (no specification list) ‖ data ‖ results``."""
    return (
        bytes([_ACCESS_RESPONSE_TAG])
        + dlms.long_invoke_id(counter)
        + b"\x00\x00"
        + bytes([len(data)])
        + b"".join(data)
        + bytes([len(results)])
        + b"".join(results)
    )


def _attribute(attribute: int, data_type: int, value: bytes) -> bytes:
    """One read-attribute status record: id (LE), status success, type, value."""
    return attribute.to_bytes(2, "little") + b"\x00" + bytes([data_type]) + value


def _gbz(*components: tuple[int, int, int, bytes]) -> bytes:
    """A GBZ payload of response components (the extended header marks the last one)."""
    parts = []
    for index, (cluster, frame_control, command, payload) in enumerate(components):
        zcl = bytes([frame_control, index, command]) + payload  # sequence numbers count the components
        last = _GBZ_RESPONSE_HEADER if index == len(components) - 1 else 0x00
        parts.append(bytes([last]) + cluster.to_bytes(2, "big") + len(zcl).to_bytes(2, "big") + zcl)
    return zigbee.GBZ_PROFILE_ID.to_bytes(2, "big") + bytes([len(components)]) + b"".join(parts)


def _response(
    code: PrepaymentCode, counter: int, meter: Eui64, user: Eui64, content: bytes, date_time: bytes | None
) -> GeneralSigningApdu:
    return GeneralSigningApdu(
        cra_flag=CraFlag.RESPONSE,
        counter=counter,
        originator=meter,
        recipient=user,
        date_time=date_time,
        message_code=code,
        other_information=code.to_bytes(2, "big"),
        content=content,
        signature=b"",
    )


def _mac_wrapped(apdu: GeneralSigningApdu) -> bytes:
    return GeneralCipheringApdu(_AUTHENTICATED, 0, apdu, bytes(MAC_SIZE)).encode()


# --- ECS26a / GCS21b: Read Prepayment Configuration ---------------------------------------------


@dataclass(frozen=True, slots=True)
class PrepaymentConfiguration:
    """The settings of a meter that SR 4.13 reports and this simulation models (pence)."""

    low_credit_threshold: int
    emergency_credit_limit: int
    emergency_credit_threshold: int
    disablement_threshold: int


_ECS26A_ITEMS = {12: "low_credit_threshold", 15: "emergency_credit_limit", 16: "emergency_credit_threshold"}
"""Data items of the ECS26a response (1-based, the command's order) this simulation models: Account
(class 111) low credit threshold, Credit (class 112) 0-0:19.10.1.255 preset amount and available
threshold, i.e. the emergency credit's; every other item keeps the vector's value."""
_GCS21B_ATTRIBUTES = {
    0x0010: "emergency_credit_limit",
    0x0011: "emergency_credit_threshold",
    0x0031: "low_credit_threshold",
    0x0040: "disablement_threshold",
}
"""Prepayment cluster attributes of the GCS21b response this simulation models (Emergency Credit Limit
Allowance, Emergency Credit Threshold, Low Credit Warning Level, Cut Off Value)."""
_DLMS_FIXED_SIZES = {0x00: 0, 0x03: 1, 0x05: 4, 0x06: 4, 0x0F: 1, 0x10: 2, 0x11: 1, 0x12: 2, 0x14: 8, 0x15: 8, 0x16: 1,
                     0x17: 4, 0x18: 8, 0x19: 12, 0x1A: 5, 0x1B: 4}  # fmt: skip
_ZCL_FIXED_SIZES = {0x18: 1, 0x19: 2, 0x20: 1, 0x21: 2, 0x23: 4, 0x2B: 4, 0x30: 1, 0xE2: 4}


def prepayment_configuration_response(
    device_type: DeviceType, vector_response: bytes, configuration: PrepaymentConfiguration
) -> bytes:
    """The use case's (re-addressed) RTDS response with the values the meter models put in their places.

    The meter keeps the vector's value wherever the simulation has no such setting; a vector laid out
    otherwise than ECS26a/GCS21b is returned unchanged."""
    message = GeneralCipheringApdu.parse(vector_response)
    content = bytearray(message.payload.content)
    values = {name: getattr(configuration, name) * MILLIPENCE for name in _GCS21B_ATTRIBUTES.values()}
    try:
        if device_type == "ESME":
            _patch_dlms_items(content, values)
        else:
            _patch_zcl_attributes(content, values)
    except (IndexError, KeyError):
        return vector_response  # an unexpected layout: answer as the vector does
    payload = GeneralSigningApdu.parse(message.payload.encode())
    patched = GeneralSigningApdu(
        cra_flag=payload.cra_flag, counter=payload.counter, originator=payload.originator,
        recipient=payload.recipient, date_time=payload.date_time, message_code=payload.message_code,
        other_information=payload.other_information, content=bytes(content), signature=payload.signature,
    )  # fmt: skip
    return GeneralCipheringApdu(message.security_control, message.invocation_counter, patched, message.mac).encode()


def _patch_dlms_items(content: bytearray, values: dict[str, int]) -> None:
    """``DA ‖ invoke id ‖ 00 ‖ 00 ‖ count ‖ items…``: the modelled double-long items get the meter's values."""
    if content[0] != _ACCESS_RESPONSE_TAG:
        raise KeyError("not an access-response")
    at = 8
    for number in range(1, content[7] + 1):
        end = _dlms_item_end(content, at)
        name = _ECS26A_ITEMS.get(number)
        if name is not None and content[at] == dlms.DOUBLE_LONG:
            content[at + 1 : end] = values[name].to_bytes(4, "big", signed=True)
        at = end


def _dlms_item_end(content: bytearray, at: int) -> int:
    tag, at = content[at], at + 1
    if tag in (dlms.ARRAY, dlms.STRUCTURE):
        count, at = content[at], at + 1
        for _ in range(count):
            at = _dlms_item_end(content, at)
        return at
    if tag in (dlms.OCTET_STRING, 0x0A):
        return at + 1 + content[at]
    if tag == dlms.BIT_STRING:
        return at + 1 + (content[at] + 7) // 8
    return at + _DLMS_FIXED_SIZES[tag]


def _patch_zcl_attributes(content: bytearray, values: dict[str, int]) -> None:
    """In each Prepayment-cluster Read Attributes Response component, the modelled attributes' values."""
    if int.from_bytes(content[0:2], "big") != zigbee.GBZ_PROFILE_ID:
        raise KeyError("not a GBZ payload")
    at = 3
    for _ in range(content[2]):
        control, cluster = content[at], int.from_bytes(content[at + 1 : at + 3], "big")
        length = int.from_bytes(content[at + 3 : at + 5], "big")
        start, end = at + 5, at + 5 + length
        plain = control & ~_GBZ_RESPONSE_HEADER == 0
        if plain and cluster == zigbee.PREPAYMENT_CLUSTER and content[start + 2] == _ZCL_READ_ATTRIBUTES_RESPONSE:
            _patch_records(content, start + 3, end, values)
        at = end


def _patch_records(content: bytearray, at: int, end: int, values: dict[str, int]) -> None:
    while at < end:
        attribute, status = int.from_bytes(content[at : at + 2], "little"), content[at + 2]
        at += 3
        if status != 0:
            continue
        data_type, at = content[at], at + 1
        size = _ZCL_FIXED_SIZES[data_type]
        name = _GCS21B_ATTRIBUTES.get(attribute)
        if name is not None and data_type in (_UINT32, _INT32):
            value = values[name] if data_type == _INT32 else max(0, values[name])
            content[at : at + size] = value.to_bytes(4, "little", signed=data_type == _INT32)
        at += size
