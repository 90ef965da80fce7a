"""The SoLR event as a state machine: directives in, a new registry state or a reason out.

:func:`decide` is pure: the same state, directive, issuer and time give the
same outcome, which is why replaying the stored directives at start-up
rebuilds the state exactly. Each refusal says why, in terms a user of the
SEC would recognise (MP134A, MP134A part 2, MP134B).

The life of one failure::

    revoke-licence -> appoint-solr -> [delay-revocation] [delay-mpid-transfer]
      -> confirm-takeover (the five MP134A part 2 items)
      -> transfer-mpids and revoke-certificates (each refused while its PMA delay
         is in force, and before the SoLR's confirmation) -> closed

Alongside: enable-contingency / withdraw-contingency (the Authority, MP134B R6,
at most ``contingency_max_days`` after the appointment) and submit-adt (an ARO
of the SRP, MP134B R4).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.eui64 import Eui64
from gateway.policy import directives as d
from gateway.policy.state import (
    SUPPLIER_KINDS,
    ActorKind,
    AdtFile,
    Confirmation,
    Delay,
    Device,
    Enablement,
    Party,
    RegistryState,
    SolrEvent,
    User,
)

DUIS_ROLES = frozenset({"IS", "ES", "GS", "RSA", "ED", "GT", "OU", "SC"})


@dataclass(frozen=True, slots=True)
class Outcome:
    accepted: bool
    reason: str
    state: RegistryState
    revoke_users: tuple[Eui64, ...] = field(default=())
    """User IDs whose certificates the DCC revokes as a result (revoke-certificates)."""


@dataclass(frozen=True, slots=True)
class Limits:
    contingency_max_days: int = 90
    """MP134A part 2: SRP arrangements end within 90 days of the SoLR date."""


class Refused(Exception):
    """Raised inside a transition; becomes a refused Outcome with this reason."""


def decide(state: RegistryState, directive: d.Directive, issuer: User, now: dt.datetime, limits: Limits) -> Outcome:
    """Applies ``directive`` from ``issuer`` at ``now``: accepted with a new state, or refused with a reason."""
    try:
        _check_issuer(state, directive, issuer)
        transition = _TRANSITIONS.get(type(directive))
        if transition is None:
            raise Refused(f"{d.command_name(directive)} does not change the registry")
        new_state, reason, revoked = transition(state, directive, issuer, now, limits)
    except Refused as refusal:
        return Outcome(False, str(refusal), state)
    return Outcome(True, reason, new_state, revoked)


def check_issuer(state: RegistryState, directive: d.Directive, issuer: User) -> str | None:
    """Why ``issuer`` may not issue ``directive``, or None when it may."""
    try:
        _check_issuer(state, directive, issuer)
    except Refused as refusal:
        return str(refusal)
    return None


def _check_issuer(state: RegistryState, directive: d.Directive, issuer: User) -> None:
    kind = state.parties[issuer.party].kind if issuer.office is None else ActorKind.OFFICER
    allowed = d.issuers(directive)
    if d.Issuer(kind, issuer.office) not in allowed:
        who = " or ".join(sorted(f"{i.kind.value}{' ' + i.office if i.office else ''}" for i in allowed))
        raise Refused(f"{d.command_name(directive)} may only be issued by the {who}")


_Result = tuple[RegistryState, str, tuple[Eui64, ...]]
Transition = Callable[..., _Result]
"""(state, directive of its own type, issuer, now, limits) -> (new state, reason, users to revoke)."""


# --- the SoLR life cycle -------------------------------------------------------------------


def _revoke_licence(state: RegistryState, directive: d.RevokeLicence, issuer: User, now: dt.datetime, limits: Limits) -> _Result:
    party = _party(state, directive.supplier)
    if party.kind not in SUPPLIER_KINDS:
        raise Refused(f"{party.name} is a {party.kind.value}, not a supplier: it holds no supply licence")
    if party.name in state.events:
        raise Refused(f"{party.name}'s licence was already revoked")
    event = SolrEvent(failed=party.name, licence_revoked_at=now)
    return _with_event(state, event), f"licence of {party.name} revoked", ()


def _appoint_solr(state: RegistryState, directive: d.AppointSolr, issuer: User, now: dt.datetime, limits: Limits) -> _Result:
    event = _event(state, directive.failed)
    solr = _party(state, directive.solr)
    if event.solr is not None:
        raise Refused(f"{event.solr} is already the SoLR for {event.failed}")
    if solr.kind not in SUPPLIER_KINDS or solr.name in state.events or solr.name == event.failed:
        raise Refused(f"{solr.name} cannot be a SoLR: it must be a supplier whose licence is not revoked")
    updated = dataclasses.replace(event, solr=solr.name, appointed_at=now)
    return _with_event(state, updated), f"{solr.name} appointed SoLR for {event.failed}", ()


def _delay_revocation(state: RegistryState, directive: d.DelayRevocation, issuer: User, now: dt.datetime, limits: Limits) -> _Result:
    event = _event(state, directive.supplier)
    if event.certificates_revoked_at is not None:
        raise Refused(f"{event.failed}'s certificates are already revoked")
    delay = _delay(directive.until, directive.considered, now)
    updated = dataclasses.replace(event, revocation_delay=delay)
    return _with_event(state, updated), f"revocation of {event.failed}'s certificates delayed until {_iso(delay.until)}", ()


def _delay_mpid_transfer(state: RegistryState, directive: d.DelayMpidTransfer, issuer: User, now: dt.datetime, limits: Limits) -> _Result:
    event = _event(state, directive.supplier)
    if event.mpids_transferred_at is not None:
        raise Refused(f"{event.failed}'s MPIDs are already transferred")
    delay = _delay(directive.until, directive.considered, now)
    updated = dataclasses.replace(event, transfer_delay=delay)
    return _with_event(state, updated), f"transfer of {event.failed}'s MPIDs delayed until {_iso(delay.until)}", ()


def _confirm_takeover(state: RegistryState, directive: d.ConfirmTakeover, issuer: User, now: dt.datetime, limits: Limits) -> _Result:
    event = _event(state, directive.failed)
    if event.solr is None:
        raise Refused(f"no SoLR has been appointed for {event.failed}")
    if issuer.party != event.solr:
        raise Refused(f"only the appointed SoLR ({event.solr}) confirms the takeover of {event.failed}")
    if event.confirmation is not None:
        raise Refused(f"the SoLR already confirmed the takeover of {event.failed}")
    confirmation = Confirmation(
        directive.estate, directive.staff, directive.srp_support, directive.risks, directive.timescales, now
    )
    updated = dataclasses.replace(event, confirmation=confirmation)
    return _with_event(state, updated), f"{event.solr} confirmed the takeover of {event.failed}", ()


def _revoke_certificates(state: RegistryState, directive: d.RevokeCertificates, issuer: User, now: dt.datetime, limits: Limits) -> _Result:
    event = _event(state, directive.supplier)
    if event.certificates_revoked_at is not None:
        raise Refused(f"{event.failed}'s certificates are already revoked")
    if event.revocation_delay is not None and event.revocation_delay.in_force(now):
        raise Refused(
            f"the SMKI PMA delayed revocation of {event.failed}'s certificates until {_iso(event.revocation_delay.until)}"
        )
    _require_confirmation(event, "revoke its certificates")
    users = tuple(sorted(u.user_id for u in state.users.values() if u.party == event.failed))
    updated = dataclasses.replace(event, certificates_revoked_at=now)
    return _with_event(state, updated), f"certificates of {event.failed} revoked ({len(users)} users)", users


def _transfer_mpids(state: RegistryState, directive: d.TransferMpids, issuer: User, now: dt.datetime, limits: Limits) -> _Result:
    event = _event(state, directive.failed)
    if event.solr != directive.solr:
        raise Refused(f"{directive.solr} is not the appointed SoLR for {event.failed}")
    if event.mpids_transferred_at is not None:
        raise Refused(f"{event.failed}'s MPIDs are already transferred")
    if event.transfer_delay is not None and event.transfer_delay.in_force(now):
        raise Refused(
            f"the SMKI PMA delayed the transfer of {event.failed}'s MPIDs until {_iso(event.transfer_delay.until)}"
        )
    _require_confirmation(event, "transfer its MPIDs")
    owners = {mpid: (event.solr if owner == event.failed else owner) for mpid, owner in state.mpid_owner.items()}
    moved = sorted(mpid for mpid, owner in state.mpid_owner.items() if owner == event.failed)
    updated = dataclasses.replace(event, mpids_transferred_at=now)
    new_state = dataclasses.replace(_with_event(state, updated), mpid_owner=owners)
    return new_state, f"MPIDs {', '.join(moved) or '(none)'} of {event.failed} transferred to {event.solr}", ()


# --- the SoLR Contingency role (MP134B) -------------------------------------------------


def _enable_contingency(state: RegistryState, directive: d.EnableContingency, issuer: User, now: dt.datetime, limits: Limits) -> _Result:
    event = _event(state, directive.failed)
    if event.solr is None or event.appointed_at is None:
        raise Refused(f"no SoLR has been appointed for {event.failed}: contingency follows a supplier failure (MP134B R6)")
    if event.mpids_transferred_at is not None:
        raise Refused(f"{event.failed}'s MPIDs are already transferred to {event.solr}")
    user = state.users.get(directive.srp_user)
    if user is None or user.role != "SC":
        raise Refused(f"{directive.srp_user} is not a registered SoLR Contingency (SC) user")
    srp = state.parties[user.party]
    if srp.kind is not ActorKind.SRP or srp.agent_for != event.failed:
        raise Refused(f"{srp.name} is not the Shared Resource Provider acting for {event.failed}")
    latest = event.appointed_at + dt.timedelta(days=limits.contingency_max_days)
    if directive.until > latest:
        raise Refused(
            f"enablement must end within {limits.contingency_max_days} days of the SoLR appointment "
            f"({_iso(latest)}), not {_iso(directive.until)}"
        )
    if directive.until <= now:
        raise Refused(f"enablement would already have ended ({_iso(directive.until)})")
    enablement = Enablement(event.failed, user.user_id, now, directive.until)
    enablements = {**state.enablements, (event.failed, user.user_id): enablement}
    reason = f"SoLR Contingency user {user.user_id} enabled for {event.failed} until {_iso(directive.until)}"
    return dataclasses.replace(state, enablements=enablements), reason, ()


def _withdraw_contingency(state: RegistryState, directive: d.WithdrawContingency, issuer: User, now: dt.datetime, limits: Limits) -> _Result:
    key = (directive.failed, directive.srp_user)
    enablement = state.enablements.get(key)
    if enablement is None or enablement.withdrawn_at is not None:
        raise Refused(f"{directive.srp_user} holds no enablement for {directive.failed} to withdraw")
    enablements = {**state.enablements, key: dataclasses.replace(enablement, withdrawn_at=now)}
    reason = f"SoLR Contingency enablement of {directive.srp_user} for {directive.failed} withdrawn"
    return dataclasses.replace(state, enablements=enablements), reason, ()


def _submit_adt(state: RegistryState, directive: d.SubmitAdt, issuer: User, now: dt.datetime, limits: Limits) -> _Result:
    event = _event(state, directive.failed)
    srp = state.parties[issuer.party]
    if srp.kind is not ActorKind.SRP or srp.agent_for != event.failed:
        raise Refused(f"{srp.name} is not the Shared Resource Provider acting for {event.failed}")
    if directive.window_seconds <= 0:
        raise Refused("the ADT window must be a positive number of seconds")
    adt = AdtFile(event.failed, srp.name, directive.window_seconds, dict(directive.thresholds), issuer.user_id, now)
    adt_files = {**state.adt_files, (event.failed, srp.name): adt}
    reason = f"ADT file for {event.failed} accepted: {dict(directive.thresholds)} per {directive.window_seconds} s"
    return dataclasses.replace(state, adt_files=adt_files), reason, ()


# --- registration (the DCC operator) --------------------------------------------------------


def _register_party(state: RegistryState, directive: d.RegisterParty, issuer: User, now: dt.datetime, limits: Limits) -> _Result:
    if directive.name in state.parties:
        raise Refused(f"party {directive.name} is already registered")
    try:
        kind = ActorKind(directive.kind)
    except ValueError:
        raise Refused(f"unknown party kind {directive.kind!r}") from None
    taken = [mpid for mpid in directive.mpids if mpid in state.mpid_owner]
    if taken:
        raise Refused(f"MPIDs already held by another party: {', '.join(taken)}")
    parties = {**state.parties, directive.name: Party(directive.name, kind, directive.mpids)}
    owners = {**state.mpid_owner, **{mpid: directive.name for mpid in directive.mpids}}
    return dataclasses.replace(state, parties=parties, mpid_owner=owners), f"party {directive.name} registered", ()


def _register_user(state: RegistryState, directive: d.RegisterUser, issuer: User, now: dt.datetime, limits: Limits) -> _Result:
    if directive.user_id in state.users:
        raise Refused(f"User ID {directive.user_id} is already registered")
    _party(state, directive.party)
    if directive.role not in DUIS_ROLES:
        raise Refused(f"unknown User Role {directive.role!r}")
    user = User(directive.user_id, directive.name, directive.party, directive.role)
    users = {**state.users, user.user_id: user}
    return dataclasses.replace(state, users=users), f"user {user.user_id} registered as {user.role}", ()


def _register_device(state: RegistryState, directive: d.RegisterDevice, issuer: User, now: dt.datetime, limits: Limits) -> _Result:
    if directive.device_id in state.devices:
        raise Refused(f"device {directive.device_id} is already registered")
    if directive.device_type not in ("ESME", "GSME") or directive.smets not in (1, 2):
        raise Refused("devices are ESME or GSME meters, SMETS1 or SMETS2")
    if directive.mpid not in state.mpid_owner:
        raise Refused(f"MPID {directive.mpid} is not registered to any party")
    device = Device(directive.device_id, directive.device_type, directive.smets, directive.mpid)
    devices = {**state.devices, device.device_id: device}
    return dataclasses.replace(state, devices=devices), f"device {device.device_id} registered", ()


def _suspend_party(state: RegistryState, directive: d.SuspendParty, issuer: User, now: dt.datetime, limits: Limits) -> _Result:
    _party(state, directive.party)
    if directive.party in state.suspended:
        raise Refused(f"{directive.party} is already suspended")
    suspended = state.suspended | {directive.party}
    return dataclasses.replace(state, suspended=suspended), f"{directive.party} suspended", ()


def _create_aro(state: RegistryState, directive: d.CreateAro, issuer: User, now: dt.datetime, limits: Limits) -> _Result:
    if directive.user_id in state.users:
        raise Refused(f"User ID {directive.user_id} is already registered")
    aro = User(directive.user_id, directive.name, issuer.party, None, "ARO")
    users = {**state.users, aro.user_id: aro}
    return dataclasses.replace(state, users=users), f"{directive.name} ({aro.user_id}) is now an ARO of {issuer.party}", ()


_TRANSITIONS: dict[type, Transition] = {
    d.RevokeLicence: _revoke_licence,
    d.AppointSolr: _appoint_solr,
    d.DelayRevocation: _delay_revocation,
    d.DelayMpidTransfer: _delay_mpid_transfer,
    d.ConfirmTakeover: _confirm_takeover,
    d.RevokeCertificates: _revoke_certificates,
    d.TransferMpids: _transfer_mpids,
    d.EnableContingency: _enable_contingency,
    d.WithdrawContingency: _withdraw_contingency,
    d.SubmitAdt: _submit_adt,
    d.RegisterParty: _register_party,
    d.RegisterUser: _register_user,
    d.RegisterDevice: _register_device,
    d.SuspendParty: _suspend_party,
    d.CreateAro: _create_aro,
}


# --- helpers ---------------------------------------------------------------------------------


def _party(state: RegistryState, name: str) -> Party:
    party = state.parties.get(name)
    if party is None:
        raise Refused(f"no party named {name!r}")
    return party


def _event(state: RegistryState, failed: str) -> SolrEvent:
    _party(state, failed)
    event = state.events.get(failed)
    if event is None:
        raise Refused(f"{failed}'s licence has not been revoked: there is no supplier failure to act on")
    return event


def _with_event(state: RegistryState, event: SolrEvent) -> RegistryState:
    return dataclasses.replace(state, events={**state.events, event.failed: event})


def _delay(until: dt.datetime, considered: str, now: dt.datetime) -> Delay:
    if until <= now:
        raise Refused(f"a delay must end in the future, not {_iso(until)}")
    if len(considered.strip()) < 10:
        raise Refused("record what the PMA considered (MP134A: eligibility, continuity plan, SRP, exit, prepayment customers)")
    return Delay(until, considered.strip(), now)


def _require_confirmation(event: SolrEvent, action: str) -> None:
    if event.confirmation is None:
        raise Refused(
            f"the SoLR has not yet confirmed the takeover of {event.failed} (MP134A part 2): cannot {action} yet"
        )


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")
