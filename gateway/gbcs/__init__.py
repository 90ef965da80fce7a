"""GBCS: the device-level messages the gateway issues, checks and forwards.

``apdu`` parses and encodes the General-Signing APDU (the signed envelope);
``ciphering`` the MAC header around it; ``payment_mode`` builds the SR 1.6
Pre-Command; ``signing`` signs, verifies and matches a Signed Pre-Command;
``reader`` reads any GBCS message's header and content kind; ``rtds`` is the
RTDS 4.5.0 vectors as a catalogue of use cases; ``readdress`` rewrites a
vector as one device's message about one request.
"""

from __future__ import annotations

from gateway.gbcs.apdu import CraFlag, GeneralSigningApdu
from gateway.gbcs.ciphering import GeneralCipheringApdu
from gateway.gbcs.errors import ApduError
from gateway.gbcs.message_codes import (
    CREDIT_MODE_CODES,
    DeviceType,
    MessageCode,
    update_payment_mode_message_code,
)
from gateway.gbcs.payment_mode import (
    DUIS_CANCELLATION_DATE_TIME,
    PrepaymentSettings,
    build_update_payment_mode_precommand,
)
from gateway.gbcs.signing import match_signed_precommand, sign_apdu, verify_apdu_signature

__all__ = [
    "CREDIT_MODE_CODES",
    "DUIS_CANCELLATION_DATE_TIME",
    "ApduError",
    "CraFlag",
    "DeviceType",
    "GeneralCipheringApdu",
    "GeneralSigningApdu",
    "MessageCode",
    "PrepaymentSettings",
    "build_update_payment_mode_precommand",
    "match_signed_precommand",
    "sign_apdu",
    "update_payment_mode_message_code",
    "verify_apdu_signature",
]
