"""SR 1.6 Update Payment Mode: the GBCS Pre-Command the gateway issues on CV4.

The content reproduces the RTDS 1.6 vectors byte for byte; where the vectors are
the only source, the docstrings say so.

ESME (ECS02 credit / ECS03 prepayment), a DLMS access-request that sets:
  credit:      Account (class 111, 0-1:19.0.0.255) attributes 2, 11, 13
  prepayment:  Account 2, class 9000 0-0:94.44.128.22 attribute 4, Account 11,
               class 9000 attribute 6, Account 13
  Account 2 = {payment mode 1 credit / 2 prepayment, status 1}; class 9000
  attribute 4 = DisablementThreshold (double-long); Account 11 = the
  credit/charge configuration (table below); Account 13 and class 9000
  attribute 6 = the execution date-time.

GSME (GCS02 / GCS03), a ZCL Prepayment cluster "Change Payment Mode": provider
id 0, issuer event id, implementation UTCTime, payment control configuration,
cut-off value.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from gateway.eui64 import Eui64
from gateway.gbcs import dlms, zigbee
from gateway.gbcs.apdu import CraFlag, GeneralSigningApdu
from gateway.gbcs.message_codes import DeviceType, update_payment_mode_message_code

DUIS_CANCELLATION_DATE_TIME = datetime(3000, 12, 31, tzinfo=UTC)
"""A DUIS ExecutionDateTime of 3000-12-31T00:00:00Z cancels a future-dated change."""
INT32_RANGE = range(-(1 << 31), 1 << 31)

# --- ESME ------------------------------------------------------------------

_ACCOUNT = bytes.fromhex("0001130000FF")  # 0-1:19.0.0.255
_GB_PREPAYMENT = bytes.fromhex("00005E2C8016")  # 0-0:94.44.128.22
ACCOUNT_MODE_AND_STATUS = dlms.CosemAttribute(111, _ACCOUNT, 2)
ACCOUNT_CREDIT_CHARGE_CONFIGURATION = dlms.CosemAttribute(111, _ACCOUNT, 11)
ACCOUNT_ACTIVATION_TIME = dlms.CosemAttribute(111, _ACCOUNT, 13)
DISABLEMENT_THRESHOLD = dlms.CosemAttribute(9000, _GB_PREPAYMENT, 4)
DISABLEMENT_THRESHOLD_TIME = dlms.CosemAttribute(9000, _GB_PREPAYMENT, 6)

_PAYMENT_MODE_CREDIT, _PAYMENT_MODE_PREPAYMENT, _ACCOUNT_STATUS = 1, 2, 1


def _credit(n: int) -> bytes:
    return bytes([0, 0, 19, 10, n, 255])  # 0-0:19.10.n.255


def _charge(n: int) -> bytes:
    return bytes([0, 0, 19, 20, n, 255])  # 0-0:19.20.n.255


# (credit, charge) pairs in the order the vectors list them. Credit 2 is the
# emergency credit, charges 1 and 2 the debts, charge 5 the second element's.
_CREDIT_MODE_PAIRS = ((0, 0), (0, 4))
_PREPAYMENT_PAIRS = ((0, 0), (0, 4), (0, 1), (0, 2), (0, 3), (1, 3), (1, 0), (1, 4), (1, 1), (1, 2))
_EMERGENCY_CREDIT_PAIRS = ((2, 4), (2, 1), (2, 2))
_TWIN_CREDIT_MODE_PAIRS = ((0, 5),)
_TWIN_PREPAYMENT_PAIRS = ((0, 5), (1, 5))
_DEBT_CHARGES = frozenset({1, 2})
_COLLECT_ALWAYS, _COLLECT_SUSPENDED_WHEN_DISABLED = "111", "110"

# --- GSME ------------------------------------------------------------------

RTDS_ISSUER_EVENT_ID = 0x1C37_4A80
"""Constant in every RTDS GSME command (2015-01-01T00:00:00Z as UTCTime); the DUIS
request does not carry it and the vectors show no rule, so it is fixed here."""
_GSME_PROVIDER_ID = 0
_GSME_CREDIT_CONFIGURATION = 0x0C94
_GSME_PREPAYMENT_CONFIGURATION = 0x0097
_GSME_DEBT_CONFIGURATION = 0x0400  # set when SuspendDebtDisabled
_GSME_EMERGENCY_DEBT_CONFIGURATION = 0x0800  # set when not SuspendDebtEmergency
_GSME_CREDIT_CUT_OFF = -1  # FFFFFFFF in every credit-mode vector


@dataclass(frozen=True, slots=True)
class PrepaymentSettings:
    """The DUIS ``sr:Prepayment`` element of SR 1.6."""

    suspend_debt_disabled: bool
    suspend_debt_emergency: bool
    disablement_threshold: int
    """Sent as a signed 32-bit value, unscaled (556677 in DUIS is 00087E85 on the wire)."""

    def __post_init__(self) -> None:
        if self.disablement_threshold not in INT32_RANGE:
            raise ValueError("DisablementThreshold does not fit a signed 32-bit value")


def build_update_payment_mode_precommand(
    *,
    counter: int,
    originator: Eui64,
    recipient: Eui64,
    device_type: DeviceType,
    to_credit: bool,
    execution_date_time: datetime | None = None,
    prepayment: PrepaymentSettings | None = None,
    twin_element: bool = False,
) -> GeneralSigningApdu:
    """The unsigned Pre-Command for SR 1.6, as the DCC returns it on CV4 (no signature field).

    ``execution_date_time`` None means immediate; DUIS_CANCELLATION_DATE_TIME
    cancels; otherwise it must be timezone-aware. ``twin_element`` (ESME only)
    is a property of the meter, not of the request: the caller knows it from
    the device inventory.
    """
    _check_mode(to_credit, prepayment)
    when = _aware(execution_date_time)
    code = update_payment_mode_message_code(device_type, to_credit)
    if device_type == "ESME":
        content = _esme_content(counter, prepayment, when, twin_element)
    elif twin_element:
        raise ValueError("a twin element is an ESME variant; a GSME has none")
    else:
        content = _gsme_content(prepayment, when)
    return GeneralSigningApdu(
        cra_flag=CraFlag.COMMAND,
        counter=counter,
        originator=originator,
        recipient=recipient,
        date_time=None,
        message_code=code,
        other_information=code.to_bytes(2, "big"),
        content=content,
    )


def _check_mode(to_credit: bool, prepayment: PrepaymentSettings | None) -> None:
    if to_credit and prepayment is not None:
        raise ValueError("a change to Credit carries no prepayment settings")
    if not to_credit and prepayment is None:
        raise ValueError("a change to Prepayment needs its prepayment settings")


def _aware(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.utcoffset() is None:
        raise ValueError("execution date-time must be timezone-aware (DUIS times are UTC)")
    return moment


def _is_cancellation(moment: datetime) -> bool:
    return moment == DUIS_CANCELLATION_DATE_TIME


# --- ESME content ------------------------------------------------------------


def _esme_content(counter: int, prepayment: PrepaymentSettings | None, when: datetime | None, twin: bool) -> bytes:
    execution = dlms.octet_string(_dlms_execution_time(when))
    if prepayment is None:
        return dlms.access_request(
            counter,
            (
                ACCOUNT_MODE_AND_STATUS.set_specification(),
                ACCOUNT_CREDIT_CHARGE_CONFIGURATION.set_specification(),
                ACCOUNT_ACTIVATION_TIME.set_specification(),
            ),
            (_mode_and_status(_PAYMENT_MODE_CREDIT), _CREDIT_MODE_CONFIGURATIONS[twin], execution),
        )
    return dlms.access_request(
        counter,
        (
            ACCOUNT_MODE_AND_STATUS.set_specification(),
            DISABLEMENT_THRESHOLD.set_specification(),
            ACCOUNT_CREDIT_CHARGE_CONFIGURATION.set_specification(),
            DISABLEMENT_THRESHOLD_TIME.set_specification(),
            ACCOUNT_ACTIVATION_TIME.set_specification(),
        ),
        (
            _mode_and_status(_PAYMENT_MODE_PREPAYMENT),
            dlms.double_long(prepayment.disablement_threshold),
            _prepayment_configuration(prepayment, twin),
            execution,
            execution,
        ),
    )


def _dlms_execution_time(when: datetime | None) -> bytes:
    if when is None:
        return dlms.DATE_TIME_IMMEDIATE
    if _is_cancellation(when):
        return dlms.DATE_TIME_NOT_SPECIFIED
    return dlms.date_time(when)


def _mode_and_status(payment_mode: int) -> bytes:
    return dlms.structure(dlms.enum(payment_mode), dlms.enum(_ACCOUNT_STATUS))


def _credit_mode_configuration(twin: bool) -> bytes:
    pairs = _CREDIT_MODE_PAIRS + (_TWIN_CREDIT_MODE_PAIRS if twin else ())
    return dlms.array(tuple(_credit_charge(credit, charge, _COLLECT_ALWAYS) for credit, charge in pairs))


def _prepayment_configuration(settings: PrepaymentSettings, twin: bool) -> bytes:
    """The credit/charge table, inferred from the three RTDS ECS03 vectors.

    SuspendDebtDisabled clears the last collection bit of the debt charges on
    credits 0 and 1; the emergency-credit rows are present exactly when
    SuspendDebtEmergency is true (as the vectors pair them with the templates).
    """
    pairs: tuple[tuple[int, int], ...] = _PREPAYMENT_PAIRS
    pairs += _EMERGENCY_CREDIT_PAIRS if settings.suspend_debt_emergency else ()
    pairs += _TWIN_PREPAYMENT_PAIRS if twin else ()
    return dlms.array(
        tuple(_credit_charge(credit, charge, _collection(settings, credit, charge)) for credit, charge in pairs)
    )


def _collection(settings: PrepaymentSettings, credit: int, charge: int) -> str:
    suspended = settings.suspend_debt_disabled and credit in (0, 1) and charge in _DEBT_CHARGES
    return _COLLECT_SUSPENDED_WHEN_DISABLED if suspended else _COLLECT_ALWAYS


def _credit_charge(credit: int, charge: int, collection: str) -> bytes:
    return dlms.structure(
        dlms.octet_string(_credit(credit)), dlms.octet_string(_charge(charge)), dlms.bit_string(collection)
    )


_CREDIT_MODE_CONFIGURATIONS: Final = (_credit_mode_configuration(twin=False), _credit_mode_configuration(twin=True))
"""The credit mode's credit/charge table, single and twin element: the same bytes in every SR 1.6
to Credit (the one the SoLR Contingency role sends), so encoded once, not per Pre-Command."""


# --- GSME content ------------------------------------------------------------


def _gsme_content(prepayment: PrepaymentSettings | None, when: datetime | None) -> bytes:
    payload = (
        zigbee.u32(_GSME_PROVIDER_ID)
        + zigbee.u32(RTDS_ISSUER_EVENT_ID)
        + zigbee.u32(_zigbee_execution_time(when))
        + zigbee.u16(_gsme_payment_control(prepayment))
        + zigbee.s32(_GSME_CREDIT_CUT_OFF if prepayment is None else prepayment.disablement_threshold)
    )
    return zigbee.gbz_single_command(zigbee.PREPAYMENT_CLUSTER, zigbee.CHANGE_PAYMENT_MODE_COMMAND, payload)


def _zigbee_execution_time(when: datetime | None) -> int:
    if when is None:
        return zigbee.UTC_TIME_IMMEDIATE
    if _is_cancellation(when):
        return zigbee.UTC_TIME_NOT_SPECIFIED
    return zigbee.utc_time(when)


def _gsme_payment_control(prepayment: PrepaymentSettings | None) -> int:
    """Payment Control Configuration bits, inferred from the RTDS GCS02/GCS03 vectors."""
    if prepayment is None:
        return _GSME_CREDIT_CONFIGURATION
    value = _GSME_PREPAYMENT_CONFIGURATION
    if prepayment.suspend_debt_disabled:
        value |= _GSME_DEBT_CONFIGURATION
    if not prepayment.suspend_debt_emergency:
        value |= _GSME_EMERGENCY_DEBT_CONFIGURATION
    return value
