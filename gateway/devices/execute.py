"""How a meter executes SR 1.6 Update Payment Mode: SMETS1 from the request, SMETS2 only from GBCS.

SMETS1 meters do not verify GBCS; in the real estate the DCC's SMETS1 service
provider translates the authorised DUIS request for them, so here they act on
the ``sr:UpdatePaymentMode`` body. SMETS2 meters act only on a Signed
Pre-Command that verifies against their trust anchor (the Supplier ``02`` DS
certificate installed on them): that is why a role without the supplier's DS
key cannot switch them (MP134B R2, R5).

SMETS2 checks, in order: the certificate offered is the trust anchor the meter
holds (by fingerprint); a General-Signing APDU that parses; a command (CRA
flag 1); signed; the signature verifies with the trust anchor's key; addressed
to this meter; a message code for this meter type; a counter greater than the
last accepted; content that says what the code says. Authentication comes
first so that nothing unauthenticated is looked at further. The originator
field is not compared with the anchor: it is covered by the signature, and a
meter with one Supplier anchor has no key to choose (GBCS uses the originator
to pick one). Pre-Commands issued to an SRP carry the SRP's User ID there.

Every check that fails raises :class:`MeterRefusal` and leaves the meter as it
was: these functions return a new state and never change the one given.

Exactly once: SMETS2 by the counter (a replayed or re-delivered command is
refused as a replay); SMETS1 by the DUIS RequestID: the meter remembers the
last :data:`REMEMBERED_REQUEST_IDS` it executed and acknowledges a re-delivery
of one of them without executing it again (bounded, so a million meters do
not keep every request; re-delivery happens within minutes, not after dozens
of later commands to the same meter).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree

from gateway.devices.anchors import TrustAnchor
from gateway.devices.content import read_payment_mode_content
from gateway.devices.meter import (
    Alerts,
    MeterState,
    PaymentModeCommand,
    perform_payment_mode_command,
    remember_request_id,
)
from gateway.eui64 import Eui64
from gateway.gbcs import (
    CREDIT_MODE_CODES,
    ApduError,
    CraFlag,
    GeneralSigningApdu,
    MessageCode,
    update_payment_mode_message_code,
    verify_apdu_signature,
)
from gateway.namespaces import SR, qname
from gateway.policy.critical import read_payment_mode_change

REMEMBERED_REQUEST_IDS = 16
_UPDATE_PAYMENT_MODE = qname(SR, "UpdatePaymentMode")
_CHOICES = frozenset({qname(SR, "Credit"), qname(SR, "Prepayment")})


class MeterRefusal(Exception):
    """The meter will not execute the command; ``reason`` says why. Nothing changed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class DeviceResponse:
    """What the meter answers: executed (or scheduled, or already done) and how."""

    ok: bool
    detail: str


Execution = tuple[MeterState, Alerts, DeviceResponse]


# --- SMETS1 -----------------------------------------------------------------------------


def execute_sr_body(
    state: MeterState, body: etree._Element, now: dt.datetime, *, request_id: str | None = None
) -> Execution:
    """Executes an ``sr:UpdatePaymentMode`` body on a SMETS1 meter.

    ``request_id`` (the DUIS RequestID) makes a re-delivery harmless: a known one is
    acknowledged and nothing is executed again.
    """
    if state.smets != 1:
        raise MeterRefusal("a SMETS2 meter acts only on a Signed Pre-Command verified against its trust anchor")
    if request_id is not None and request_id in state.executed_request_ids:
        return state, (), DeviceResponse(True, f"request {request_id} was already executed; not executed again")
    command = _command_from_body(body)
    changed, alerts, detail = perform_payment_mode_command(state, command, now)
    if request_id is not None:
        changed = remember_request_id(changed, request_id, REMEMBERED_REQUEST_IDS)
    return changed, alerts, DeviceResponse(True, detail)


def _command_from_body(body: etree._Element) -> PaymentModeCommand:
    """The gateway's own reading of the SR 1.6 body, so both generations understand it alike."""
    if body.tag != _UPDATE_PAYMENT_MODE:
        raise MeterRefusal(f"a meter here executes sr:UpdatePaymentMode, not {body.tag}")
    if sum(1 for child in body if child.tag in _CHOICES) != 1:
        raise MeterRefusal("sr:UpdatePaymentMode holds exactly one of sr:Credit and sr:Prepayment")
    try:
        change = read_payment_mode_change(body)
        return PaymentModeCommand(change.to_credit, change.prepayment, change.execution_date_time)
    except ValueError as exc:
        raise MeterRefusal(f"sr:UpdatePaymentMode is not usable: {exc}") from exc


# --- SMETS2 -----------------------------------------------------------------------------


def execute_signed_precommand(
    state: MeterState, apdu_bytes: bytes, trust_anchor: TrustAnchor, now: dt.datetime
) -> Execution:
    """Executes a Signed Pre-Command (a General-Signing APDU, ``DF`` …) on a SMETS2 meter.

    ``trust_anchor`` must be the certificate whose fingerprint the meter holds (the
    caller looks it up; any other is refused): the meter trusts nothing in the message.
    """
    check_trust_anchor(state, trust_anchor)
    apdu = _authenticated(apdu_bytes, trust_anchor.public_key)
    code = _addressed_to(state, apdu)
    command = _content(state, apdu, code)
    changed, alerts, detail = perform_payment_mode_command(state, command, now)
    changed = replace(changed, last_gbcs_counter=apdu.counter)
    return changed, alerts, DeviceResponse(True, f"{code.name} counter {apdu.counter}: {detail}")


def check_trust_anchor(state: MeterState, trust_anchor: TrustAnchor) -> None:
    """A meter acts on GBCS only if it is SMETS2 and ``trust_anchor`` is the certificate it holds."""
    if state.smets != 2:
        raise MeterRefusal("a SMETS1 meter does not execute GBCS commands; send the Service Request")
    if trust_anchor.fingerprint != state.trust_anchor_fingerprint:
        raise MeterRefusal(f"certificate {trust_anchor.fingerprint[:16]}… is not this meter's trust anchor")


def authenticate_command(
    apdu_bytes: bytes,
    *,
    device_id: Eui64,
    trust_anchor: TrustAnchor,
    message_codes: frozenset[int],
    what: str,
    last_counter: int | None = None,
) -> GeneralSigningApdu:
    """The Signed Pre-Command of any use case, as a device checks it before acting (SR 1.6's checks
    without its content): signed, verified with ``trust_anchor``, addressed to ``device_id``, one of
    ``message_codes`` (``what`` names them), and a counter above ``last_counter`` (None: a device
    whose counter the simulation does not keep)."""
    apdu = _authenticated(apdu_bytes, trust_anchor.public_key)
    if apdu.recipient != device_id:
        raise MeterRefusal(f"addressed to {apdu.recipient}, not to this device {device_id}")
    if apdu.message_code not in message_codes:
        raise MeterRefusal(f"message code {apdu.message_code:#06x} is not {what}")
    if last_counter is not None and apdu.counter <= last_counter:
        raise MeterRefusal(f"counter {apdu.counter} is not greater than {last_counter} (replay)")
    return apdu


def _authenticated(apdu_bytes: bytes, public_key: ec.EllipticCurvePublicKey) -> GeneralSigningApdu:
    try:
        apdu = GeneralSigningApdu.parse(apdu_bytes)
    except ApduError as exc:
        raise MeterRefusal(f"not a General-Signing APDU: {exc.reason}") from exc
    if apdu.cra_flag is not CraFlag.COMMAND:
        raise MeterRefusal(f"a meter executes commands, not a {apdu.cra_flag.name.lower()}")
    if not apdu.is_signed:
        raise MeterRefusal("the command is not signed (an unsigned Pre-Command is never executed)")
    try:
        verify_apdu_signature(apdu, public_key)
    except ApduError as exc:
        raise MeterRefusal(f"signature rejected against the meter's trust anchor: {exc.reason}") from exc
    return apdu


def _addressed_to(state: MeterState, apdu: GeneralSigningApdu) -> MessageCode:
    """The message code, once recipient, code and counter are right for this meter."""
    if apdu.recipient != state.device_id:
        raise MeterRefusal(f"addressed to {apdu.recipient}, not to this meter {state.device_id}")
    allowed = {update_payment_mode_message_code(state.device_type, to_credit) for to_credit in (True, False)}
    if apdu.message_code not in allowed:
        raise MeterRefusal(f"message code {apdu.message_code:#06x} is not SR 1.6 for an {state.device_type}")
    if apdu.counter <= state.last_gbcs_counter:
        raise MeterRefusal(f"counter {apdu.counter} is not greater than {state.last_gbcs_counter} (replay)")
    return MessageCode(apdu.message_code)


def _content(state: MeterState, apdu: GeneralSigningApdu, code: MessageCode) -> PaymentModeCommand:
    try:
        return read_payment_mode_content(state.device_type, code in CREDIT_MODE_CODES, apdu.content)
    except ValueError as exc:  # ContentError, and the settings' own range checks
        raise MeterRefusal(f"content refused: {exc}") from exc
