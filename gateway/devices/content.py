"""What an SR 1.6 GBCS command asks a meter to do: its content, read as the meter would.

The inverse of :mod:`gateway.gbcs.payment_mode` (which the RTDS 1.6 vectors pin
byte for byte). A SMETS2 meter acts on the content it verified, never on the
DUIS request it came from, so the mode, threshold and execution time come from
here. The message code must agree with the content (a code saying "credit" over
content setting prepayment is refused): the code is what the gateway's policy
checks (MP134B R5), the content is what the meter does.

ESME: a DLMS access-request setting exactly the attributes the builder sets;
GSME: one GBZ component carrying the ZCL "Change Payment Mode" command.
Anything else raises :class:`ContentError`.
"""

from __future__ import annotations

import datetime as dt

from gateway.devices.meter import PaymentModeCommand
from gateway.gbcs import (
    DUIS_CANCELLATION_DATE_TIME,
    ApduError,
    DeviceType,
    PrepaymentSettings,
    dlms,
    zigbee,
)
from gateway.gbcs.ber import Reader
from gateway.gbcs.payment_mode import (
    ACCOUNT_ACTIVATION_TIME,
    ACCOUNT_CREDIT_CHARGE_CONFIGURATION,
    ACCOUNT_MODE_AND_STATUS,
    DISABLEMENT_THRESHOLD,
    DISABLEMENT_THRESHOLD_TIME,
)

_SPECIFICATION_SIZE = 10  # 02 ‖ class id (2) ‖ OBIS (6) ‖ attribute (1)
_MAX_DATA_DEPTH = 4
_DLMS_PAYMENT_MODES = {1: True, 2: False}  # Account attribute 2: 1 credit, 2 prepayment -> to_credit
_DEVIATION_NOT_SPECIFIED = b"\x80\x00"

_CREDIT_ATTRIBUTES = frozenset(
    a.set_specification()
    for a in (ACCOUNT_MODE_AND_STATUS, ACCOUNT_CREDIT_CHARGE_CONFIGURATION, ACCOUNT_ACTIVATION_TIME)
)
_PREPAYMENT_ATTRIBUTES = _CREDIT_ATTRIBUTES | {
    DISABLEMENT_THRESHOLD.set_specification(),
    DISABLEMENT_THRESHOLD_TIME.set_specification(),
}
_EMERGENCY_CREDIT = bytes([0, 0, 19, 10, 2, 255])  # 0-0:19.10.2.255, credit 2
_DEBT_CHARGES = frozenset(bytes([0, 0, 19, 20, n, 255]) for n in (1, 2))
_SUSPENDED_WHEN_DISABLED = "110"

_GSME_HEADER = zigbee.GBZ_PROFILE_ID.to_bytes(2, "big") + b"\x01" + bytes([zigbee.EXTENDED_HEADER_CONTROL])
_GSME_PAYLOAD_SIZE = 18  # provider u32, issuer event u32, UTCTime u32, control u16, cut-off s32
_GSME_PREPAYMENT_ENABLED = 0x0002
"""Payment Control Configuration bit set in every RTDS GCS03 vector and clear in every GCS02 one."""
_GSME_SUSPEND_DEBT_DISABLED = 0x0400
_GSME_EMERGENCY_DEBT = 0x0800


class ContentError(ValueError):
    """The command content is not an SR 1.6 payment mode change this meter understands."""


def read_payment_mode_content(device_type: DeviceType, to_credit: bool, content: bytes) -> PaymentModeCommand:
    """The change ``content`` asks for; ``to_credit`` is what the message code says it must be."""
    try:
        command = _read_esme(content) if device_type == "ESME" else _read_gsme(content)
    except ApduError as exc:
        raise ContentError(f"malformed {device_type} content: {exc.reason}") from exc
    if command.to_credit != to_credit:
        raise ContentError(
            f"the message code says {'Credit' if to_credit else 'Prepayment'}, the content {command.mode}"
        )
    return command


# --- ESME: DLMS access-request ------------------------------------------------------------


def _read_esme(content: bytes) -> PaymentModeCommand:
    values = _access_request(content)
    mode, _status = _pair(values.get(ACCOUNT_MODE_AND_STATUS.set_specification()), "payment mode and status")
    if mode not in _DLMS_PAYMENT_MODES:
        raise ContentError(f"DLMS payment mode {mode!r} is neither credit (1) nor prepayment (2)")
    to_credit = _DLMS_PAYMENT_MODES[mode]
    expected = _CREDIT_ATTRIBUTES if to_credit else _PREPAYMENT_ATTRIBUTES
    if set(values) != expected:
        raise ContentError("the access-request does not set exactly the SR 1.6 attributes")
    execute_at = _dlms_time(values[ACCOUNT_ACTIVATION_TIME.set_specification()])
    if to_credit:
        return PaymentModeCommand(True, None, execute_at)
    threshold = values[DISABLEMENT_THRESHOLD.set_specification()]
    if not isinstance(threshold, int):
        raise ContentError("the disablement threshold is not a double-long")
    configuration = values[ACCOUNT_CREDIT_CHARGE_CONFIGURATION.set_specification()]
    return PaymentModeCommand(False, _esme_settings(threshold, configuration), execute_at)


def _access_request(content: bytes) -> dict[bytes, object]:
    """``D9 ‖ invoke id ‖ 00 ‖ specifications ‖ data``, as attribute specification -> value."""
    reader = Reader(content)
    reader.expect(dlms.ACCESS_REQUEST_TAG, "access-request tag")
    reader.take(4, "invoke id")
    reader.expect(0x00, "access-request date-time (absent)")
    specifications = [_specification(reader) for _ in range(reader.length("specification count"))]
    data = [_data(reader, 0) for _ in range(reader.length("data count"))]
    reader.expect_end("the access-request")
    if len(specifications) != len(data) or len(set(specifications)) != len(specifications):
        raise ContentError("an access-request needs one data item per distinct attribute")
    return dict(zip(specifications, data, strict=True))


def _specification(reader: Reader) -> bytes:
    specification = reader.take(_SPECIFICATION_SIZE, "attribute specification")
    if specification[0] != dlms.ACCESS_REQUEST_SET:
        raise ContentError(f"access-request specification {specification[0]:02X} is not a set")
    return specification


def _data(reader: Reader, depth: int) -> object:
    """One A-XDR value: the handful of types SR 1.6 uses, nested at most a few levels."""
    tag = reader.byte("data type")
    if tag in (dlms.ARRAY, dlms.STRUCTURE):
        if depth >= _MAX_DATA_DEPTH:
            raise ContentError("data nested too deeply")
        return tuple(_data(reader, depth + 1) for _ in range(reader.length("element count")))
    if tag == dlms.ENUM:
        return reader.byte("enum")
    if tag == dlms.DOUBLE_LONG:
        return int.from_bytes(reader.take(4, "double-long"), "big", signed=True)
    if tag == dlms.OCTET_STRING:
        return reader.octets("octet-string")
    if tag == dlms.BIT_STRING:
        bits = reader.length("bit-string length")
        raw = reader.take(-(-bits // 8), "bit-string")
        return format(int.from_bytes(raw, "big"), f"0{len(raw) * 8}b")[:bits] if raw else ""
    raise ContentError(f"DLMS data type {tag:02X} has no place in SR 1.6")


def _pair(value: object, what: str) -> tuple[object, object]:
    if not isinstance(value, tuple) or len(value) != 2:
        raise ContentError(f"{what} must be a structure of two")
    return value[0], value[1]


def _esme_settings(threshold: int, configuration: object) -> PrepaymentSettings:
    """The DUIS flags, read back from the credit/charge table the way the builder writes them."""
    if not isinstance(configuration, tuple):
        raise ContentError("the credit/charge configuration is not an array")
    rows = [_credit_charge_row(row) for row in configuration]
    return PrepaymentSettings(
        suspend_debt_disabled=any(
            charge in _DEBT_CHARGES and bits == _SUSPENDED_WHEN_DISABLED for _credit, charge, bits in rows
        ),
        suspend_debt_emergency=any(credit == _EMERGENCY_CREDIT for credit, _charge, _bits in rows),
        disablement_threshold=threshold,
    )


def _credit_charge_row(row: object) -> tuple[bytes, bytes, str]:
    if not isinstance(row, tuple) or len(row) != 3:
        raise ContentError("a credit/charge configuration row is a structure of three")
    credit, charge, bits = row
    if not isinstance(credit, bytes) or not isinstance(charge, bytes) or not isinstance(bits, str):
        raise ContentError("a credit/charge configuration row is (credit, charge, collection bits)")
    return credit, charge, bits


def _dlms_time(value: object) -> dt.datetime | None:
    """12-byte DLMS date-time: all zero is "now", all "not specified" cancels, else a UTC instant."""
    if not isinstance(value, bytes) or len(value) != 12:
        raise ContentError("the execution date-time is not a 12-byte octet-string")
    if value == dlms.DATE_TIME_IMMEDIATE:
        return None
    if value == dlms.DATE_TIME_NOT_SPECIFIED:
        return DUIS_CANCELLATION_DATE_TIME
    if value[9:11] != _DEVIATION_NOT_SPECIFIED:
        raise ContentError("execution date-times are UTC here (deviation not specified)")
    try:
        return dt.datetime(
            int.from_bytes(value[0:2], "big"), value[2], value[3], value[5], value[6], value[7],
            value[8] * 10_000, tzinfo=dt.UTC,
        )  # fmt: skip
    except ValueError as exc:
        raise ContentError(f"execution date-time is not a date: {exc}") from exc


# --- GSME: GBZ / ZCL Change Payment Mode --------------------------------------------------


def _read_gsme(content: bytes) -> PaymentModeCommand:
    reader = Reader(content)
    if reader.take(len(_GSME_HEADER), "GBZ header") != _GSME_HEADER:
        raise ContentError("not a single-component GBZ payload")
    if int.from_bytes(reader.take(2, "cluster"), "big") != zigbee.PREPAYMENT_CLUSTER:
        raise ContentError("not the ZCL Prepayment cluster")
    if int.from_bytes(reader.take(2, "ZCL length"), "big") != reader.remaining:
        raise ContentError("the ZCL command length disagrees with the content")
    frame_control, _sequence, command = reader.take(3, "ZCL header")
    if frame_control != zigbee.ZCL_FRAME_CONTROL or command != zigbee.CHANGE_PAYMENT_MODE_COMMAND:
        raise ContentError("not a ZCL Change Payment Mode command")
    payload = reader.take(_GSME_PAYLOAD_SIZE, "Change Payment Mode payload")
    reader.expect_end("the Change Payment Mode command")
    control = int.from_bytes(payload[12:14], "little")
    execute_at = _zigbee_time(int.from_bytes(payload[8:12], "little"))
    if not control & _GSME_PREPAYMENT_ENABLED:
        return PaymentModeCommand(True, None, execute_at)
    settings = PrepaymentSettings(
        suspend_debt_disabled=bool(control & _GSME_SUSPEND_DEBT_DISABLED),
        suspend_debt_emergency=not control & _GSME_EMERGENCY_DEBT,
        disablement_threshold=int.from_bytes(payload[14:18], "little", signed=True),
    )
    return PaymentModeCommand(False, settings, execute_at)


def _zigbee_time(seconds: int) -> dt.datetime | None:
    if seconds == zigbee.UTC_TIME_IMMEDIATE:
        return None
    if seconds == zigbee.UTC_TIME_NOT_SPECIFIED:
        return DUIS_CANCELLATION_DATE_TIME
    return zigbee.ZIGBEE_EPOCH + dt.timedelta(seconds=seconds)
