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
4.13     ``sr:ReadPrepayment…``     answers its thresholds and emergency credit (in the RTDS
                                    response, where the simulation models them)
=======  =========================  ===========================================================

The behaviour seam (:mod:`gateway.devices.behaviours`) registers these. A refusal by the
meter (a bad or replayed UTRN, emergency credit it cannot grant) is an answer, not a
silence: the meter is unchanged (``state`` None) and answers with the GBCS error response
of the use case (the RTDS ``…_ERROR_RESPONSE`` shape), its reason in ``detail``, which the
executor audits. :class:`~gateway.devices.execute.MeterRefusal` is kept for what never
reaches the meter's logic (a malformed body, a Signed Pre-Command that does not verify).

Exactly once: a DUIS RequestID the meter executed already is acknowledged without
executing it again (as :mod:`gateway.devices.execute` does for SMETS1), so a re-delivered
top-up is neither credited twice nor reported as a replay.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

from lxml import etree

from gateway.devices.credentials import CredentialsError, MeterKeys
from gateway.devices.execute import REMEMBERED_REQUEST_IDS, MeterRefusal
from gateway.devices.meter import Alerts, MeterState, remember_request_id, run_down
from gateway.devices.prepayment import (
    PrepaymentRefused,
    activate_emergency_credit,
    apply_top_up,
    meter_balance_pence,
)
from gateway.devices.utrn import UtrnRejected, accept_utrn
from gateway.eui64 import Eui64
from gateway.gbcs import GeneralSigningApdu
from gateway.gbcs.prepayment import (
    EMERGENCY_CREDIT_CODES,
    PrepaymentConfiguration,
    TopUpResult,
    emergency_credit_response,
    is_emergency_credit_content,
    meter_balance_response,
    prepayment_configuration_response,
    top_up_response,
)
from gateway.namespaces import SR, qname
from gateway.verify.documents import MessageId

_TOP_UP_DEVICE = qname(SR, "TopUpDevice")
_ACTIVATE_EMERGENCY_CREDIT = qname(SR, "ActivateEmergencyCredit")
_READ_METER_BALANCE = qname(SR, "ReadMeterBalance")
_READ_PREPAYMENT_CONFIGURATION = qname(SR, "ReadPrepaymentConfiguration")
_UTRN = qname(SR, "UTRN")


@dataclass(frozen=True, slots=True)
class PrepaymentAnswer:
    """What the meter did and said: its new state (None: unchanged), alerts, a sentence, its GBCS answer."""

    state: MeterState | None
    alerts: Alerts
    detail: str
    gbcs_response: bytes | None


@dataclass(frozen=True, slots=True)
class Asked:
    """Who asked, under which RequestID: the answer's recipient and transaction counter."""

    request_id: str
    requester: Eui64
    counter: int

    @classmethod
    def of(cls, request_id: str | None, requester: Eui64) -> Asked:
        if request_id is None:
            raise MeterRefusal("a prepayment command reaches the meter with its DUIS RequestID")
        try:
            counter = MessageId.parse(request_id).counter
        except ValueError as exc:
            raise MeterRefusal(f"not a DUIS RequestID: {request_id!r}") from exc
        return cls(request_id, requester, counter)


# --- SR 2.2 Top Up Device ---------------------------------------------------------------


def top_up(state: MeterState, body: etree._Element, now: dt.datetime, asked: Asked, keys: MeterKeys) -> PrepaymentAnswer:
    """Credits the UTRN the body carries if the meter accepts it; answers CS01a/CS01b either way."""
    _expect(body, _TOP_UP_DEVICE)
    children = list(body)
    if len(children) != 1 or children[0].tag != _UTRN or children[0].text is None:
        raise MeterRefusal("sr:TopUpDevice holds exactly one sr:UTRN")
    if asked.request_id in state.executed_request_ids:
        return _already(asked)

    def answer(result: TopUpResult, applied: int, credit: int) -> bytes:
        return top_up_response(
            state.device_type, counter=asked.counter, meter=state.device_id, user=asked.requester, at=now,
            result=result, applied_pence=applied, credit_pence=credit,
        )  # fmt: skip

    try:
        supplier = keys.supplier_prepayment()
        accepted = accept_utrn(
            children[0].text,
            meter_key_agreement=keys.key_agreement(),
            supplier_prepayment_certificate_key=supplier.public_key,
            supplier=supplier.eui64,
            meter=state.device_id,
            counters=state.utrn_counters,
        )
    except (UtrnRejected, CredentialsError) as refused:
        duplicate = isinstance(refused, UtrnRejected) and refused.duplicate
        result = TopUpResult.REJECTED_DUPLICATE if duplicate else TopUpResult.REJECTED_INVALID
        return PrepaymentAnswer(None, (), f"UTRN refused by the meter: {refused}", answer(result, 0, 0))
    changed, alerts, detail = apply_top_up(state, accepted, now)
    changed = remember_request_id(changed, asked.request_id, REMEMBERED_REQUEST_IDS)
    return PrepaymentAnswer(changed, alerts, detail, answer(TopUpResult.ACCEPTED, accepted.pence, changed.credit_pence))


# --- SR 2.5 Activate Emergency Credit ---------------------------------------------------


def emergency_credit_from_body(
    state: MeterState, body: etree._Element, now: dt.datetime, asked: Asked, keys: MeterKeys
) -> PrepaymentAnswer:
    """SMETS1: the DCC's command from the request (a SMETS2 meter acts only on a Signed Pre-Command)."""
    _expect(body, _ACTIVATE_EMERGENCY_CREDIT)
    if state.smets != 1:
        raise MeterRefusal("a SMETS2 meter activates emergency credit only from a Signed Pre-Command")
    if asked.request_id in state.executed_request_ids:
        return _already(asked)
    answered = _emergency_credit(state, now, asked.requester, asked.counter, keys)
    if answered.state is None:
        return answered
    return replace(answered, state=remember_request_id(answered.state, asked.request_id, REMEMBERED_REQUEST_IDS))


def emergency_credit_from_command(
    state: MeterState, apdu: GeneralSigningApdu, now: dt.datetime, keys: MeterKeys
) -> PrepaymentAnswer:
    """SMETS2: ECS09/GCS06 that the meter verified (signed by its trust anchor, addressed to it, fresh
    counter; :func:`gateway.devices.behaviours.verified_command`); its content must be the use case's.

    The counter is used up whatever the meter answers (a refused command cannot be replayed)."""
    if not is_emergency_credit_content(state.device_type, apdu.content):
        raise MeterRefusal("content refused: not an Activate Emergency Credit command")
    answered = _emergency_credit(state, now, apdu.originator, apdu.counter, keys)
    used = replace(answered.state or state, last_gbcs_counter=apdu.counter)
    code = EMERGENCY_CREDIT_CODES[state.device_type]
    return replace(answered, state=used, detail=f"{code.name} counter {apdu.counter}: {answered.detail}")


def _emergency_credit(state: MeterState, now: dt.datetime, user: Eui64, counter: int, keys: MeterKeys) -> PrepaymentAnswer:
    try:
        meter_key = keys.signing()
    except CredentialsError as missing:
        raise MeterRefusal(str(missing)) from missing

    def answer(activated: bool) -> bytes:
        return emergency_credit_response(
            state.device_type, counter=counter, meter=state.device_id, user=user, activated=activated, meter_key=meter_key
        )

    try:
        changed, alerts, detail = activate_emergency_credit(state, now)
    except PrepaymentRefused as refused:
        return PrepaymentAnswer(None, (), f"emergency credit refused by the meter: {refused.reason}", answer(False))
    return PrepaymentAnswer(changed, alerts, detail, answer(True))


# --- SR 4.18 Read Meter Balance -----------------------------------------------------------


def read_meter_balance(state: MeterState, body: etree._Element, now: dt.datetime, asked: Asked) -> PrepaymentAnswer:
    """The meter's balance now, in ECS82/GCS60; the meter is only run down."""
    _expect(body, _READ_METER_BALANCE)
    current, alerts = run_down(state, now)
    balance = meter_balance_pence(current)
    gbcs = meter_balance_response(
        current.device_type, counter=asked.counter, meter=current.device_id, user=asked.requester,
        balance_pence=balance, debt_pence=current.debt_pence,
    )  # fmt: skip
    return PrepaymentAnswer(current, alerts, f"meter balance {balance}p (credit {current.credit_pence}p)", gbcs)


# --- SR 4.13 Read Prepayment Configuration -----------------------------------------------------


def read_prepayment_configuration(
    state: MeterState, body: etree._Element, now: dt.datetime, vector_response: bytes | None
) -> PrepaymentAnswer:
    """The meter's thresholds and emergency credit in the ECS26a/GCS21b answer (the re-addressed RTDS
    response, its modelled values replaced; the settings the simulation does not model keep the vector's)."""
    _expect(body, _READ_PREPAYMENT_CONFIGURATION)
    current, alerts = run_down(state, now)
    configuration = PrepaymentConfiguration(
        low_credit_threshold=current.low_credit_threshold_pence,
        emergency_credit_limit=current.emergency_credit_pence + current.debt_pence,
        emergency_credit_threshold=current.low_credit_threshold_pence,
        disablement_threshold=current.disablement_threshold_pence,
    )
    detail = (
        f"prepayment configuration: low credit {configuration.low_credit_threshold}p, emergency credit "
        f"{configuration.emergency_credit_limit}p below {configuration.emergency_credit_threshold}p, "
        f"disablement at {configuration.disablement_threshold}p"
    )
    if vector_response is None:
        return PrepaymentAnswer(current, alerts, f"{detail} (no RTDS vector to answer in)", None)
    gbcs = prepayment_configuration_response(current.device_type, vector_response, configuration)
    return PrepaymentAnswer(current, alerts, detail, gbcs)


# --- helpers ---------------------------------------------------------------------------------


def _expect(body: etree._Element, tag: str) -> None:
    if body.tag != tag:
        raise MeterRefusal(f"expected {tag}, not {body.tag}")


def _already(asked: Asked) -> PrepaymentAnswer:
    return PrepaymentAnswer(None, (), f"request {asked.request_id} was already executed; not executed again", None)
