"""How a meter executes the prepayment SRVs, and what it answers in GBCS.

=======  =========================  ===========================================================
SRV      request                    the meter
=======  =========================  ===========================================================
2.2      ``sr:TopUpDevice/UTRN``    checks the UTRN (form, MAC against the supplier prepayment
                                    key it holds, counter cache) and credits it; both
                                    generations (non-critical: the DCC sends the UTRN as is)
2.5      ``sr:ActivateEmergency…``  SMETS1 from the request; SMETS2 only from a Signed
                                    Pre-Command (ECS09/GCS06) verified against its trust anchor
4.18     ``sr:ReadMeterBalance``    answers its balance
=======  =========================  ===========================================================

A refusal by the meter (a bad or replayed UTRN, emergency credit it cannot grant) is an
answer, not a silence: the device response carries the GBCS error response of the use
case (the RTDS ``…_ERROR_RESPONSE`` shape) and ``ok`` is False with the reason, which
the executor audits. The meter is unchanged by a refusal.

Exactly once: a DUIS RequestID the meter executed already is acknowledged without
executing it again (as :mod:`gateway.devices.execute` does for SMETS1), so a re-delivered
top-up is neither credited twice nor reported as a replay.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from lxml import etree

from gateway.devices.credentials import CredentialsError, MeterCredentials
from gateway.devices.meter import REMEMBERED_REQUEST_IDS, Alerts, MeterState, remember_request_id, run_down
from gateway.devices.prepayment import (
    PrepaymentRefused,
    activate_emergency_credit,
    apply_top_up,
    meter_balance_pence,
)
from gateway.devices.utrn import UtrnRejected, accept_utrn
from gateway.eui64 import Eui64
from gateway.gbcs.prepayment import (
    TopUpResult,
    emergency_credit_response,
    meter_balance_response,
    top_up_response,
)
from gateway.manifest import Device
from gateway.namespaces import SR, qname

TOP_UP_DEVICE = qname(SR, "TopUpDevice")
ACTIVATE_EMERGENCY_CREDIT = qname(SR, "ActivateEmergencyCredit")
READ_METER_BALANCE = qname(SR, "ReadMeterBalance")
PREPAYMENT_BODIES = frozenset({TOP_UP_DEVICE, ACTIVATE_EMERGENCY_CREDIT, READ_METER_BALANCE})
"""The request bodies a simulated meter acts on here (besides SR 1.6's)."""
_UTRN = qname(SR, "UTRN")


class PrepaymentCommandError(ValueError):
    """The command cannot reach the meter's logic at all (wrong generation, no RequestID, malformed body)."""


# What the meter answers: (new state, alerts, ok, detail, GBCS response).
Answer = tuple[MeterState, Alerts, bool, str, bytes]


def execute_prepayment_body(
    state: MeterState,
    body: etree._Element,
    now: dt.datetime,
    *,
    request_id: str,
    device: Device,
    credentials: MeterCredentials,
) -> Answer:
    """Executes a 2.2, 2.5 (SMETS1) or 4.18 request body on the meter."""
    originator, counter = _request(request_id)
    if request_id in state.executed_request_ids:
        return state, (), True, f"request {request_id} was already executed; not executed again", b""
    handlers: dict[str, Callable[[], Answer]] = {
        TOP_UP_DEVICE: lambda: _top_up(state, body, now, originator, counter, device, credentials),
        ACTIVATE_EMERGENCY_CREDIT: lambda: _emergency_credit_from_body(state, now, originator, counter, credentials),
        READ_METER_BALANCE: lambda: _balance(state, now, originator, counter),
    }
    handler = handlers.get(body.tag)
    if handler is None:
        raise PrepaymentCommandError(f"a meter here does not act on {body.tag}")
    changed, alerts, ok, detail, gbcs = handler()
    if ok:
        changed = remember_request_id(changed, request_id, REMEMBERED_REQUEST_IDS)
    return changed, alerts, ok, detail, gbcs


def activate_from_precommand(
    state: MeterState, now: dt.datetime, *, originator: Eui64, counter: int, credentials: MeterCredentials
) -> Answer:
    """SR 2.5 from a verified Signed Pre-Command (the caller checked signature, address, code, counter)."""
    return _emergency_credit(state, now, originator, counter, credentials)


# --- each SRV ---------------------------------------------------------------------------


def _top_up(
    state: MeterState,
    body: etree._Element,
    now: dt.datetime,
    originator: Eui64,
    counter: int,
    device: Device,
    credentials: MeterCredentials,
) -> Answer:
    children = list(body)
    if len(children) != 1 or children[0].tag != _UTRN or children[0].text is None:
        raise PrepaymentCommandError("sr:TopUpDevice holds exactly one sr:UTRN")
    utrn = children[0].text

    def answer(result: TopUpResult, applied: int, credit: int) -> bytes:
        return top_up_response(
            device.type, counter=counter, meter=state.device_id, user=originator, at=now,
            result=result, applied_pence=applied, credit_pence=credit,
        )  # fmt: skip

    try:
        supplier = credentials.supplier_prepayment_key(device)
        accepted = accept_utrn(
            utrn,
            meter_key_agreement=credentials.key(state.device_id, "ka"),
            supplier_prepayment_certificate_key=supplier.public_key,
            supplier=supplier.eui64,
            meter=state.device_id,
            counters=state.utrn_counters,
        )
    except (UtrnRejected, CredentialsError) as refused:
        reason = str(refused)
        result = TopUpResult.REJECTED_DUPLICATE if "replay" in reason else TopUpResult.REJECTED_INVALID
        return state, (), False, f"UTRN refused by the meter: {reason}", answer(result, 0, 0)
    changed, alerts, detail = apply_top_up(state, accepted, now)
    return changed, alerts, True, detail, answer(TopUpResult.ACCEPTED, accepted.pence, changed.credit_pence)


def _emergency_credit_from_body(
    state: MeterState, now: dt.datetime, originator: Eui64, counter: int, credentials: MeterCredentials
) -> Answer:
    if state.smets != 1:
        raise PrepaymentCommandError("a SMETS2 meter activates emergency credit only from a Signed Pre-Command")
    return _emergency_credit(state, now, originator, counter, credentials)


def _emergency_credit(
    state: MeterState, now: dt.datetime, originator: Eui64, counter: int, credentials: MeterCredentials
) -> Answer:
    try:
        meter_key = credentials.key(state.device_id, "ds")
    except CredentialsError as missing:
        raise PrepaymentCommandError(str(missing)) from missing

    def answer(activated: bool) -> bytes:
        return emergency_credit_response(
            state.device_type, counter=counter, meter=state.device_id, user=originator,
            activated=activated, meter_key=meter_key,
        )  # fmt: skip

    try:
        changed, alerts, detail = activate_emergency_credit(state, now)
    except PrepaymentRefused as refused:
        return state, (), False, f"emergency credit refused by the meter: {refused.reason}", answer(False)
    return changed, alerts, True, detail, answer(True)


def _balance(state: MeterState, now: dt.datetime, originator: Eui64, counter: int) -> Answer:
    current, alerts = run_down(state, now)
    balance = meter_balance_pence(current)
    gbcs = meter_balance_response(
        current.device_type, counter=counter, meter=current.device_id, user=originator,
        balance_pence=balance, debt_pence=current.debt_pence,
    )  # fmt: skip
    return current, alerts, True, f"meter balance {balance}p (credit {current.credit_pence}p)", gbcs


def _request(request_id: str) -> tuple[Eui64, int]:
    """Originator and counter of a DUIS RequestID (``originator:target:counter``)."""
    try:
        originator, _target, counter = request_id.split(":")
        return Eui64.parse(originator), int(counter)
    except ValueError as exc:
        raise PrepaymentCommandError(f"not a DUIS RequestID: {request_id!r}") from exc
