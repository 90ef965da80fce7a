"""What an accepted Service Request asks of its device: the :class:`DeviceCommand` the store queues.

Built only from the verified (signed) request: SR 1.6 to a SMETS1 meter, and the
prepayment SRVs the meters act on (2.2 Top Up, 2.5 Emergency Credit, 4.18 Read
Meter Balance), go as the signed body element; a Signed Pre-Command (CV5) as the
APDU the supplier signed; any other SRV is acknowledged by the simulated device.
"""

from __future__ import annotations

import datetime as dt

from lxml import etree

from gateway.devices.prepayment_commands import PREPAYMENT_BODIES
from gateway.namespaces import SR
from gateway.store.base import CommandForm, DeviceCommand
from gateway.verify.documents import VerifiedRequest

UPDATE_PAYMENT_MODE = f"{{{SR}}}UpdatePaymentMode"


def device_command(request: VerifiedRequest, at: dt.datetime, *, signed_pre_command: bytes | None = None) -> DeviceCommand:
    if signed_pre_command is not None:
        form, payload = CommandForm.SIGNED_PRE_COMMAND, signed_pre_command
    elif request.body.tag == UPDATE_PAYMENT_MODE or request.body.tag in PREPAYMENT_BODIES:
        form, payload = CommandForm.SR_BODY, etree.tostring(request.body, method="c14n", exclusive=True)
    else:
        form, payload = CommandForm.ACKNOWLEDGE, b""
    return DeviceCommand(
        request_id=str(request.request_id),
        originator=request.originator,
        device_id=request.target,
        service_reference=request.service_reference,
        service_reference_variant=request.service_reference_variant,
        form=form,
        payload=payload,
        queued_at=at,
    )
