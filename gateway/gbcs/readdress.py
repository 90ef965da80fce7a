"""An RTDS vector rewritten as one device's message about one request.

A vector is DCC Boxed's device answering DCC Boxed's supplier. Re-addressed, it reads as the
simulated device's own message: originator and recipient replaced, the transaction counter
the request's (a response echoes its command's counter; a Pre-Command carries the DUIS
RequestID's), the header date-time the clock's (where the vector has one), and the DLMS
long-invoke-id in the content (its low 24 bits are the counter in every vector) the counter's.

What cannot be rewritten faithfully is said, not hidden:

* a device signature (responses to critical commands, some alerts): the simulator holds no
  device private keys, so a re-addressed signed message carries the **null** signature
  (``00``), never the vector's signature over other bytes;
* the General-Ciphering MAC: keyed by key agreement with the device's key the simulator lacks,
  so it is twelve zero bytes, never the vector's tag over other bytes.

:class:`VectorAnswers` joins the catalogue and the re-addressing: the device side asks it for
the response of a use case (:meth:`VectorAnswers.response`), CV4 for the Pre-Command
(:meth:`VectorAnswers.precommand`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

from lxml import etree

from gateway.eui64 import Eui64
from gateway.gbcs import dlms
from gateway.gbcs.apdu import GeneralSigningApdu
from gateway.gbcs.ciphering import MAC_SIZE
from gateway.gbcs.errors import ApduError
from gateway.gbcs.reader import LONG_INVOKE_ID_SIZE, GbcsMessage, read_message
from gateway.gbcs.rtds import RtdsCatalogue, UseCase, VectorKind
from gateway.verify.documents import MessageId

_ZERO_MAC = bytes(MAC_SIZE)
_NULL_SIGNATURE = b""


def readdress(
    message: GbcsMessage, *, originator: Eui64, recipient: Eui64, counter: int, at: dt.datetime
) -> bytes:
    """``message`` from ``originator`` to ``recipient`` for ``counter`` at ``at`` (see the module docstring)."""
    apdu = message.apdu
    content = apdu.content
    if message.content_kind.is_dlms:
        content = content[:1] + _invoke_id(content[1 : 1 + LONG_INVOKE_ID_SIZE], counter) + content[1 + LONG_INVOKE_ID_SIZE :]
    rewritten = replace(
        apdu,
        originator=originator,
        recipient=recipient,
        counter=counter,
        date_time=None if apdu.date_time is None else dlms.date_time(at),
        content=content,
        signature=_NULL_SIGNATURE if apdu.is_signed else apdu.signature,
    )
    if message.ciphering is None:
        return rewritten.encode()
    return replace(message.ciphering, payload=rewritten, mac=_ZERO_MAC).encode()


def _invoke_id(vector_invoke_id: bytes, counter: int) -> bytes:
    """The vector's priority bits with the counter's low 24 bits."""
    high = int.from_bytes(vector_invoke_id, "big") & ~dlms.INVOKE_ID_MASK
    return (high | (counter & dlms.INVOKE_ID_MASK)).to_bytes(LONG_INVOKE_ID_SIZE, "big")


class VectorAnswers:
    """The catalogue's vectors, re-addressed to the simulated world (a ``ResponseVectors`` for the fleet)."""

    def __init__(self, catalogue: RtdsCatalogue) -> None:
        self.catalogue = catalogue
        self._message_codes: dict[tuple[str, str], frozenset[int]] = {}
        """A memo of :meth:`message_codes` (each entry the same whichever thread adds it)."""

    def use_case(
        self, srv: str, device_type: str, body: etree._Element | None, command: bytes | None = None
    ) -> UseCase | None:
        """The use case of a request: from a Signed Pre-Command's message code when there is one, else
        from the SRV, device type and DUIS body."""
        if command is not None:
            try:
                code = read_message(command).message_code
            except ApduError:
                code = None
            by_code = [u for u in self.catalogue.use_cases(srv) if u.message_code == code]
            if by_code:
                return next((u for u in by_code if device_type in u.device_types), by_code[0])
        return self.catalogue.use_case_for(srv, device_type, body)

    def response(
        self,
        *,
        srv: str,
        device_type: str,
        device_id: Eui64,
        requester: Eui64,
        request_id: str,
        now: dt.datetime,
        body: etree._Element | None = None,
        command: bytes | None = None,
    ) -> bytes | None:
        """The use case's response as ``device_id``'s answer to ``request_id``; None when it has none."""
        use_case = self.use_case(srv, device_type, body, command)
        vector = None if use_case is None else self.catalogue.vector(use_case, VectorKind.RESPONSE, device_type, body)
        if vector is None:
            return None
        return readdress(vector.message, originator=device_id, recipient=requester, counter=MessageId.parse(request_id).counter, at=now)

    def precommand(
        self,
        *,
        srv: str,
        device_type: str,
        device_id: Eui64,
        requester: Eui64,
        counter: int,
        body: etree._Element,
        now: dt.datetime,
    ) -> GeneralSigningApdu | None:
        """The use case's Pre-Command from ``requester`` to ``device_id`` with the request's counter."""
        use_case = self.catalogue.use_case_for(srv, device_type, body)
        vector = None if use_case is None else self.catalogue.vector(use_case, VectorKind.PRECOMMAND, device_type, body)
        if vector is None:
            return None
        encoded = readdress(vector.message, originator=requester, recipient=device_id, counter=counter, at=now)
        return GeneralSigningApdu.parse(encoded)

    def message_codes(self, srv: str, device_type: str) -> frozenset[int]:
        """Every command message code of ``srv``'s use cases for ``device_type`` (what a device accepts)."""
        codes = self._message_codes.get((srv, device_type))
        if codes is None:
            use_cases = self.catalogue.use_cases(srv)
            for_type = [u for u in use_cases if device_type in u.device_types] or list(use_cases)
            codes = frozenset(u.message_code for u in for_type if u.message_code is not None)
            self._message_codes[(srv, device_type)] = codes
        return codes
