"""Access control after authentication: a fixed order of small checks, each a DUIS code.

    1. registered user and role ........................... E1
    2. SRV eligibility for the role (SC: its allow-list) ... E2   MP134B R3
       (a User ID with several roles: those eligible go on)
    3. user status (suspended; SC enabled, not withdrawn,
       not expired, within 90 days of the SoLR date) ....... E3   MP134B R6, MP134A part 2
    4. device exists ...................................... E19
    5. SRV valid for the device type ...................... E11
    6. command variant valid for the SRV and the meter .... E12
    7. device registered to the user's MPIDs now, in a role
       of the device's fuel (suppliers: the supplier MPID;
       ED/GT: the network operator MPID; SC: the enabled
       failed supplier's, not transferred, with an ADT file
       from its SRP's ARO) ................................ E4   MP134B R4, MP134A part 2
    8. content (SC: payment mode to Credit in an SR body) .. E41  MP134B R5

The role the request is decided in (``Admissible.role``, audited) is the
first of the user's roles that is eligible for the SRV and, for a device,
fits it (step 7); in the default world every User ID has one role.

Replay (E40) and anomaly detection (E43) come last and are decided by the
store atomically (:meth:`gateway.store.base.Store.admit`), because they
depend on what other requests, perhaps in other workers, did.

:func:`authorise` is pure: state, request, configuration and time in; a
:class:`Refusal` or an :class:`Admissible` out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway.codes import ResponseCode
from gateway.namespaces import SR, qname
from gateway.policy.eligibility import CONTINGENCY_ROLE, ELECTRICITY_ROLES, GAS_ROLES, Eligibility, ServiceVariant
from gateway.policy.state import Device, Enablement, RegistryState, User
from gateway.verify.documents import VerifiedRequest

UPDATE_PAYMENT_MODE = qname(SR, "UpdatePaymentMode")
CREDIT = qname(SR, "Credit")

SR_FORMS = frozenset({1, 2, 3})
"""Command variants that carry the Service Request itself."""
TRANSFORM = 4
SIGNED_PRE_COMMAND_FORMS = frozenset({5, 6, 7})
NON_DEVICE = 8

NETWORK_ROLES = frozenset({"ED", "GT"})
"""Network operators reach a device through its network operator MPID, suppliers through its supplier MPID."""
_ELECTRICITY, _GAS = "electricity", "gas"
DEVICE_FUELS: Mapping[str, frozenset[str]] = {
    "ESME": frozenset({_ELECTRICITY}),
    "HCALCS": frozenset({_ELECTRICITY}),
    "GSME": frozenset({_GAS}),
    "GPF": frozenset({_GAS}),
    "CHF": frozenset({_ELECTRICITY, _GAS}),
    "PPMID": frozenset({_ELECTRICITY, _GAS}),
    "IHD": frozenset({_ELECTRICITY, _GAS}),
    "CAD": frozenset({_ELECTRICITY, _GAS}),
}
"""The supplies a device serves: a load switch (HCALCS) serves the electricity supply and a gas
proxy (GPF) the gas one; the comms hub and the consumer's displays and devices serve both."""


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    eligibility: Eligibility
    contingency_max_days: int = 90
    """MP134A part 2: SRP arrangements end within 90 days of the SoLR appointment."""
    adt_default_window_seconds: int = 3600
    adt_default_thresholds: Mapping[str, int] = field(default_factory=dict)
    """Per-SRV anomaly thresholds for every user, until an ADT file says otherwise (SC)."""


@dataclass(frozen=True, slots=True)
class Refusal:
    code: ResponseCode
    reason: str
    step: str


@dataclass(frozen=True, slots=True)
class Admissible:
    """Every static check passed; replay and anomaly detection remain (the store decides)."""

    user: User
    role: str
    """The user's role this request is decided in (its only one, outside a DCC Boxed world)."""
    variant: ServiceVariant
    device: Device | None
    adt_window_seconds: int | None
    adt_threshold: int | None
    acting_for: str | None
    """For an SC user: the failed supplier whose device this is."""


class _Refused(Exception):
    def __init__(self, code: ResponseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class _Context:
    state: RegistryState
    request: VerifiedRequest
    config: PolicyConfig
    now: dt.datetime


def authorise(
    state: RegistryState, request: VerifiedRequest, config: PolicyConfig, now: dt.datetime
) -> Refusal | Admissible:
    context = _Context(state, request, config, now)
    step = ""
    try:
        step = "user"
        user = registered_user(context)
        step = "eligibility"
        variant, roles = eligible_variant(context, user)
        step = "status"
        user_status(context, user)
        step = "device"
        device = existing_device(context, variant)
        step = "device-type"
        device_type_applies(variant, device)
        step = "command-variant"
        command_variant_applies(context, variant, device)
        step = "device-authorisation"
        role, acting_for = device_authorised(context, user, roles, device)
        step = "content"
        content_permitted(context, role)
        step = "anomaly-thresholds"
        window, threshold = anomaly_thresholds(context, user, variant, acting_for)
    except _Refused as refused:
        return Refusal(refused.code, refused.reason, step)
    return Admissible(user, role, variant, device, window, threshold, acting_for)


# --- the steps, in order -----------------------------------------------------------------


def registered_user(context: _Context) -> User:
    user = context.state.user(context.request.originator)
    if user is None or not user.roles:
        raise _Refused(ResponseCode.E1, f"{context.request.originator} is not a registered DUIS user")
    return user


def eligible_variant(context: _Context, user: User) -> tuple[ServiceVariant, tuple[str, ...]]:
    """The variant, and those of the user's roles that may send it (in the user's order)."""
    srv = context.request.service_reference_variant
    eligibility = context.config.eligibility
    variant = eligibility.variant(srv)
    if variant is None or context.request.service_reference != _reference_of(srv):
        raise _Refused(ResponseCode.E2, f"unknown Service Reference Variant {srv}")
    roles = tuple(role for role in user.roles if eligibility.permits(role, variant))
    if not roles:
        if user.role == CONTINGENCY_ROLE:
            allowed = ", ".join(sorted(eligibility.contingency_allowed))
            raise _Refused(ResponseCode.E2, f"the SoLR Contingency role may only send SRV {allowed}, not {srv}")
        held = "role " + user.roles[0] if len(user.roles) == 1 else "roles " + ", ".join(user.roles)
        raise _Refused(ResponseCode.E2, f"{held} may not send SRV {srv} ({variant.name})")
    return variant, roles


def user_status(context: _Context, user: User) -> None:
    state = context.state
    if user.party in state.suspended:
        raise _Refused(ResponseCode.E3, f"{user.party} is suspended")
    if user.role != CONTINGENCY_ROLE:
        return
    enablements = [e for e in state.enablements.values() if e.user_id == user.user_id]
    if not enablements:
        raise _Refused(ResponseCode.E3, "the SoLR Contingency role has not been enabled by the Authority")
    if not any(_enablement_in_force(context, e) for e in enablements):
        raise _Refused(ResponseCode.E3, _why_not_in_force(context, enablements))


def existing_device(context: _Context, variant: ServiceVariant) -> Device | None:
    if variant.non_device:
        return None
    device = context.state.devices.get(context.request.target)
    if device is None:
        raise _Refused(ResponseCode.E19, f"device {context.request.target} does not exist")
    return device


def device_type_applies(variant: ServiceVariant, device: Device | None) -> None:
    if device is not None and device.device_type not in variant.device_types:
        raise _Refused(ResponseCode.E11, f"SRV {variant.variant} ({variant.name}) does not apply to a {device.device_type}")


def command_variant_applies(context: _Context, variant: ServiceVariant, device: Device | None) -> None:
    cv = context.request.command_variant
    if device is None:
        allowed = frozenset({NON_DEVICE})
        why = "a non-device request is sent with command variant 8"
    elif variant.critical and device.smets == 2:
        allowed = SIGNED_PRE_COMMAND_FORMS | {TRANSFORM}
        why = "a critical SRV to a SMETS2 meter goes through a Pre-Command (CV4, then CV5)"
    elif device.smets == 1:
        allowed = SR_FORMS
        why = "SMETS1 meters take the Service Request itself (CV1-3); the DCC builds the command"
    else:
        allowed = SR_FORMS
        why = f"SRV {variant.variant} is not critical: CV1-3"
    if cv not in allowed:
        raise _Refused(ResponseCode.E12, f"command variant {cv} does not apply: {why}")


def device_authorised(
    context: _Context, user: User, roles: tuple[str, ...], device: Device | None
) -> tuple[str, str | None]:
    """The role the request is decided in, and for an SC user the failed supplier it acts for.

    ``roles`` are the user's roles eligible for the SRV: the first that may reach
    this device decides; when none may, every role's reason is given.
    """
    if device is None:
        return roles[0], None
    if user.role == CONTINGENCY_ROLE:
        return CONTINGENCY_ROLE, _contingency_device(context, user, device)
    reasons = []
    for role in roles:
        reason = _why_role_cannot_reach(context.state, user, role, device)
        if reason is None:
            return role, None
        reasons.append(reason if len(roles) == 1 else f"as {role}: {reason}")
    raise _Refused(ResponseCode.E4, "; ".join(reasons))


def _why_role_cannot_reach(state: RegistryState, user: User, role: str, device: Device) -> str | None:
    """None when a ``role`` user of ``user``'s party may send to ``device`` now; else why not."""
    network = role in NETWORK_ROLES
    mpid = device.network_mpid if network else device.mpid
    if mpid is None:
        return f"device {device.device_id} has no registered network operator"
    if state.mpid_owner.get(mpid) != user.party:
        return f"device {device.device_id} is registered to MPID {mpid}, not held by {user.party}"
    fuel = _ELECTRICITY if role in ELECTRICITY_ROLES else _GAS if role in GAS_ROLES else None
    if fuel is not None and fuel not in DEVICE_FUELS.get(device.device_type, frozenset()):
        party = "network operator" if network else "supplier"
        return f"a {role} user is not the {party} of a {device.device_type}"
    return None


def content_permitted(context: _Context, role: str) -> None:
    """MP134B R5: the SC role may only set payment mode to Credit (in an SR body; CV5 is checked in GBCS)."""
    if role != CONTINGENCY_ROLE or context.request.command_variant in SIGNED_PRE_COMMAND_FORMS:
        return
    body = context.request.body
    if body.tag != UPDATE_PAYMENT_MODE:
        raise _Refused(ResponseCode.E41, "the SoLR Contingency role may only send Update Payment Mode")
    modes = [child for child in body if child.tag != qname(SR, "ExecutionDateTime")]
    if len(modes) != 1 or modes[0].tag != CREDIT:
        mode = modes[0].tag.rpartition("}")[2] if modes else "nothing"
        raise _Refused(ResponseCode.E41, f"the SoLR Contingency role may only set payment mode to Credit, not {mode}")


def anomaly_thresholds(
    context: _Context, user: User, variant: ServiceVariant, acting_for: str | None
) -> tuple[int | None, int | None]:
    config = context.config
    srv = variant.variant
    if acting_for is not None:
        adt = context.state.adt_files[(acting_for, user.party)]
        threshold = adt.thresholds.get(srv, config.adt_default_thresholds.get(srv))
        return (adt.window_seconds, threshold) if threshold is not None else (None, None)
    threshold = config.adt_default_thresholds.get(srv)
    return (config.adt_default_window_seconds, threshold) if threshold is not None else (None, None)


# --- SC helpers -----------------------------------------------------------------------------


def _enablement_in_force(context: _Context, enablement: Enablement) -> bool:
    if not enablement.active(context.now):
        return False
    event = context.state.events.get(enablement.failed)
    if event is None or event.appointed_at is None:
        return False
    return context.now <= event.appointed_at + dt.timedelta(days=context.config.contingency_max_days)


def _why_not_in_force(context: _Context, enablements: list[Enablement]) -> str:
    latest = max(enablements, key=lambda e: e.enabled_at)
    if latest.withdrawn_at is not None:
        return f"the Authority withdrew the SoLR Contingency enablement for {latest.failed}"
    if context.now < latest.enabled_at:
        return "the SoLR Contingency enablement is not yet in force"
    if context.now > latest.until:
        return f"the SoLR Contingency enablement for {latest.failed} expired at {latest.until.isoformat()}"
    return f"more than {context.config.contingency_max_days} days have passed since the SoLR appointment"


def _contingency_device(context: _Context, user: User, device: Device) -> str:
    state = context.state
    failed = [
        name
        for name, party in state.parties.items()
        if device.mpid in party.mpids and name in state.events
    ]
    if not failed:
        raise _Refused(ResponseCode.E4, f"device {device.device_id} does not belong to a failed supplier")
    supplier = failed[0]
    enablement = state.enablements.get((supplier, user.user_id))
    if enablement is None or not _enablement_in_force(context, enablement):
        raise _Refused(ResponseCode.E4, f"the SoLR Contingency role is not enabled for {supplier}, whose device this is")
    if state.mpid_owner.get(device.mpid) != supplier:
        raise _Refused(ResponseCode.E4, f"MPID {device.mpid} has been transferred from {supplier} to {state.mpid_owner.get(device.mpid)}")
    if (supplier, user.party) not in state.adt_files:
        raise _Refused(ResponseCode.E4, f"no ADT file from an ARO of {user.party} for {supplier} (MP134B R4)")
    return supplier


def _reference_of(srv: str) -> str:
    """The Service Reference of a variant: "4.1.1" -> "4.1"; "1.6" -> "1.6"."""
    parts = srv.split(".")
    return ".".join(parts[:2])

