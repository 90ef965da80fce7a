"""The critical-command flow for SMETS2 devices: CV4 issues a Pre-Command, CV5 returns it signed.

CV4: the gateway turns the signed request into the GBCS general-signing APDU
(no signature) and remembers it per RequestID: for SR 1.6 built from the body
(:mod:`gateway.gbcs.payment_mode`), for every other critical SRV the RTDS
vector's Pre-Command of its use case, re-addressed to the target device and
the request (:class:`~gateway.gbcs.readdress.VectorAnswers`; its content is
the vector's, not the request's values: a README limit). Without the vectors
the simulator cannot, and says so (:class:`SimulatorLimit`, not a DUIS code). CV5: the user sends
the same APDU signed with its Supplier DS key; the gateway checks it is
exactly the Pre-Command it issued plus a signature, and for the SoLR
Contingency role that the message code sets Credit (ECS02 ``0x001A`` /
GCS02 ``0x006C``, MP134B R5). The gateway does not verify the GBCS
signature: the meter does, against its trust anchor (that is where the SC
role's lack of DS keys of its own matters, MP134B R2).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from dataclasses import dataclass

from lxml import etree

from gateway.codes import ResponseCode
from gateway.gbcs import (
    CREDIT_MODE_CODES,
    ApduError,
    GeneralSigningApdu,
    PrepaymentSettings,
    build_update_payment_mode_precommand,
    match_signed_precommand,
)
from gateway.gbcs.readdress import VectorAnswers
from gateway.namespaces import SR, qname
from gateway.policy.eligibility import CONTINGENCY_ROLE
from gateway.policy.state import Device
from gateway.verify.documents import VerifiedRequest

UPDATE_PAYMENT_MODE_SRV = "1.6"
_SR = f"{{{SR}}}"


class SimulatorLimit(Exception):
    """What the simulator cannot do for a valid request (answered 501, never as a DUIS code)."""


class CriticalFlowError(Exception):
    """A DUIS code and reason for the caller to answer with."""

    def __init__(self, code: ResponseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class PaymentModeChange:
    to_credit: bool
    execution_date_time: dt.datetime | None
    prepayment: PrepaymentSettings | None


def read_payment_mode_change(body: etree._Element) -> PaymentModeChange:
    """Reads a schema-valid sr:UpdatePaymentMode body."""
    when_text = body.findtext(_SR + "ExecutionDateTime")
    when = dt.datetime.fromisoformat(when_text.replace("Z", "+00:00")) if when_text else None
    prepayment = body.find(_SR + "Prepayment")
    if prepayment is None:
        return PaymentModeChange(True, when, None)
    settings = PrepaymentSettings(
        suspend_debt_disabled=prepayment.findtext(_SR + "SuspendDebtDisabled") in ("true", "1"),
        suspend_debt_emergency=prepayment.findtext(_SR + "SuspendDebtEmergency") in ("true", "1"),
        disablement_threshold=int(prepayment.findtext(_SR + "DisablementThreshold") or "0"),
    )
    return PaymentModeChange(False, when, settings)


def issue_precommand(
    request: VerifiedRequest, device: Device, vectors: VectorAnswers | None, now: dt.datetime
) -> GeneralSigningApdu:
    """The CV4 Pre-Command: SR 1.6 built from its body, any other critical SRV from its RTDS vector."""
    if request.service_reference_variant == UPDATE_PAYMENT_MODE_SRV and request.body.tag == qname(SR, "UpdatePaymentMode"):
        change = read_payment_mode_change(request.body)
        return build_update_payment_mode_precommand(
            counter=request.request_id.counter,
            originator=request.originator,
            recipient=request.target,
            device_type="ESME" if device.device_type == "ESME" else "GSME",
            to_credit=change.to_credit,
            execution_date_time=change.execution_date_time,
            prepayment=change.prepayment,
        )
    srv = request.service_reference_variant
    if vectors is None:
        raise SimulatorLimit(
            f"no RTDS GBCS vectors are configured ([simulation] gbcs_vectors in gateway.toml): this "
            f"simulator builds the Pre-Command of SR 1.6 only, not of SRV {srv}"
        )
    apdu = vectors.precommand(
        srv=srv, device_type=device.device_type, device_id=request.target, requester=request.originator,
        counter=request.request_id.counter, body=request.body, now=now,
    )  # fmt: skip
    if apdu is None:
        raise SimulatorLimit(f"the RTDS vectors hold no Pre-Command for SRV {srv} on a {device.device_type}")
    return apdu


def signed_precommand_payload(request: VerifiedRequest) -> bytes:
    """The GBCS payload of a CV5 sr:SignedPreCommand body."""
    if request.body.tag != qname(SR, "SignedPreCommand"):
        raise CriticalFlowError(ResponseCode.E42, "command variant 5 carries an sr:SignedPreCommand body")
    text = request.body.findtext(_SR + "GBCSPayload") or ""
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CriticalFlowError(ResponseCode.E42, "GBCSPayload is not valid base64") from exc


def check_signed_precommand(issued: bytes, returned: bytes, role: str | None) -> GeneralSigningApdu:
    """E42 unless ``returned`` is the issued Pre-Command plus a signature (and, for SC, sets Credit)."""
    try:
        signed = match_signed_precommand(GeneralSigningApdu.parse(issued), GeneralSigningApdu.parse(returned))
    except ApduError as exc:
        raise CriticalFlowError(ResponseCode.E42, f"Signed Pre-Command rejected: {exc}") from exc
    if role == CONTINGENCY_ROLE and signed.message_code not in CREDIT_MODE_CODES:
        raise CriticalFlowError(
            ResponseCode.E42,
            f"the SoLR Contingency role may only send ECS02 0x001A or GCS02 0x006C, not {signed.message_code:#06x}",
        )
    return signed
