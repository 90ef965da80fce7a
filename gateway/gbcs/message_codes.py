"""GBCS message codes (other-information, first two bytes) that SR 1.6 touches."""

from __future__ import annotations

from enum import IntEnum
from typing import Literal

DeviceType = Literal["ESME", "GSME"]


class MessageCode(IntEnum):
    """Codes as they appear, big-endian, in the RTDS 1.6 vectors."""

    ECS02_SET_ESME_CREDIT = 0x001A
    ECS03_SET_ESME_PREPAYMENT = 0x001B
    GCS02_SET_GSME_CREDIT = 0x006C
    GCS03_SET_GSME_PREPAYMENT = 0x006D
    FUTURE_DATED_ALERT_DLMS = 0x00CC
    """The ESME's alert when a future-dated command executes (content names the original)."""
    FUTURE_DATED_ALERT_GBZ = 0x00CD
    """The GSME's alert when a future-dated command executes."""


CREDIT_MODE_CODES = frozenset({MessageCode.ECS02_SET_ESME_CREDIT, MessageCode.GCS02_SET_GSME_CREDIT})
"""The codes whose content switches a meter to Credit mode (MP134B R5 allows only these)."""


def update_payment_mode_message_code(device_type: DeviceType, to_credit: bool) -> MessageCode:
    """The GBCS use case SR 1.6 maps to: ECS02/ECS03 for electricity, GCS02/GCS03 for gas."""
    if device_type == "ESME":
        return MessageCode.ECS02_SET_ESME_CREDIT if to_credit else MessageCode.ECS03_SET_ESME_PREPAYMENT
    if device_type == "GSME":
        return MessageCode.GCS02_SET_GSME_CREDIT if to_credit else MessageCode.GCS03_SET_GSME_PREPAYMENT
    raise ValueError(f"SR 1.6 targets an ESME or a GSME, not {device_type!r}")
