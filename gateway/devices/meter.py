"""One simulated meter: its state, and pure functions that move it through time.

The model (integer pence throughout, so that results are exact and repeatable):

* A **prepayment** meter with supply enabled draws ``consumption_pence_per_hour``
  from its credit down to the disablement threshold; then from its emergency
  credit (which becomes debt); when that is gone too, supply is disabled.
  Emergency credit activates by itself (a real customer presses a button).
* A **credit** meter, or a disabled one, draws nothing and does not change.
* Switching to Credit re-enables a supply disabled for lack of credit: that is
  what the SoLR Contingency role exists for (MP134B), keeping customers on supply.

Time. A state describes the meter at ``updated_at``. :func:`run_down` walks from
there to ``now`` event by event (low credit, threshold reached, emergency credit
exhausted, a future-dated change falling due), so each alert carries the exact
instant its event happened, and :func:`next_event_at` tells a scheduler when the
meter next needs attention. The fraction of a penny consumed but not yet
deducted is kept in ``consumption_carry``, so running a meter down every second
or once a week gives the same balance to the penny and the microsecond.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, replace
from typing import Literal, TypeVar

from gateway.devices.alerts import (
    FUTURE_DATED_COMMAND_ACTIONED_CODE,
    IMMEDIATE_COMMAND_ACTIONED_CODE,
    AlertKind,
    MeterAlert,
    alert,
)
from gateway.eui64 import Eui64
from gateway.gbcs import DUIS_CANCELLATION_DATE_TIME, DeviceType, PrepaymentSettings

PaymentMode = Literal["Credit", "Prepayment"]
Supply = Literal["Enabled", "Disabled"]
Alerts = tuple[MeterAlert, ...]
_T = TypeVar("_T")
_S = TypeVar("_S", bound=str)

MICROS_PER_HOUR = 3_600_000_000
_ONE_MICROSECOND = dt.timedelta(microseconds=1)
_MAX_EVENTS_PER_RUN = 16
"""More than any run can meet (low credit, threshold, exhaustion, one pending change and its
consequences); reaching it means a transition failed to make progress, which is a bug."""


@dataclass(frozen=True, slots=True)
class MeterDefaults:
    """What a meter starts with when the manifest does not say (policy as data)."""

    emergency_credit_pence: int = 500
    """Emergency credit available to each prepayment meter (GB meters offer a few pounds)."""
    low_credit_threshold_pence: int = 100
    """Below this a prepayment meter raises LOW_CREDIT (DUIS LowCreditThreshold)."""
    disablement_threshold_pence: int = 0
    """Prepayment meters disable supply when credit reaches this (DUIS DisablementThreshold)."""
    min_consumption_pence_per_hour: int = 5
    max_consumption_pence_per_hour: int = 40


DEFAULTS = MeterDefaults()
"""The defaults (frozen, so one shared instance is safe)."""


@dataclass(frozen=True, slots=True)
class PaymentModeCommand:
    """An SR 1.6 as the meter understands it, whichever generation delivered it."""

    to_credit: bool
    prepayment: PrepaymentSettings | None
    execute_at: dt.datetime | None = None
    """None: now. DUIS_CANCELLATION_DATE_TIME: cancel a pending future-dated change."""

    def __post_init__(self) -> None:
        if self.to_credit != (self.prepayment is None):
            raise ValueError("a change to Credit has no prepayment settings; a change to Prepayment needs them")
        if self.execute_at is not None and self.execute_at.utcoffset() is None:
            raise ValueError("an execution date-time must be timezone-aware")

    @property
    def is_cancellation(self) -> bool:
        return self.execute_at == DUIS_CANCELLATION_DATE_TIME

    @property
    def mode(self) -> PaymentMode:
        return "Credit" if self.to_credit else "Prepayment"


@dataclass(frozen=True, slots=True)
class MeterState:
    """Everything the simulation knows about one meter at ``updated_at``."""

    device_id: Eui64
    device_type: DeviceType
    smets: int
    payment_mode: PaymentMode
    credit_pence: int
    emergency_credit_pence: int
    """Emergency credit still available."""
    emergency_credit_active: bool
    debt_pence: int
    """Emergency credit used (owed to the supplier)."""
    disablement_threshold_pence: int
    supply: Supply
    last_gbcs_counter: int
    """The highest GBCS counter accepted (SMETS2): a command must carry a greater one."""
    trust_anchor_fingerprint: str
    """Hex SHA-256 of the Supplier (``02``) DS certificate installed on the meter."""
    consumption_pence_per_hour: int
    updated_at: dt.datetime
    low_credit_threshold_pence: int = 100
    consumption_carry: int = 0
    """Consumption not yet deducted, in pence·µs per hour (0 <= carry < MICROS_PER_HOUR)."""
    pending: PaymentModeCommand | None = None
    """A future-dated payment mode change waiting for its execution date-time."""
    executed_request_ids: tuple[str, ...] = ()
    """SMETS1: the last few DUIS RequestIDs executed, so a re-delivery is not executed twice."""
    utrn_counters: tuple[int, ...] = ()
    """The UTRN counter cache (GBCS §14): counters of the UTRNs accepted, oldest first, bounded."""

    def __post_init__(self) -> None:
        if self.consumption_pence_per_hour <= 0:
            raise ValueError("consumption must be a positive number of pence per hour")
        if not 0 <= self.consumption_carry < MICROS_PER_HOUR:
            raise ValueError("consumption carry out of range")
        if self.updated_at.utcoffset() is None:
            raise ValueError("updated_at must be timezone-aware")


# --- building ---------------------------------------------------------------------------


def consumption_rate(device_id: Eui64, defaults: MeterDefaults = DEFAULTS) -> int:
    """Pence per hour, a fixed function of the device id: the same meter behaves the same in every run."""
    span = defaults.max_consumption_pence_per_hour - defaults.min_consumption_pence_per_hour + 1
    return defaults.min_consumption_pence_per_hour + hashlib.sha256(device_id.to_bytes()).digest()[0] % span


def new_meter(
    *,
    device_id: Eui64,
    device_type: DeviceType,
    smets: int,
    payment_mode: PaymentMode,
    credit_pence: int,
    trust_anchor_fingerprint: str,
    at: dt.datetime,
    defaults: MeterDefaults = DEFAULTS,
) -> MeterState:
    """A meter as installed: supply on, full emergency credit, no debt, no commands seen."""
    return MeterState(
        device_id=device_id,
        device_type=device_type,
        smets=smets,
        payment_mode=payment_mode,
        credit_pence=credit_pence,
        emergency_credit_pence=defaults.emergency_credit_pence,
        emergency_credit_active=False,
        debt_pence=0,
        disablement_threshold_pence=defaults.disablement_threshold_pence,
        supply="Enabled",
        last_gbcs_counter=0,
        trust_anchor_fingerprint=trust_anchor_fingerprint,
        consumption_pence_per_hour=consumption_rate(device_id, defaults),
        updated_at=at,
        low_credit_threshold_pence=defaults.low_credit_threshold_pence,
    )


# --- time -------------------------------------------------------------------------------


def run_down(state: MeterState, now: dt.datetime) -> tuple[MeterState, Alerts]:
    """The meter at ``now``, with the alerts of every event on the way, each stamped when it happened.

    A state already at or past ``now`` is returned unchanged (the clock never runs a meter backwards).
    """
    alerts: list[MeterAlert] = []
    for _ in range(_MAX_EVENTS_PER_RUN):
        event_at = next_event_at(state)
        if event_at is None or event_at > now:
            return _consume(state, now), tuple(alerts)
        state, raised = _handle_event(state, event_at)
        alerts.extend(raised)
    raise RuntimeError(f"meter {state.device_id}: no progress after {_MAX_EVENTS_PER_RUN} events")


def supply_lost_at(state: MeterState, until: dt.datetime) -> dt.datetime | None:
    """When the meter loses supply if nothing reaches it first (no command, no top-up), up to ``until``.

    None when it keeps supply until then (a credit meter, or one with enough credit, or a
    future-dated switch to Credit that comes first). A meter already off supply answers its
    ``updated_at``: it lost supply then or earlier. The same events as :func:`run_down`, so the
    console's forecast is what the simulation will do.
    """
    if state.supply == "Disabled":
        return state.updated_at
    for _ in range(_MAX_EVENTS_PER_RUN):
        event_at = next_event_at(state)
        if event_at is None or event_at > until:
            return None
        state, _alerts = _handle_event(state, event_at)
        if state.supply == "Disabled":
            return event_at
    raise RuntimeError(f"meter {state.device_id}: no progress after {_MAX_EVENTS_PER_RUN} events")


def next_event_at(state: MeterState) -> dt.datetime | None:
    """When :func:`run_down` next has something to do for this meter; None if never (until a command)."""
    pending = state.pending
    moments = [pending.execute_at] if pending is not None and pending.execute_at is not None else []
    pence = _pence_to_next_boundary(state)
    if pence is not None:
        micros = micros_to_consume(pence, state.consumption_pence_per_hour, state.consumption_carry)
        moments.append(state.updated_at + micros * _ONE_MICROSECOND)
    return min(moments, default=None)


def micros_to_consume(pence: int, pence_per_hour: int, carry: int) -> int:
    """The fewest whole microseconds after which ``pence`` more have been consumed."""
    needed = pence * MICROS_PER_HOUR - carry
    return max(0, -(-needed // pence_per_hour))


def _drawing_from(state: MeterState) -> Literal["credit", "emergency"] | None:
    """Credit first, down to the threshold; emergency credit (once active) only after that.

    Emergency credit activated before the threshold (SR 2.5) is held until credit runs out."""
    if state.payment_mode != "Prepayment" or state.supply != "Enabled":
        return None
    in_emergency = state.emergency_credit_active and state.credit_pence <= state.disablement_threshold_pence
    return "emergency" if in_emergency else "credit"


def _pence_to_next_boundary(state: MeterState) -> int | None:
    """Pence until the next balance event: low credit crossed, threshold reached, emergency credit gone."""
    source = _drawing_from(state)
    if source is None:
        return None
    if source == "emergency":
        return state.emergency_credit_pence
    to_threshold = max(0, state.credit_pence - state.disablement_threshold_pence)
    if state.credit_pence >= state.low_credit_threshold_pence:
        return min(to_threshold, state.credit_pence - state.low_credit_threshold_pence + 1)
    return to_threshold


def _consume(state: MeterState, until: dt.datetime) -> MeterState:
    """Deducts consumption up to ``until``; never past the next boundary (run_down stops at each)."""
    source = _drawing_from(state)
    if source is None or until <= state.updated_at:
        return state
    elapsed = (until - state.updated_at) // _ONE_MICROSECOND
    pence, carry = divmod(elapsed * state.consumption_pence_per_hour + state.consumption_carry, MICROS_PER_HOUR)
    if source == "emergency":
        pence = min(pence, state.emergency_credit_pence)
        return replace(
            state,
            emergency_credit_pence=state.emergency_credit_pence - pence,
            debt_pence=state.debt_pence + pence,
            consumption_carry=carry,
            updated_at=until,
        )
    pence = min(pence, max(0, state.credit_pence - state.disablement_threshold_pence))
    return replace(state, credit_pence=state.credit_pence - pence, consumption_carry=carry, updated_at=until)


def _handle_event(state: MeterState, at: dt.datetime) -> tuple[MeterState, Alerts]:
    """Brings the meter to ``at`` and applies whatever falls due then, in a fixed order."""
    consumed = _consume(state, at)
    low = _low_credit_alert(state, consumed, at)
    balanced, balance_alerts = _balance_transition(consumed, at)
    settled, pending_alerts = _due_pending_change(balanced, at)
    return settled, low + balance_alerts + pending_alerts


def _low_credit_alert(before: MeterState, after: MeterState, at: dt.datetime) -> Alerts:
    """LOW_CREDIT once, on the crossing: a meter already below the level raises nothing more."""
    level = before.low_credit_threshold_pence
    if before.payment_mode == "Prepayment" and before.credit_pence >= level > after.credit_pence:
        detail = f"credit {after.credit_pence}p fell below the low credit threshold {level}p"
        return (alert(after.device_id, AlertKind.LOW_CREDIT, at, detail),)
    return ()


def _balance_transition(state: MeterState, at: dt.datetime) -> tuple[MeterState, Alerts]:
    source = _drawing_from(state)
    if source == "credit" and state.credit_pence <= state.disablement_threshold_pence:
        if state.emergency_credit_pence > 0:
            detail = (
                f"credit reached the disablement threshold; {state.emergency_credit_pence}p emergency credit in use"
            )
            activated = replace(state, emergency_credit_active=True, updated_at=at)
            return activated, (alert(state.device_id, AlertKind.EMERGENCY_CREDIT_ACTIVATED, at, detail),)
        return _disable(state, at, "credit reached the disablement threshold and no emergency credit is left")
    if source == "emergency" and state.emergency_credit_pence == 0:
        return _disable(state, at, "emergency credit exhausted")
    return state, ()


def _disable(state: MeterState, at: dt.datetime, why: str) -> tuple[MeterState, Alerts]:
    disabled = replace(state, supply="Disabled", emergency_credit_active=False, consumption_carry=0, updated_at=at)
    return disabled, (alert(state.device_id, AlertKind.SUPPLY_DISABLED, at, f"supply disabled: {why}"),)


def _due_pending_change(state: MeterState, at: dt.datetime) -> tuple[MeterState, Alerts]:
    pending = state.pending
    if pending is None or pending.execute_at is None or pending.execute_at > at:
        return state, ()
    return _change_mode(replace(state, pending=None), pending, at, FUTURE_DATED_COMMAND_ACTIONED_CODE)


# --- commands ---------------------------------------------------------------------------


def apply_payment_mode(
    state: MeterState, *, to_credit: bool, prepayment_settings: PrepaymentSettings | None, now: dt.datetime
) -> tuple[MeterState, Alerts]:
    """Switches the meter's payment mode at ``now`` (running it down to ``now`` first).

    To Credit, a supply disabled for lack of credit is enabled again. To Prepayment,
    the threshold is the command's; a balance already at or below it takes effect at once.
    """
    command = PaymentModeCommand(to_credit, prepayment_settings)
    state, caught_up = run_down(state, now)
    state, changed = _change_mode(state, command, now, IMMEDIATE_COMMAND_ACTIONED_CODE)
    state, settled = run_down(state, now)
    return state, caught_up + changed + settled


def perform_payment_mode_command(
    state: MeterState, command: PaymentModeCommand, now: dt.datetime
) -> tuple[MeterState, Alerts, str]:
    """Executes, schedules or cancels an SR 1.6; returns the meter, its alerts and what was done.

    One pending change per meter: a new future-dated command replaces the previous one,
    a cancellation (DUIS 3000-12-31T00:00:00Z) removes it.
    """
    current, alerts = run_down(state, now)
    if command.execute_at is None or (not command.is_cancellation and command.execute_at <= now):
        changed, more = apply_payment_mode(
            current, to_credit=command.to_credit, prepayment_settings=command.prepayment, now=now
        )
        return changed, alerts + more, _describe(current, changed)
    if command.is_cancellation:
        had = "cancelled the pending" if current.pending is not None else "no pending"
        return replace(current, pending=None), alerts, f"{had} future-dated payment mode change"
    when = command.execute_at.astimezone(dt.UTC).isoformat()
    return replace(current, pending=command), alerts, f"payment mode change to {command.mode} scheduled for {when}"


def _change_mode(
    state: MeterState, command: PaymentModeCommand, at: dt.datetime, alert_code: int
) -> tuple[MeterState, Alerts]:
    if command.to_credit:
        changed = replace(
            state, payment_mode="Credit", supply="Enabled", emergency_credit_active=False, consumption_carry=0
        )
    else:
        if command.prepayment is None:  # excluded by PaymentModeCommand; keeps the type checker informed
            raise ValueError("a change to Prepayment needs its settings")
        changed = replace(
            state, payment_mode="Prepayment", disablement_threshold_pence=command.prepayment.disablement_threshold
        )
    changed = replace(changed, updated_at=max(at, state.updated_at))
    if changed.payment_mode == state.payment_mode:
        return changed, ()
    return changed, (alert(state.device_id, AlertKind.PAYMENT_MODE_CHANGED, at, _describe(state, changed), alert_code),)


def _describe(before: MeterState, after: MeterState) -> str:
    text = f"payment mode {before.payment_mode} -> {after.payment_mode}"
    if before.supply == "Disabled" and after.supply == "Enabled":
        text += "; supply enabled again"
    if after.payment_mode == "Prepayment":
        text += f"; disablement threshold {after.disablement_threshold_pence}p"
    return text


def remember_request_id(state: MeterState, request_id: str, keep: int) -> MeterState:
    """``state`` with ``request_id`` as the newest executed one, keeping at most ``keep``."""
    return replace(state, executed_request_ids=(*state.executed_request_ids, request_id)[-keep:])


# --- JSON -------------------------------------------------------------------------------


def state_to_json(state: MeterState) -> dict[str, object]:
    """The persisted and displayed form; :func:`state_from_json` reads it back."""
    return {
        "device_id": str(state.device_id),
        "device_type": state.device_type,
        "smets": state.smets,
        "payment_mode": state.payment_mode,
        "credit_pence": state.credit_pence,
        "emergency_credit_pence": state.emergency_credit_pence,
        "emergency_credit_active": state.emergency_credit_active,
        "debt_pence": state.debt_pence,
        "disablement_threshold_pence": state.disablement_threshold_pence,
        "low_credit_threshold_pence": state.low_credit_threshold_pence,
        "supply": state.supply,
        "last_gbcs_counter": state.last_gbcs_counter,
        "trust_anchor_fingerprint": state.trust_anchor_fingerprint,
        "consumption_pence_per_hour": state.consumption_pence_per_hour,
        "consumption_carry": state.consumption_carry,
        "updated_at": _time_text(state.updated_at),
        "pending": None if state.pending is None else _command_to_json(state.pending),
        "executed_request_ids": list(state.executed_request_ids),
        "utrn_counters": list(state.utrn_counters),
    }


def state_from_json(obj: dict[str, object]) -> MeterState:
    """Reads :func:`state_to_json`'s output; anything else raises ValueError."""
    pending = obj.get("pending")
    try:
        return MeterState(
            device_id=Eui64.parse(_typed(obj, "device_id", str)),
            device_type=_choice(obj, "device_type", ("ESME", "GSME")),
            smets=_typed(obj, "smets", int),
            payment_mode=_choice(obj, "payment_mode", ("Credit", "Prepayment")),
            credit_pence=_typed(obj, "credit_pence", int),
            emergency_credit_pence=_typed(obj, "emergency_credit_pence", int),
            emergency_credit_active=_typed(obj, "emergency_credit_active", bool),
            debt_pence=_typed(obj, "debt_pence", int),
            disablement_threshold_pence=_typed(obj, "disablement_threshold_pence", int),
            low_credit_threshold_pence=_typed(obj, "low_credit_threshold_pence", int),
            supply=_choice(obj, "supply", ("Enabled", "Disabled")),
            last_gbcs_counter=_typed(obj, "last_gbcs_counter", int),
            trust_anchor_fingerprint=_typed(obj, "trust_anchor_fingerprint", str),
            consumption_pence_per_hour=_typed(obj, "consumption_pence_per_hour", int),
            consumption_carry=_typed(obj, "consumption_carry", int),
            updated_at=_parse_time(_typed(obj, "updated_at", str)),
            pending=None if pending is None else _command_from_json(pending),
            executed_request_ids=tuple(str(item) for item in _typed(obj, "executed_request_ids", list)),
            utrn_counters=_counters(obj.get("utrn_counters", [])),
        )
    except KeyError as exc:
        raise ValueError(f"stored meter state lacks {exc}") from None


def _counters(value: object) -> tuple[int, ...]:
    """Stored UTRN counters (absent in states stored before top-ups existed: none)."""
    if not isinstance(value, list) or not all(isinstance(item, int) and not isinstance(item, bool) for item in value):
        raise ValueError("stored 'utrn_counters' must be a list of integers")
    return tuple(value)


def _command_to_json(command: PaymentModeCommand) -> dict[str, object]:
    prepayment = command.prepayment
    return {
        "to_credit": command.to_credit,
        "execute_at": None if command.execute_at is None else _time_text(command.execute_at),
        "prepayment": None
        if prepayment is None
        else {
            "suspend_debt_disabled": prepayment.suspend_debt_disabled,
            "suspend_debt_emergency": prepayment.suspend_debt_emergency,
            "disablement_threshold": prepayment.disablement_threshold,
        },
    }


def _command_from_json(value: object) -> PaymentModeCommand:
    if not isinstance(value, dict):
        raise ValueError("a stored pending change must be an object")  # noqa: TRY004  callers expect ValueError
    settings = value.get("prepayment")
    execute_at = value.get("execute_at")
    return PaymentModeCommand(
        to_credit=_typed(value, "to_credit", bool),
        prepayment=None
        if settings is None
        else PrepaymentSettings(
            suspend_debt_disabled=_typed(settings, "suspend_debt_disabled", bool),
            suspend_debt_emergency=_typed(settings, "suspend_debt_emergency", bool),
            disablement_threshold=_typed(settings, "disablement_threshold", int),
        ),
        execute_at=None if execute_at is None else _parse_time(str(execute_at)),
    )


def _time_text(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _parse_time(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text)
    if moment.utcoffset() is None:
        raise ValueError(f"stored time {text!r} has no UTC offset")
    return moment


def _typed(obj: object, key: str, kind: type[_T]) -> _T:
    if not isinstance(obj, dict):
        raise ValueError(f"expected an object holding {key!r}")  # noqa: TRY004  callers expect ValueError
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"stored {key!r} must be a {kind.__name__}, not {value!r}")
    return value


def _choice(obj: dict[str, object], key: str, allowed: tuple[_S, ...]) -> _S:
    value = obj[key]
    for option in allowed:
        if value == option:
            return option
    raise ValueError(f"stored {key!r} must be one of {allowed}, not {value!r}")
