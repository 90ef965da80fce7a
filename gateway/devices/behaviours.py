"""What a simulated device does with an accepted command of one SRV: Instruction in, Outcome out.

The seam between the gateway (which decides, queues and routes) and the
simulated devices (which act and answer). A *behaviour* is a pure function::

    behaviour(instruction) -> Outcome        # or raises MeterRefusal (E21, nothing changed)

An :class:`Instruction` carries everything the device may know of the
command: the SRV, the device and its state (None for a device the simulation
keeps no state for: comms hub, gas proxy, PPMID, IHD, CAD, HCALCS), the
requester and the DUIS RequestID the answer goes back under, the signed DUIS
body and, for a critical command sent as CV5, the Signed Pre-Command that the
device verifies against its trust anchor. It also carries ``rtds_response``:
the GBCS response of the use case from the RTDS vectors, already re-addressed
to this device and request (None where the catalogue has none, or none is
configured).

An :class:`Outcome` says what happened: the meter's new state (None when the
device is unchanged), the GBCS response bytes the device answers with, its
alerts and a sentence for the audit log. A behaviour that knows better than the
vector (the meter's balance, its payment mode) builds its own response;
:func:`answer_with_vector` is the default: nothing changes and the device
answers with the re-addressed RTDS response.

:func:`behaviour_for` finds the behaviour of ``(srv, device type)``: an entry
for that device type, else one for the SRV on any device, else the default.
The registry is an immutable table (:data:`REGISTERED`): a new behaviour is a
new row in :data:`_REGISTRATIONS`, never a change at run time.
"""

from __future__ import annotations

import datetime as dt
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Protocol

from lxml import etree

from gateway.devices.alerts import MeterAlert
from gateway.devices import prepayment_commands as prepayment
from gateway.devices.anchors import TrustAnchor
from gateway.devices.credentials import MeterKeys
from gateway.devices.execute import (
    MeterRefusal,
    authenticate_command,
    check_trust_anchor,
    execute_signed_precommand,
    execute_sr_body,
)
from gateway.devices.meter import MeterState
from gateway.eui64 import Eui64
from gateway.gbcs import GeneralSigningApdu
from gateway.verify.documents import MessageId
from gateway.gbcs.prepayment import EMERGENCY_CREDIT_CODES

ANY_DEVICE = "*"
"""The device type of a registration that serves the SRV on every device type."""


@dataclass(frozen=True, slots=True)
class Instruction:
    """One accepted command as its device receives it (built from the signed request only)."""

    srv: str
    """The DUIS Service Reference Variant, e.g. ``"1.6"``."""
    device_id: Eui64
    device_type: str
    """ESME, GSME, GPF, CHF, HCALCS, PPMID, IHD or CAD (the manifest's type)."""
    requester: Eui64
    """The DUIS originator: who gets the answer (the GBCS response's recipient)."""
    request_id: str | None
    """The DUIS RequestID, ``originator:target:counter`` (None: a command given without one, in tests)."""
    now: dt.datetime
    state: MeterState | None = None
    """The meter's state (not yet run down to ``now``); None for a device without simulated state."""
    sr_body: etree._Element | None = None
    """The signed DUIS request body (the SRV's element); None when the command came as a Signed Pre-Command."""
    signed_pre_command: bytes | None = None
    """CV5: the GBCS command signed by the supplier, which the device must verify before acting."""
    trust_anchor: TrustAnchor | None = None
    """The certificate whose fingerprint the meter holds (None when unknown to the simulation)."""
    rtds_response: bytes | None = None
    """The RTDS GBCS response of this use case, re-addressed to this device and request."""
    message_codes: frozenset[int] = frozenset()
    """The GBCS message codes of the SRV's use cases for this device type (from the RTDS vectors):
    the commands a device accepts for this SRV."""
    keys: MeterKeys | None = None
    """The meter's own keys and its supplier's prepayment key (top-ups, signed answers); None: unknown."""

    @property
    def counter(self) -> int | None:
        """The RequestID's counter: the GBCS transaction id the response echoes."""
        return None if self.request_id is None else MessageId.parse(self.request_id).counter


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the device did: a new state to store (or None), its GBCS answer, its alerts."""

    detail: str
    state: MeterState | None = None
    """The meter's new state, stored with the command's completion; None: the device is unchanged."""
    gbcs_response: bytes | None = None
    """The GBCS response the device answers with (``sr:GBCSPayload``); None: an empty ResponseMessage."""
    alerts: tuple[MeterAlert, ...] = ()


Behaviour = Callable[[Instruction], Outcome]
"""A pure function of the instruction; raises :class:`MeterRefusal` to refuse (nothing changes)."""


class ResponseVectors(Protocol):
    """Where an instruction's ``rtds_response`` and ``message_codes`` come from: the RTDS catalogue."""

    def message_codes(self, srv: str, device_type: str) -> frozenset[int]:
        """The command message codes of ``srv``'s use cases for ``device_type``."""
        ...

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
        """The use case's GBCS response as ``device_id``'s answer to ``request_id``; None if there is none.

        ``body`` (the signed DUIS body) or ``command`` (a Signed Pre-Command) tells the use case."""
        ...


# --- behaviours ----------------------------------------------------------------------------


def answer_with_vector(instruction: Instruction) -> Outcome:
    """The default: the device answers with its use case's RTDS response.

    A Signed Pre-Command (CV5) is verified first, as SR 1.6's is: signed by the trust anchor,
    addressed to this device, a message code of the SRV, a counter above the last (a meter keeps
    it; a device without simulated state cannot, see the README). Nothing else changes.
    """
    answered = "with the RTDS response" if instruction.rtds_response is not None else "without a GBCS response"
    detail = f"SRV {instruction.srv} acknowledged by the simulated {instruction.device_type} {answered}"
    if instruction.signed_pre_command is None:
        return Outcome(detail, gbcs_response=instruction.rtds_response)
    state = instruction.state
    apdu = verified_command(instruction)
    changed = None if state is None else replace(state, last_gbcs_counter=apdu.counter)
    return Outcome(f"counter {apdu.counter}: {detail}", changed, instruction.rtds_response)


def verified_command(instruction: Instruction) -> GeneralSigningApdu:
    """The instruction's Signed Pre-Command once the device has checked it (MeterRefusal if not)."""
    anchor = instruction.trust_anchor
    if anchor is None:
        raise MeterRefusal("the device's trust anchor certificate is not known to the simulation")
    state = instruction.state
    if state is not None:
        check_trust_anchor(state, anchor)
    codes = ", ".join(f"{code:#06x}" for code in sorted(instruction.message_codes)) or "none"
    return authenticate_command(
        instruction.signed_pre_command or b"",
        device_id=instruction.device_id,
        trust_anchor=anchor,
        message_codes=instruction.message_codes,
        what=f"a command of SRV {instruction.srv} for a {instruction.device_type} ({codes})",
        last_counter=None if state is None else state.last_gbcs_counter,
    )


def update_payment_mode(instruction: Instruction) -> Outcome:
    """SR 1.6: SMETS1 from the signed body, SMETS2 only from a verified Signed Pre-Command."""
    state = _meter(instruction)
    if instruction.signed_pre_command is not None:
        anchor = instruction.trust_anchor
        if anchor is None:
            raise MeterRefusal("the meter's trust anchor certificate is not known to the simulation")
        changed, alerts, response = execute_signed_precommand(
            state, instruction.signed_pre_command, anchor, instruction.now
        )
    elif instruction.sr_body is not None:
        changed, alerts, response = execute_sr_body(
            state, instruction.sr_body, instruction.now, request_id=instruction.request_id
        )
    else:
        raise MeterRefusal("SR 1.6 reaches a meter as its signed body or as a Signed Pre-Command")
    return Outcome(response.detail, changed, instruction.rtds_response, alerts)


def top_up_device(instruction: Instruction) -> Outcome:
    """SR 2.2: the meter checks the UTRN against its supplier's prepayment key and credits it (CS01a/CS01b)."""
    state, body = _meter(instruction), _body(instruction)
    return _outcome(prepayment.top_up(state, body, instruction.now, _asked(instruction), _keys(instruction)))


def activate_emergency_credit(instruction: Instruction) -> Outcome:
    """SR 2.5: SMETS1 from the signed body; SMETS2 only from a verified Signed Pre-Command, ECS09/GCS06."""
    state = _meter(instruction)
    if instruction.signed_pre_command is None:
        answered = prepayment.emergency_credit_from_body(
            state, _body(instruction), instruction.now, _asked(instruction), _keys(instruction)
        )
        return _outcome(answered)
    code = EMERGENCY_CREDIT_CODES.get(state.device_type)
    apdu = verified_command(replace(instruction, message_codes=frozenset({code} if code else ())))
    return _outcome(prepayment.emergency_credit_from_command(state, apdu, instruction.now, _keys(instruction)))


def read_meter_balance(instruction: Instruction) -> Outcome:
    """SR 4.18: the meter's own balance in ECS82/GCS60 (not the vector's)."""
    state, body = _meter(instruction), _body(instruction)
    return _outcome(prepayment.read_meter_balance(state, body, instruction.now, _asked(instruction)))


def read_prepayment_configuration(instruction: Instruction) -> Outcome:
    """SR 4.13: the meter's thresholds and emergency credit in ECS26a/GCS21b."""
    state, body = _meter(instruction), _body(instruction)
    answered = prepayment.read_prepayment_configuration(state, body, instruction.now, instruction.rtds_response)
    return _outcome(answered)


def _outcome(answer: prepayment.PrepaymentAnswer) -> Outcome:
    return Outcome(answer.detail, answer.state, answer.gbcs_response, answer.alerts)


def _asked(instruction: Instruction) -> prepayment.Asked:
    return prepayment.Asked.of(instruction.request_id, instruction.requester)


def _keys(instruction: Instruction) -> MeterKeys:
    if instruction.keys is None:
        raise MeterRefusal("the meter's keys are not known to the simulation")
    return instruction.keys


def _body(instruction: Instruction) -> etree._Element:
    if instruction.sr_body is None:
        raise MeterRefusal(f"SRV {instruction.srv} reaches a meter as its signed body")
    return instruction.sr_body


def _meter(instruction: Instruction) -> MeterState:
    if instruction.state is None:
        raise MeterRefusal(f"SRV {instruction.srv} needs a simulated meter; {instruction.device_type} has none")
    return instruction.state


# --- the registry --------------------------------------------------------------------------

_REGISTRATIONS: tuple[tuple[str, tuple[str, ...], Behaviour], ...] = (
    ("1.6", ("ESME", "GSME"), update_payment_mode),
    ("2.2", ("ESME", "GSME"), top_up_device),
    ("2.5", ("ESME", "GSME"), activate_emergency_credit),
    ("4.18", ("ESME", "GSME"), read_meter_balance),
    ("4.13", ("ESME", "GSME"), read_prepayment_configuration),
)
"""(SRV, device types, behaviour): one row per behaviour; the types ``(ANY_DEVICE,)`` for every device."""


def _registry(rows: tuple[tuple[str, tuple[str, ...], Behaviour], ...]) -> Mapping[tuple[str, str], Behaviour]:
    table: dict[tuple[str, str], Behaviour] = {}
    for srv, device_types, behaviour in rows:
        for device_type in device_types:
            if (srv, device_type) in table:
                raise ValueError(f"two behaviours for SRV {srv} on {device_type}")
            table[(srv, device_type)] = behaviour
    return types.MappingProxyType(table)


REGISTERED: Mapping[tuple[str, str], Behaviour] = _registry(_REGISTRATIONS)
"""(SRV, device type or ANY_DEVICE) -> behaviour; read-only."""


def behaviour_for(srv: str, device_type: str) -> Behaviour:
    """The behaviour of ``srv`` on ``device_type``: its own, else the SRV's for any device, else the default."""
    return REGISTERED.get((srv, device_type)) or REGISTERED.get((srv, ANY_DEVICE)) or answer_with_vector
