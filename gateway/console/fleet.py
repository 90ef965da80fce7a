"""The console's fleet: every registered device, its meter as of now, and when it would lose supply.

The forecast is the simulation's own: :func:`~gateway.devices.meter.supply_lost_at`
runs a copy of the meter through the events :func:`~gateway.devices.meter.run_down`
will apply (low credit, the disablement threshold, emergency credit, a future-dated
payment mode change), assuming nothing else reaches it (no command, no top-up).

Cost, for the 10,000-meter world and up: one pass over the fleet per call, for the
filters and the counts; the per-meter forecast is cached while the meter's state
is unchanged (a meter nothing has touched is the same state on every call), and
the pass yields to the event loop every :data:`_CHUNK` devices so the gateway
keeps answering requests meanwhile. Only the rows of the page asked for are run
down to now and sampled for their sparkline.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from gateway.devices import MeterFleet, MeterState, run_down, supply_lost_at
from gateway.eui64 import Eui64
from gateway.manifest import Manifest
from gateway.console.text import iso
from gateway.policy.state import Device, RegistryState

MAX_WITHIN_DAYS: Final = 365
"""The furthest "will lose supply within N days" looks ahead."""
MAX_LIMIT: Final = 500
DEFAULT_LIMIT: Final = 100
DEFAULT_HORIZON_DAYS: Final = 28
"""What the sparkline covers when no "within N days" filter is set (the demo's four weeks)."""
SPARKLINE_POINTS: Final = 15
_CHUNK: Final = 1000
_FORECAST_REACH: Final = dt.timedelta(days=MAX_WITHIN_DAYS + 1)


class FleetQueryError(ValueError):
    """A query parameter of ``/console/api/fleet`` that is not what it must be."""


@dataclass(frozen=True, slots=True)
class FleetQuery:
    supplier: str | None = None
    """A party name (the MPID's holder now) or an MPID; None: every supplier."""
    within_days: float | None = None
    """Only devices off supply now or losing it within this many days; None: all."""
    limit: int = DEFAULT_LIMIT
    offset: int = 0

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> FleetQuery:
        unknown = sorted(set(params) - {"supplier", "within_days", "limit", "offset"})
        if unknown:
            raise FleetQueryError(f"unknown parameter(s): {', '.join(unknown)} (known: supplier, within_days, limit, offset)")
        supplier = params.get("supplier", "").strip() or None
        within = params.get("within_days", "").strip()
        return cls(
            supplier=supplier,
            within_days=_within_days(within) if within else None,
            limit=_integer(params.get("limit"), "limit", DEFAULT_LIMIT, 1, MAX_LIMIT),
            offset=_integer(params.get("offset"), "offset", 0, 0, 10**9),
        )

    @property
    def horizon(self) -> dt.timedelta:
        return dt.timedelta(days=self.within_days if self.within_days is not None else DEFAULT_HORIZON_DAYS)


def _within_days(text: str) -> float:
    try:
        days = float(text)
    except ValueError:
        raise FleetQueryError(f"within_days must be a number of days, not {text!r}") from None
    if not math.isfinite(days) or not 0 < days <= MAX_WITHIN_DAYS:
        raise FleetQueryError(f"within_days must be more than 0 and at most {MAX_WITHIN_DAYS}, not {text}")
    return days


def _integer(text: str | None, name: str, default: int, low: int, high: int) -> int:
    if text is None or not text.strip():
        return default
    if not text.strip().isdigit() or not low <= int(text) <= high:
        raise FleetQueryError(f"{name} must be a whole number from {low} to {high}, not {text!r}")
    return int(text)


@dataclass(frozen=True, slots=True)
class _Forecast:
    state: MeterState
    reach: dt.datetime
    """How far ahead the forecast looked: a None ``lost_at`` holds until then."""
    lost_at: dt.datetime | None


class FleetForecasts:
    """When each meter would lose supply, remembered while its state stays the same (one per app)."""

    def __init__(self) -> None:
        self._by_device: dict[Eui64, _Forecast] = {}

    def lost_at(self, state: MeterState, now: dt.datetime, horizon_end: dt.datetime) -> dt.datetime | None:
        known = self._by_device.get(state.device_id)
        if known is None or known.state != state or (known.lost_at is None and known.reach < horizon_end):
            reach = max(now, state.updated_at, horizon_end - _FORECAST_REACH) + _FORECAST_REACH
            known = _Forecast(state, reach, supply_lost_at(state, reach))
            self._by_device[state.device_id] = known
        return known.lost_at


@dataclass(frozen=True, slots=True)
class _Match:
    device: Device
    holder: str | None
    state: MeterState | None
    lost_at: dt.datetime | None


async def fleet_view(
    registry: RegistryState,
    manifest: Manifest,
    fleet: MeterFleet,
    forecasts: FleetForecasts,
    now: dt.datetime,
    query: FleetQuery,
) -> dict[str, object]:
    """``GET /console/api/fleet``: counts over the supplier's devices, and one page of matching rows."""
    horizon_end = now + query.horizon
    counts = {"devices": 0, "meters": 0, "prepayment": 0, "off_supply": 0, "losing_supply": 0}
    matches: list[_Match] = []
    for index, device in enumerate(registry.devices.values()):
        if index % _CHUNK == _CHUNK - 1:
            await asyncio.sleep(0)  # let the gateway answer requests between chunks
        holder = registry.mpid_owner.get(device.mpid)
        if query.supplier is not None and query.supplier not in (device.mpid, holder):
            continue
        state = fleet.state(device.device_id)
        lost_at = None if state is None else forecasts.lost_at(state, now, horizon_end)
        _count(counts, state, lost_at, now, horizon_end)
        if query.within_days is None or (lost_at is not None and lost_at <= horizon_end):
            matches.append(_Match(device, holder, state, lost_at))
    page = matches[query.offset : query.offset + query.limit]
    return {
        "as_of": iso(now),
        "horizon_end": iso(horizon_end),
        "query": {"supplier": query.supplier, "within_days": query.within_days, "limit": query.limit, "offset": query.offset},
        "counts": counts,
        "matching": len(matches),
        "suppliers": _suppliers(registry),
        "rows": [_row(match, manifest, now, horizon_end) for match in page],
    }


def _count(
    counts: dict[str, int], state: MeterState | None, lost_at: dt.datetime | None, now: dt.datetime, end: dt.datetime
) -> None:
    counts["devices"] += 1
    if state is None:
        return
    counts["meters"] += 1
    counts["prepayment"] += state.payment_mode == "Prepayment"
    if lost_at is not None and lost_at <= now:
        counts["off_supply"] += 1
    elif lost_at is not None and lost_at <= end:
        counts["losing_supply"] += 1


def _suppliers(registry: RegistryState) -> list[dict[str, object]]:
    """The parties holding MPIDs now, with their MPIDs (the supplier filter's choices)."""
    held: dict[str, list[str]] = {}
    for mpid, holder in sorted(registry.mpid_owner.items()):
        held.setdefault(holder, []).append(mpid)
    return [{"party": party, "kind": registry.parties[party].kind.value, "mpids": mpids}
            for party, mpids in sorted(held.items()) if party in registry.parties]


def _row(match: _Match, manifest: Manifest, now: dt.datetime, horizon_end: dt.datetime) -> dict[str, object]:
    device = match.device
    row: dict[str, object] = {
        "device_id": str(device.device_id),
        "device_type": device.device_type,
        "smets": device.smets,
        "mpid": device.mpid,
        "supplier": match.holder,
        "mpxn": _mpxn(manifest, device.device_id),
        "simulated": match.state is not None,
        "payment_mode": None,
        "credit_pence": None,
        "emergency_credit_pence": None,
        "emergency_credit_active": None,
        "debt_pence": None,
        "supply": None,
        "loses_supply_at": None,
        "pending_change": None,
        "sparkline": [],
    }
    if match.state is None:
        return row  # a device that is no meter (comms hub, PPMID, …), or one registered without a simulated meter
    view, _alerts = run_down(match.state, now)  # the advance loop raises and stores these alerts in its time
    pending = view.pending
    row.update(
        payment_mode=view.payment_mode,
        credit_pence=view.credit_pence,
        emergency_credit_pence=view.emergency_credit_pence,
        emergency_credit_active=view.emergency_credit_active,
        debt_pence=view.debt_pence,
        supply=view.supply,
        loses_supply_at=None if match.lost_at is None or match.lost_at > horizon_end else iso(match.lost_at),
        pending_change=None
        if pending is None or pending.execute_at is None
        else {"to": "Credit" if pending.to_credit else "Prepayment", "at": iso(pending.execute_at)},
        sparkline=_sparkline(view, now, horizon_end),
    )
    return row


def _sparkline(view: MeterState, now: dt.datetime, end: dt.datetime) -> list[dict[str, object]]:
    """Credit plus the emergency credit left, sampled from now to the horizon if nothing reaches the meter."""
    step = (end - now) / (SPARKLINE_POINTS - 1)
    points = []
    state = view
    for index in range(SPARKLINE_POINTS):
        state, _alerts = run_down(state, now + step * index)
        points.append({
            "at": iso(now + step * index),
            "pence": state.credit_pence + state.emergency_credit_pence,
            "supply": state.supply,
        })
    return points


def _mpxn(manifest: Manifest, device_id: Eui64) -> str | None:
    try:
        return manifest.device(device_id).mpxn
    except KeyError:
        return None  # registered by a directive, not in the world's manifest

