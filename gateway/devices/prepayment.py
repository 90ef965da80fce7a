"""What keeps a prepayment customer on supply: top-ups (SR 2.2), emergency credit (SR 2.5), the balance.

The model (integer pence, as :mod:`gateway.devices.meter`):

* **Top-up.** A UTRN the meter accepted (:mod:`gateway.devices.utrn`) first repays
  the emergency credit in use (``debt_pence``), which becomes available again;
  the rest is added to the credit. Emergency credit stops once it is repaid. A
  supply disabled for lack of credit is enabled again when the credit is back
  above the disablement threshold (convention: the customer re-arms the supply at
  once, as they press the emergency credit button in this simulation). On a
  Credit-mode meter the value is added to the credit and nothing else changes.
* **Activate Emergency Credit.** GB meters offer emergency credit once the credit
  is below the emergency credit threshold (here the low credit threshold); the
  customer takes it with a button, or the supplier remotely (SR 2.5) for a customer
  who cannot. Refused on a Credit meter, when it is active already, when none is
  left, or while the credit is above that threshold. Once active it is used when
  the credit reaches the disablement threshold; a supply disabled then is enabled.
* **Meter balance** (SR 4.18) is credit less the emergency credit in use: negative
  while the customer lives on emergency credit.

Each function runs the meter down to ``now`` first and returns the new state, its
alerts and a sentence for the audit; :class:`PrepaymentRefused` leaves it as it was.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

from gateway.devices.alerts import AlertKind, alert
from gateway.devices.meter import Alerts, MeterState, run_down
from gateway.devices.utrn import AcceptedTopUp


class PrepaymentRefused(ValueError):
    """The meter will not do it; ``reason`` says why. Nothing changed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def meter_balance_pence(state: MeterState) -> int:
    """Credit less the emergency credit in use (SR 4.18's Meter Balance)."""
    return state.credit_pence - state.debt_pence


def apply_top_up(state: MeterState, top_up: AcceptedTopUp, now: dt.datetime) -> tuple[MeterState, Alerts, str]:
    """Credits an accepted UTRN's value and records its counter in the meter's cache."""
    current, alerts = run_down(state, now)
    pence = top_up.pence
    repaid = min(pence, current.debt_pence) if current.payment_mode == "Prepayment" else 0
    credit = current.credit_pence + pence - repaid
    debt = current.debt_pence - repaid
    changed = replace(
        current,
        credit_pence=credit,
        debt_pence=debt,
        emergency_credit_pence=current.emergency_credit_pence + repaid,
        emergency_credit_active=current.emergency_credit_active and debt > 0,
        utrn_counters=top_up.counters,
        updated_at=max(now, current.updated_at),
    )
    detail = f"top-up of {pence}p (UTRN counter {top_up.utrn_counter}) accepted"
    if repaid:
        detail += f"; {repaid}p repaid emergency credit"
    if changed.supply == "Disabled" and changed.payment_mode == "Prepayment" and credit > changed.disablement_threshold_pence:
        changed = replace(changed, supply="Enabled", consumption_carry=0)
        detail += "; supply enabled again"
    detail += f"; credit {changed.credit_pence}p, balance {meter_balance_pence(changed)}p"
    settled, more = run_down(changed, now)
    return settled, alerts + more, detail


def activate_emergency_credit(state: MeterState, now: dt.datetime) -> tuple[MeterState, Alerts, str]:
    """SR 2.5: emergency credit on, supply back on if it was off; refused where a meter refuses it."""
    current, alerts = run_down(state, now)
    if current.payment_mode != "Prepayment":
        raise PrepaymentRefused("a Credit-mode meter has no emergency credit to activate")
    if current.emergency_credit_active:
        raise PrepaymentRefused("emergency credit is active already")
    if current.emergency_credit_pence <= 0:
        raise PrepaymentRefused("no emergency credit is left (a top-up restores it)")
    if current.credit_pence >= current.low_credit_threshold_pence:
        raise PrepaymentRefused(
            f"credit {current.credit_pence}p is not below the emergency credit threshold "
            f"{current.low_credit_threshold_pence}p"
        )
    changed = replace(current, emergency_credit_active=True, updated_at=max(now, current.updated_at))
    detail = f"emergency credit of {current.emergency_credit_pence}p activated remotely"
    if changed.supply == "Disabled":
        changed = replace(changed, supply="Enabled", consumption_carry=0)
        detail += "; supply enabled again"
    raised = alert(current.device_id, AlertKind.EMERGENCY_CREDIT_ACTIVATED, now, detail)
    settled, more = run_down(changed, now)
    return settled, (*alerts, raised, *more), detail
