"""What an accepted Service Request asks of its device: the :class:`DeviceCommand` the store queues.

Built only from the verified (signed) request: a Signed Pre-Command (CV5-7)
goes as the APDU the supplier signed; any other device request (CV1-3) as the
signed body element, which the device's behaviour reads
(:mod:`gateway.devices.behaviours`); a non-device request (CV8) is answered by
the DCC, not a device.
"""

from __future__ import annotations

import datetime as dt

from lxml import etree

from gateway.store.base import CommandForm, DeviceCommand
from gateway.verify.documents import VerifiedRequest

NON_DEVICE = 8
"""The command variant of a request the DCC answers itself (no device)."""


def device_command(request: VerifiedRequest, at: dt.datetime, *, signed_pre_command: bytes | None = None) -> DeviceCommand:
    if signed_pre_command is not None:
        form, payload = CommandForm.SIGNED_PRE_COMMAND, signed_pre_command
    elif request.command_variant == NON_DEVICE:
        form, payload = CommandForm.ACKNOWLEDGE, etree.tostring(request.body, method="c14n", exclusive=True)
    else:
        form, payload = CommandForm.SR_BODY, etree.tostring(request.body, method="c14n", exclusive=True)
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
