"""What a simulated meter tells its supplier on its own initiative: device alerts.

The codes are GBCS alert codes, named as in the GBCS alert table (read from the
alert list of SmartDCCInnovation/gbcs-parser, ``src/util.ts``):

=========================  ======  ==========================================================
kind                       code    GBCS name
=========================  ======  ==========================================================
LOW_CREDIT                 0x810D  Combined Credit Below Low Credit Threshold (prepayment mode)
EMERGENCY_CREDIT_ACTIVATED 0x81AB  Emergency Credit Activated
SUPPLY_DISABLED            0x8F0F  Credit Below Disablement Threshold (prepayment mode)
PAYMENT_MODE_CHANGED       0x8F66  Future-date HAN Interface Command Successfully Actioned
                                   (a future-dated SR 1.6 executing: the RTDS 1.6 vectors
                                   carry exactly this alert, ``*_8F66_FUTURE_DATED_*``)
                           0x8154  Immediate HAN Interface Command Received and Successfully
                                   Actioned (convention: an immediate SR 1.6 is reported in
                                   the command's response, not by an alert; the simulator
                                   raises this one so that every change of mode is visible
                                   in the alert stream, as MP134B R7 routes alerts to the SRP)
=========================  ======  ==========================================================
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from gateway.eui64 import Eui64


class AlertKind(enum.Enum):
    """The alerts the simulated meters raise; ``code`` is the usual GBCS alert code."""

    LOW_CREDIT = "LowCredit"
    EMERGENCY_CREDIT_ACTIVATED = "EmergencyCreditActivated"
    SUPPLY_DISABLED = "SupplyDisabled"
    PAYMENT_MODE_CHANGED = "PaymentModeChanged"

    @property
    def code(self) -> int:
        return _DEFAULT_CODES[self]


LOW_CREDIT_CODE = 0x810D
EMERGENCY_CREDIT_ACTIVATED_CODE = 0x81AB
CREDIT_BELOW_DISABLEMENT_THRESHOLD_CODE = 0x8F0F
FUTURE_DATED_COMMAND_ACTIONED_CODE = 0x8F66
IMMEDIATE_COMMAND_ACTIONED_CODE = 0x8154

_DEFAULT_CODES = {
    AlertKind.LOW_CREDIT: LOW_CREDIT_CODE,
    AlertKind.EMERGENCY_CREDIT_ACTIVATED: EMERGENCY_CREDIT_ACTIVATED_CODE,
    AlertKind.SUPPLY_DISABLED: CREDIT_BELOW_DISABLEMENT_THRESHOLD_CODE,
    AlertKind.PAYMENT_MODE_CHANGED: IMMEDIATE_COMMAND_ACTIONED_CODE,
}


@dataclass(frozen=True, slots=True)
class MeterAlert:
    """One alert, stamped with the instant the event happened (not when it was noticed)."""

    device_id: Eui64
    kind: AlertKind
    at: dt.datetime
    detail: str
    alert_code: int

    def to_json(self) -> dict[str, object]:
        return {
            "device_id": str(self.device_id),
            "kind": self.kind.value,
            "alert_code": f"{self.alert_code:04X}",
            "at": self.at.astimezone(dt.UTC).isoformat(),
            "detail": self.detail,
        }


def alert(device_id: Eui64, kind: AlertKind, at: dt.datetime, detail: str, code: int | None = None) -> MeterAlert:
    """A MeterAlert with the kind's usual code unless ``code`` says otherwise."""
    return MeterAlert(device_id, kind, at, detail, kind.code if code is None else code)
