"""Signed DUIS responses: the gateway's answers, results and alerts, signed with its 89 certificate."""

from __future__ import annotations

import datetime as dt

from lxml import etree

from gateway.codes import ResponseCode
from gateway.respond import documents
from gateway.signing import EnvelopedSigner, SigningKey
from gateway.store.base import DeviceCommand
from gateway.verify.documents import MessageId, VerifiedRequest


PRE_COMMAND_GBCS_VERSION = "4.0"
"""The GBCS version the gateway's CV4 Pre-Commands are written for (SR 1.6 per the RTDS vectors)."""


class ResponseSigner:
    """Builds and signs sr:Response documents. Stateless apart from the key: safe in any thread."""

    def __init__(self, key: SigningKey) -> None:
        self._key = key
        self._signer = EnvelopedSigner(key)

    def sign(self, root: etree._Element) -> bytes:
        return self._signer.sign(root)

    def answer(
        self, request: VerifiedRequest, code: ResponseCode, at: dt.datetime, *, pre_command: bytes | None = None
    ) -> bytes:
        """The synchronous answer to an authenticated request."""
        request_id = request.request_id
        if not code.is_success:
            root = documents.error_response(
                request_id=request_id,
                code=code,
                at=at,
                service_reference=request.service_reference,
                service_reference_variant=request.service_reference_variant,
            )
            return self.sign(root)
        root = documents.response_message(
            request_id=request_id,
            response_id=request_id.swapped(),
            code=code,
            at=at,
            service_reference=request.service_reference,
            service_reference_variant=request.service_reference_variant,
            pre_command=documents.PreCommand(PRE_COMMAND_GBCS_VERSION, pre_command) if pre_command is not None else None,
        )
        return self.sign(root)

    def command_result(
        self,
        command: DeviceCommand,
        code: ResponseCode,
        at: dt.datetime,
        gbcs_payload: bytes | None = None,
        payload: etree._Element | None = None,
    ) -> bytes:
        """The asynchronous result of a queued command (I0 executed, with the device's GBCS response
        or the DCC's non-device ``payload`` when there is one; E20, E21 not), for the originator."""
        if not code.is_success:
            root = documents.error_response(
                request_id=command.request_id,
                code=code,
                at=at,
                service_reference=command.service_reference,
                service_reference_variant=command.service_reference_variant,
            )
            return self.sign(root)
        root = documents.response_message(
            request_id=command.request_id,
            response_id=str(MessageId.parse(command.request_id).swapped()),
            code=code,
            at=at,
            service_reference=command.service_reference,
            service_reference_variant=command.service_reference_variant,
            gbcs_payload=gbcs_payload or None,
            payload=payload,
        )
        return self.sign(root)

    def device_result(self, request: VerifiedRequest, at: dt.datetime, gbcs_payload: bytes | None = None) -> bytes:
        """The asynchronous result of a command the device executed (I0), for the user's endpoint."""
        root = documents.response_message(
            request_id=str(request.request_id),
            response_id=str(request.request_id.swapped()),
            code=ResponseCode.I0,
            at=at,
            service_reference=request.service_reference,
            service_reference_variant=request.service_reference_variant,
            gbcs_payload=gbcs_payload or None,
        )
        return self.sign(root)
