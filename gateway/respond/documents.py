"""Unsigned ``sr:Response`` documents, valid under the official DUIS 5.4 XSD.

Pure functions: values in, a fresh lxml tree out. Signing is a later, separate
step (it appends ``ds:Signature`` as the root's last child), so nothing here
reserves room for it. Shapes, per the official XSD:

* ``Header``: ``RequestID?``, ``ResponseID?``, ``ResponseCode``, ``ResponseDateTime``.
* ``Body``: exactly one of ``ResponseMessage``, ``DeviceAlertMessage``,
  ``DCCAlertMessage`` (an empty Body is invalid).
* ``ResponseMessage``: ``ServiceReference``, ``ServiceReferenceVariant``, then
  at most one payload (``PreCommand`` or ``GBCSPayload`` here).

Error responses (E codes after authentication) are therefore a
``ResponseMessage`` that echoes the request's Service Reference and Variant and
carries no payload: the smallest body the official XSD allows, and the one that
tells the user which request failed without inventing content.

Alerts answer no request, so their header has a ``ResponseID`` (originator,
recipient, counter) and no ``RequestID``, and ``ResponseCode`` ``I0``: this
project's reading of DUIS, which the XSD permits but the public record does
not spell out.
"""

from __future__ import annotations

import base64
import datetime as dt
import enum
import re
from dataclasses import dataclass

from lxml import etree

from gateway.codes import ResponseCode
from gateway.eui64 import Eui64
from gateway.namespaces import SR, qname
from gateway.verify.documents import MessageId

SCHEMA_VERSION = "5.4"
"""The DUIS schema version the gateway writes."""

QUARANTINE_ALERT_CODE = "AD1"
"""DCC alert code for a request quarantined by anomaly detection."""

_MAX_COUNTER = (1 << 64) - 1
_MAX_EVENT_REF = 10**20 - 1  # the XSD caps QuarantineEventRef at 20 digits
_ID_SHAPE = re.compile(r"\A([^:]+):([^:]+):(0|[1-9][0-9]*)\Z")


@dataclass(frozen=True, slots=True)
class PreCommand:
    """The CV 4 answer: the unsigned GBCS command the user must sign."""

    gbcs_version: str
    """GBCS version the payload is written for, as DUIS carries it (e.g. ``"4.0"``)."""
    gbcs_payload: bytes


class QuarantineBreach(enum.Enum):
    """Which anomaly-detection threshold a quarantined request breached."""

    USER_THRESHOLD = "ADUserThresholdBreach"
    """The user's own ADT thresholds (the only kind this simulator raises)."""
    DCC_THRESHOLD = "ADDCCThresholdBreach"
    ATTRIBUTE_LIMITS = "ADAttributeLimitsBreach"


# --- identifiers ---------------------------------------------------------------


def message_id(originator: Eui64, target: Eui64, counter: int) -> str:
    """``originator:target:counter`` as DUIS writes Request and Response IDs."""
    return f"{originator}:{target}:{_counter(counter)}"


def response_id_for(request_id: str) -> str:
    """The ResponseID answering ``request_id``: originator and target swapped, same counter."""
    originator, target, counter = _parse_message_id(request_id)
    return message_id(target, originator, counter)


def _parse_message_id(text: str) -> tuple[Eui64, Eui64, int]:
    """Splits a Request/Response ID; hex of either case, as the XSD allows."""
    match = _ID_SHAPE.match(text)
    if match is None:
        raise ValueError(f"not a DUIS message ID (originator:target:counter): {text!r}")
    originator, target, counter = match.groups()
    return Eui64.parse(originator.upper()), Eui64.parse(target.upper()), _counter(int(counter))


def _counter(value: int) -> int:
    if not 0 <= value <= _MAX_COUNTER:
        raise ValueError(f"a DUIS counter is an unsigned 64-bit integer, not {value}")
    return value


def _checked_id(value: str | MessageId | None) -> str | None:
    """The ID's text; a string is checked first (a MessageId was checked when it was parsed)."""
    if value is None or isinstance(value, MessageId):
        return None if value is None else str(value)
    _parse_message_id(value)
    return value


# --- values --------------------------------------------------------------------


def format_response_datetime(at: dt.datetime) -> str:
    """UTC with milliseconds and ``Z``, as DCC Boxed writes it: ``2022-08-17T15:45:42.790Z``.

    Naive datetimes are refused: the gateway's clock is always timezone-aware,
    and guessing a zone would silently shift every timestamp.
    """
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("ResponseDateTime needs a timezone-aware datetime")
    utc = at.astimezone(dt.UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


def _base64(payload: bytes) -> str:
    if not payload:
        raise ValueError("a GBCS payload cannot be empty")
    return base64.b64encode(payload).decode("ascii")


# --- documents -----------------------------------------------------------------


def response_message(
    *,
    request_id: str | MessageId | None,
    response_id: str | MessageId | None,
    code: ResponseCode,
    at: dt.datetime,
    service_reference: str,
    service_reference_variant: str,
    pre_command: PreCommand | None = None,
    gbcs_payload: bytes | None = None,
    payload: etree._Element | None = None,
) -> etree._Element:
    """An ``sr:Response`` with a ``ResponseMessage`` body (acknowledgements, results, errors).

    ``pre_command`` (CV 4), ``gbcs_payload`` (a device's response) and ``payload`` (another
    child the XSD allows there, e.g. a non-device answer's ``sr:DSPInventory``) are mutually
    exclusive: the XSD allows one payload at most.
    """
    if sum(item is not None for item in (pre_command, gbcs_payload, payload)) > 1:
        raise ValueError("a ResponseMessage carries one of PreCommand, GBCSPayload or another payload")
    root, body = _response(request_id=request_id, response_id=response_id, code=code, at=at)
    message = _sub(body, "ResponseMessage")
    _sub(message, "ServiceReference", service_reference)
    _sub(message, "ServiceReferenceVariant", service_reference_variant)
    if pre_command is not None:
        _append_pre_command(message, pre_command)
    if gbcs_payload is not None:
        _sub(message, "GBCSPayload", _base64(gbcs_payload))
    if payload is not None:
        message.append(payload)
    return root


def error_response(
    *,
    request_id: str | MessageId,
    code: ResponseCode,
    at: dt.datetime,
    service_reference: str,
    service_reference_variant: str,
) -> etree._Element:
    """The synchronous answer to an authenticated request that failed with an E code.

    Echoes the request's references in a payload-free ``ResponseMessage`` (see
    the module docstring for why that is the faithful minimal form).
    """
    if code.is_success:
        raise ValueError(f"{code} is not an error code")
    return response_message(
        request_id=request_id,
        response_id=request_id.swapped() if isinstance(request_id, MessageId) else response_id_for(request_id),
        code=code,
        at=at,
        service_reference=service_reference,
        service_reference_variant=service_reference_variant,
    )


def dcc_alert_quarantined(
    *,
    response_id: str,
    request_id: str,
    quarantine_event_ref: int,
    at: dt.datetime,
    breach: QuarantineBreach = QuarantineBreach.USER_THRESHOLD,
) -> etree._Element:
    """DCC alert ``AD1``: ``request_id`` was quarantined as event ``quarantine_event_ref``.

    ``response_id`` names the alert (DCC's User ID : recipient : counter); the
    quarantined request's ID travels in the body, as the XSD's ADBreach defines.
    """
    if not 0 <= quarantine_event_ref <= _MAX_EVENT_REF:
        raise ValueError(f"QuarantineEventRef must be 0..{_MAX_EVENT_REF}, not {quarantine_event_ref}")
    _checked_id(request_id)
    root, body = _response(request_id=None, response_id=response_id, code=ResponseCode.I0, at=at)
    message = _sub(body, "DCCAlertMessage")
    _sub(message, "DCCAlertCode", QUARANTINE_ALERT_CODE)
    quarantined = _sub(_sub(message, "DCCAlert"), "QuarantinedRequest")
    breach_element = _sub(quarantined, breach.value)
    _sub(breach_element, "RequestID", request_id)
    _sub(breach_element, "QuarantineEventRef", str(quarantine_event_ref))
    return root


def device_alert(
    *,
    response_id: str,
    alert_code: int,
    gbcs_payload: bytes,
    at: dt.datetime,
) -> etree._Element:
    """A device alert forwarded to a user: the GBCS alert code and the device's GBCS payload.

    ``response_id`` is device : recipient User ID : counter; ``alert_code`` is
    the two-byte GBCS alert code (e.g. ``0x8F84``), written as four hex digits.
    """
    if not 0 <= alert_code <= 0xFFFF:
        raise ValueError(f"a GBCS alert code is two bytes, not {alert_code:#x}")
    root, body = _response(request_id=None, response_id=response_id, code=ResponseCode.I0, at=at)
    message = _sub(body, "DeviceAlertMessage")
    _sub(message, "AlertCode", f"{alert_code:04X}")
    _sub(message, "GBCSPayload", _base64(gbcs_payload))
    return root


def to_bytes(root: etree._Element) -> bytes:
    """UTF-8 with an XML declaration, compact (no added whitespace), as DCC Boxed writes responses."""
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


# --- building blocks -----------------------------------------------------------


def _response(
    *, request_id: str | MessageId | None, response_id: str | MessageId | None, code: ResponseCode, at: dt.datetime
) -> tuple[etree._Element, etree._Element]:
    """A new ``sr:Response`` with its Header filled in; returns (root, empty Body)."""
    root = etree.Element(qname(SR, "Response"), nsmap={"sr": SR})
    root.set("schemaVersion", SCHEMA_VERSION)
    header = _sub(root, "Header")
    request_text, response_text = _checked_id(request_id), _checked_id(response_id)
    if request_text is not None:
        _sub(header, "RequestID", request_text)
    if response_text is not None:
        _sub(header, "ResponseID", response_text)
    _sub(header, "ResponseCode", code.value)
    _sub(header, "ResponseDateTime", format_response_datetime(at))
    return root, _sub(root, "Body")


def _append_pre_command(parent: etree._Element, pre_command: PreCommand) -> None:
    element = _sub(parent, "PreCommand")
    _sub(element, "GBCSVersion", pre_command.gbcs_version)
    _sub(element, "GBCSPayload", _base64(pre_command.gbcs_payload))


def _sub(parent: etree._Element, local: str, text: str | None = None) -> etree._Element:
    element = etree.SubElement(parent, qname(SR, local))
    element.text = text
    return element
