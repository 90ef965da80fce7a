"""The GBZ (ZigBee Smart Energy) framing that GSME (gas) content needs.

A GSME command's content is a GBZ payload: profile id ``0109``, a component
count, then components, each a ZCL command with a small extended header.
Multi-byte ZCL fields are little-endian.
"""

from __future__ import annotations

from datetime import UTC, datetime

GBZ_PROFILE_ID = 0x0109
PREPAYMENT_CLUSTER = 0x0705
CHANGE_PAYMENT_MODE_COMMAND = 0x06
EXTENDED_HEADER_CONTROL = 0x01
"""As in every single-component RTDS GSME command."""
ZCL_FRAME_CONTROL = 0x01
"""Cluster-specific command, client to server."""
ZCL_SEQUENCE_NUMBER = 0x00

ZIGBEE_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
UTC_TIME_IMMEDIATE = 0x0000_0000
UTC_TIME_NOT_SPECIFIED = 0xFFFF_FFFF


def utc_time(moment: datetime) -> int:
    """ZigBee UTCTime: whole seconds since 2000-01-01T00:00:00Z; 0 and FFFFFFFF are reserved."""
    seconds = int((moment.astimezone(UTC) - ZIGBEE_EPOCH).total_seconds())
    if not UTC_TIME_IMMEDIATE < seconds < UTC_TIME_NOT_SPECIFIED:
        raise ValueError(f"{moment.isoformat()} cannot be a ZigBee UTCTime")
    return seconds


def gbz_single_command(cluster: int, command: int, zcl_payload: bytes) -> bytes:
    """A GBZ payload with one component carrying one ZCL command."""
    zcl = bytes([ZCL_FRAME_CONTROL, ZCL_SEQUENCE_NUMBER, command]) + zcl_payload
    component = bytes([EXTENDED_HEADER_CONTROL]) + cluster.to_bytes(2, "big") + len(zcl).to_bytes(2, "big") + zcl
    return GBZ_PROFILE_ID.to_bytes(2, "big") + b"\x01" + component


def u32(value: int) -> bytes:
    return value.to_bytes(4, "little")


def u16(value: int) -> bytes:
    return value.to_bytes(2, "little")


def s32(value: int) -> bytes:
    return value.to_bytes(4, "little", signed=True)
