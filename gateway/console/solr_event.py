"""The console's SoLR view: each supplier failure as its state machine, read off the registry.

The registry (:class:`~gateway.policy.state.RegistryState`) is what the gateway
decides on: the manifest's parties and users with every accepted directive
replayed onto them. This module turns it into what a person checks: the stage
each failure has reached, each directive in force and what it allows or refuses
now, and which directives the state machine would accept or refuse next, with
its own reason, found by asking :func:`gateway.policy.solr.decide` itself (it is
pure, so asking changes nothing).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from gateway.config import GatewayConfig
from gateway.manifest import Manifest
from gateway.policy import directives as d
from gateway.policy import solr
from gateway.console.text import actor_name, iso
from gateway.policy.state import ActorKind, Enablement, RegistryState, SolrEvent, SolrStage, User

_PROBE_TEXT = "(as the console asks the state machine; nothing is sent)"


@dataclass(frozen=True, slots=True)
class SolrSettings:
    """The policy data the view explains (from ``gateway.toml``)."""

    contingency_max_days: int
    sc_allowed_srvs: tuple[str, ...]

    @classmethod
    def from_config(cls, config: GatewayConfig) -> SolrSettings:
        return cls(config.policy.contingency_max_days, config.policy.sc_allowed_srvs)


def solr_view(registry: RegistryState, manifest: Manifest, settings: SolrSettings, now: dt.datetime) -> dict[str, object]:
    """``GET /console/api/solr``: every SoLR event, oldest failure first."""
    events = sorted(registry.events.values(), key=lambda event: event.licence_revoked_at)
    return {
        "as_of": iso(now),
        "stages": [stage.value for stage in SolrStage],
        "events": [_event(registry, manifest, settings, event, now) for event in events],
        "suspended": sorted(registry.suspended),
    }


def _event(
    registry: RegistryState, manifest: Manifest, settings: SolrSettings, event: SolrEvent, now: dt.datetime
) -> dict[str, object]:
    return {
        "failed": event.failed,
        "solr": event.solr,
        "stage": event.stage.value,
        "mpids": sorted(mpid for mpid in registry.parties[event.failed].mpids),
        "mpids_held_by": {mpid: registry.mpid_owner.get(mpid) for mpid in registry.parties[event.failed].mpids},
        "in_force": _in_force(registry, manifest, settings, event, now),
        "next": _next_directives(registry, manifest, settings, event, now),
    }


# --- directives in force ------------------------------------------------------------------


def _in_force(
    registry: RegistryState, manifest: Manifest, settings: SolrSettings, event: SolrEvent, now: dt.datetime
) -> list[dict[str, object]]:
    failed = event.failed
    items = [
        _item(
            "revoke-licence", event.licence_revoked_at, f"licence of {failed} revoked",
            allows=[f"the Authority to appoint a SoLR for {failed}", "the SMKI PMA to delay revocation and MPID transfer"],
            refuses=[f"{failed} as a SoLR"],
        )
    ]
    if event.solr is not None and event.appointed_at is not None:
        latest = event.appointed_at + dt.timedelta(days=settings.contingency_max_days)
        items.append(_item(
            "appoint-solr", event.appointed_at, f"{event.solr} appointed SoLR for {failed}",
            allows=[f"SoLR Contingency enablements for {failed} ending by {iso(latest)}",
                    f"{event.solr} to confirm the takeover"],
            refuses=[f"another SoLR for {failed}"],
        ))
    for name, delay, action in (
        ("delay-revocation", event.revocation_delay, "revoke-certificates"),
        ("delay-mpid-transfer", event.transfer_delay, "transfer-mpids"),
    ):
        if delay is None:
            continue
        in_force = delay.in_force(now)
        item = _item(
            name, delay.decided_at, f"{action} delayed until {iso(delay.until)}" + ("" if in_force else " (over)"),
            allows=[f"{failed}'s users to keep signing with their certificates"] if in_force and name == "delay-revocation" else [],
            refuses=[f"{action} until {iso(delay.until)}"] if in_force else [],
        )
        items.append({**item, "until": iso(delay.until), "considered": delay.considered, "active": in_force})
    if event.confirmation is not None:
        confirmation = event.confirmation
        item = _item(
            "confirm-takeover", confirmation.confirmed_at, f"{event.solr} confirmed the takeover (MP134A part 2)",
            allows=["transfer-mpids and revoke-certificates, once no PMA delay is in force"], refuses=[],
        )
        items.append({**item, "confirmed": {
            "estate": confirmation.estate, "staff": confirmation.staff, "srp_support": confirmation.srp_support,
            "risks": confirmation.risks, "timescales": confirmation.timescales,
        }})
    items += [_enablement(registry, manifest, settings, event, enablement, now)
              for (failed_party, _), enablement in sorted(registry.enablements.items(), key=lambda kv: kv[1].enabled_at)
              if failed_party == failed]
    for (failed_party, srp), adt in sorted(registry.adt_files.items()):
        if failed_party != failed:
            continue
        limits = ", ".join(f"{count} SRV {srv}" for srv, count in sorted(adt.thresholds.items()))
        item = _item(
            "submit-adt", adt.submitted_at, f"ADT file from {srp}: at most {limits} per {adt.window_seconds} s",
            allows=[f"{srp}'s SoLR Contingency requests for {failed}'s meters (MP134B R4)"],
            refuses=[f"more than {limits} within {adt.window_seconds} s: quarantined (E43)"],
        )
        items.append({**item, "srp": srp, "window_seconds": adt.window_seconds, "thresholds": dict(adt.thresholds),
                      "submitted_by": actor_name(manifest, adt.submitted_by)})
    if event.mpids_transferred_at is not None:
        items.append(_item(
            "transfer-mpids", event.mpids_transferred_at, f"{failed}'s MPIDs transferred to {event.solr}",
            allows=[f"{event.solr}'s users to send requests to those meters"],
            refuses=[f"the SoLR Contingency role for {failed}'s meters (E4)", f"{failed}'s users on those meters (E4)"],
        ))
    if event.certificates_revoked_at is not None:
        items.append(_item(
            "revoke-certificates", event.certificates_revoked_at, f"certificates of {failed}'s users revoked",
            allows=[], refuses=[f"every document signed by {failed}'s users (certificate revoked)"],
        ))
    return sorted(items, key=lambda item: str(item["at"]))


def _enablement(
    registry: RegistryState,
    manifest: Manifest,
    settings: SolrSettings,
    event: SolrEvent,
    enablement: Enablement,
    now: dt.datetime,
) -> dict[str, object]:
    status = _enablement_status(event, enablement, settings, now)
    srvs = ", ".join(settings.sc_allowed_srvs)
    mpids = ", ".join(sorted(registry.parties[event.failed].mpids))
    user = actor_name(manifest, enablement.user_id)
    if status == "in force":
        allows = [f"{user} to send SRV {srvs} setting payment mode to Credit, to {event.failed}'s meters ({mpids}), "
                  f"until {iso(enablement.until)}"]
        refuses = ["any other SRV (E2)", "Prepayment or any other content (E41)",
                   "meters of other suppliers, or once the MPIDs are transferred (E4)",
                   f"anything after {iso(enablement.until)} (E3)"]
    else:
        allows, refuses = [], [f"every request of {user} for {event.failed} (E3: enablement {status})"]
    item = _item(
        "enable-contingency", enablement.enabled_at,
        f"SoLR Contingency user {user} enabled for {event.failed} until {iso(enablement.until)}",
        allows=allows, refuses=refuses,
    )
    return {**item, "user_id": str(enablement.user_id), "user": user, "until": iso(enablement.until),
            "withdrawn_at": None if enablement.withdrawn_at is None else iso(enablement.withdrawn_at), "status": status}


def _enablement_status(event: SolrEvent, enablement: Enablement, settings: SolrSettings, now: dt.datetime) -> str:
    """The words the policy's E3 check would use (gateway.policy.authorise.user_status)."""
    if enablement.withdrawn_at is not None:
        return "withdrawn"
    if now < enablement.enabled_at:
        return "not yet in force"
    if now > enablement.until:
        return "expired"
    if event.appointed_at is not None and now > event.appointed_at + dt.timedelta(days=settings.contingency_max_days):
        return f"beyond {settings.contingency_max_days} days of the SoLR appointment"
    return "in force"


def _item(name: str, at: dt.datetime, summary: str, *, allows: list[str], refuses: list[str]) -> dict[str, object]:
    return {"directive": name, "at": iso(at), "summary": summary, "allows": allows, "refuses": refuses}


# --- what the state machine would do next ----------------------------------------------------


def _next_directives(
    registry: RegistryState, manifest: Manifest, settings: SolrSettings, event: SolrEvent, now: dt.datetime
) -> list[dict[str, object]]:
    """Each life-cycle directive of this event put to :func:`solr.decide` now, by an actor who may issue it."""
    limits = solr.Limits(settings.contingency_max_days)
    probes: list[tuple[d.Directive, User | None]] = []
    if event.solr is None:
        candidate = next((p.name for p in registry.parties.values() if p.kind is ActorKind.SOLR and p.name not in registry.events), None)
        if candidate is not None:
            probes.append((d.AppointSolr(event.failed, candidate), _user_of_kind(registry, ActorKind.AUTHORITY)))
    solr_user = None if event.solr is None else _user_of_party(registry, event.solr)
    probes.append((d.ConfirmTakeover(event.failed, *(["…"] * 5)), solr_user))
    if event.solr is not None:
        probes.append((d.TransferMpids(event.failed, event.solr), _user_of_kind(registry, ActorKind.DCC)))
    probes.append((d.RevokeCertificates(event.failed), _user_of_kind(registry, ActorKind.DCC)))
    if event.appointed_at is not None:
        latest = event.appointed_at + dt.timedelta(days=settings.contingency_max_days)
        for user in registry.users.values():
            if user.role == "SC" and registry.parties[user.party].agent_for == event.failed:
                probes.append((d.EnableContingency(event.failed, user.user_id, latest), _user_of_kind(registry, ActorKind.AUTHORITY)))
    answers = []
    for directive, issuer in probes:
        if issuer is None:
            continue
        outcome = solr.decide(registry, directive, issuer, now, limits)
        answers.append({
            "directive": d.command_name(directive),
            "issuer": actor_name(manifest, issuer.user_id),
            "accepted": outcome.accepted,
            "reason": outcome.reason,
            "note": _PROBE_TEXT,
        })
    return answers


def _user_of_kind(registry: RegistryState, kind: ActorKind) -> User | None:
    return next((u for u in registry.users.values() if u.office is None and registry.parties[u.party].kind is kind), None)


def _user_of_party(registry: RegistryState, party: str) -> User | None:
    return next((u for u in registry.users.values() if u.office is None and u.party == party), None)

