"""The simulated meter fleet: the last stage of the pipeline, where commands take effect.

``meter``       one meter's state and the pure functions that run it down and switch its mode
``alerts``      the alerts meters raise, with their GBCS alert codes
``content``     SR 1.6 GBCS content read back as the meter acts on it
``execute``     SMETS1 from the Service Request body; SMETS2 only from a verified Signed Pre-Command
``behaviours``  what a device does with an accepted command of an SRV (Instruction in, Outcome out)
``prepayment``  top-ups, emergency credit and the balance on a meter's state (pure)
``utrn``        GBCS §14 UTRNs: vended by a supplier's prepayment key, checked by the meter
``prepayment_commands``  SR 2.2, 2.5, 4.18 as the meter executes and answers them (GBCS)
``credentials`` a meter's own KA and DS keys and its supplier's prepayment KA certificate
``anchors``     each meter's trust anchor: its supplier's ``02`` DS certificate at install
``persistence`` stored meter states (SQLite), so a restart loses nothing
``fleet``       every meter of a world in memory: execute, advance, ``GET /sim/devices/{id}``
"""

from __future__ import annotations

from gateway.devices.alerts import AlertKind, MeterAlert
from gateway.devices.anchors import FleetAnchors, TrustAnchor, TrustAnchorError
from gateway.devices.content import ContentError, read_payment_mode_content
from gateway.devices.execute import (
    DeviceResponse,
    MeterRefusal,
    execute_signed_precommand,
    execute_sr_body,
)
from gateway.devices.fleet import ExecutionResult, MeterFleet
from gateway.devices.meter import (
    MeterDefaults,
    MeterState,
    PaymentModeCommand,
    apply_payment_mode,
    new_meter,
    next_event_at,
    perform_payment_mode_command,
    run_down,
    supply_lost_at,
)
from gateway.devices.persistence import (
    MemoryMeterStore,
    MeterPersistence,
    StoreMeterPersistence,
    meter_rows,
)

__all__ = [
    "AlertKind",
    "ContentError",
    "DeviceResponse",
    "ExecutionResult",
    "FleetAnchors",
    "MemoryMeterStore",
    "MeterAlert",
    "MeterDefaults",
    "MeterFleet",
    "MeterPersistence",
    "MeterRefusal",
    "MeterState",
    "PaymentModeCommand",
    "StoreMeterPersistence",
    "TrustAnchor",
    "TrustAnchorError",
    "apply_payment_mode",
    "execute_signed_precommand",
    "meter_rows",
    "execute_sr_body",
    "new_meter",
    "next_event_at",
    "perform_payment_mode_command",
    "read_payment_mode_content",
    "run_down",
    "supply_lost_at",
]
