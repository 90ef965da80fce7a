"""The registry and SoLR state the policy reads: immutable values.

A new :class:`RegistryState` is produced by each accepted directive
(:mod:`gateway.policy.solr`); the store keeps the directives, so start-up
rebuilds the same state by replaying them onto :func:`initial_state`.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway.eui64 import Eui64
from gateway.manifest import Manifest


class ActorKind(enum.Enum):
    SUPPLIER = "supplier"
    SOLR = "solr"
    SRP = "srp"
    AUTHORITY = "authority"
    PMA = "pma"
    DCC = "dcc"
    NETWORK = "network"
    OTHER = "other"
    OFFICER = "officer"


SUPPLIER_KINDS = frozenset({ActorKind.SUPPLIER, ActorKind.SOLR})


@dataclass(frozen=True, slots=True)
class Party:
    name: str
    kind: ActorKind
    mpids: tuple[str, ...]
    """The MPIDs the party held when registered (ownership moves in RegistryState.mpid_owner)."""
    agent_for: str | None = None
    """For an SRP: the supplier it is the agent of (MP134A: it holds that supplier's keys)."""


@dataclass(frozen=True, slots=True)
class User:
    """A registered User ID (EUI-64) with its role, or an officer/authority actor without one.

    SPEC §1 gives a User ID exactly one role, and the default world keeps to it.
    A DCC Boxed world registers its supplier ``90-B3-D5-1F-30-01-00-00`` as both
    ``IS`` and ``GS`` and its network operator as ``ED`` and ``GT``, because DCC
    Boxed's harnesses send electricity and gas requests from one User ID; the
    policy then acts in the role that fits each request (:mod:`gateway.policy.authorise`).
    """

    user_id: Eui64
    name: str
    party: str
    role: str | None
    """The first (in the default world: the only) role."""
    office: str | None = None
    """"SRO" or "ARO" for a party's responsible officers."""
    roles: tuple[str, ...] = ()
    """Every role of the User ID, ``role`` first; ``(role,)`` unless more are given."""

    def __post_init__(self) -> None:
        if not self.roles and self.role is not None:
            object.__setattr__(self, "roles", (self.role,))
        if self.roles and self.roles[0] != self.role:
            raise ValueError(f"user {self.user_id}: roles {self.roles} must start with its role {self.role}")


@dataclass(frozen=True, slots=True)
class Device:
    device_id: Eui64
    device_type: str
    """A DUIS device type: "ESME", "GSME", "GPF", "CHF", "HCALCS", "PPMID", "IHD" or "CAD"."""
    smets: int
    mpid: str
    """The supplier MPID the device is registered to."""
    network_mpid: str | None = None
    """The MPID of its registered network operator (ED or GT), when the world records one."""


@dataclass(frozen=True, slots=True)
class Delay:
    """A PMA delay (MP134A): until when, and what the PMA considered."""

    until: dt.datetime
    considered: str
    decided_at: dt.datetime

    def in_force(self, now: dt.datetime) -> bool:
        return now < self.until


@dataclass(frozen=True, slots=True)
class Confirmation:
    """The SoLR's five confirmations (MP134A part 2)."""

    estate: str
    staff: str
    srp_support: str
    risks: str
    timescales: str
    confirmed_at: dt.datetime


class SolrStage(enum.Enum):
    LICENCE_REVOKED = "licence-revoked"
    SOLR_APPOINTED = "solr-appointed"
    CONFIRMED = "solr-confirmed"
    TRANSFERRING = "transferring"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class SolrEvent:
    """One supplier failure, from licence revocation to closure."""

    failed: str
    licence_revoked_at: dt.datetime
    solr: str | None = None
    appointed_at: dt.datetime | None = None
    revocation_delay: Delay | None = None
    transfer_delay: Delay | None = None
    confirmation: Confirmation | None = None
    mpids_transferred_at: dt.datetime | None = None
    certificates_revoked_at: dt.datetime | None = None

    @property
    def stage(self) -> SolrStage:
        if self.mpids_transferred_at is not None and self.certificates_revoked_at is not None:
            return SolrStage.CLOSED
        if self.mpids_transferred_at is not None or self.certificates_revoked_at is not None:
            return SolrStage.TRANSFERRING
        if self.confirmation is not None:
            return SolrStage.CONFIRMED
        if self.solr is not None:
            return SolrStage.SOLR_APPOINTED
        return SolrStage.LICENCE_REVOKED


@dataclass(frozen=True, slots=True)
class Enablement:
    """The Authority's enablement of an SRP's SoLR Contingency user for one failed supplier (MP134B R6)."""

    failed: str
    user_id: Eui64
    enabled_at: dt.datetime
    until: dt.datetime
    withdrawn_at: dt.datetime | None = None

    def active(self, now: dt.datetime) -> bool:
        return self.withdrawn_at is None and self.enabled_at <= now <= self.until


@dataclass(frozen=True, slots=True)
class AdtFile:
    """Anomaly detection thresholds an SRP's ARO submitted for one failed supplier (MP134B R4)."""

    failed: str
    srp_party: str
    window_seconds: int
    thresholds: Mapping[str, int]
    submitted_by: Eui64
    submitted_at: dt.datetime


@dataclass(frozen=True)
class RegistryState:
    """Everything the static policy checks read. Treated as immutable: transitions build a new one."""

    parties: Mapping[str, Party]
    users: Mapping[Eui64, User]
    devices: Mapping[Eui64, Device]
    mpid_owner: Mapping[str, str]
    """MPID -> the party that holds it now (changes on transfer-mpids)."""
    events: Mapping[str, SolrEvent] = field(default_factory=dict)
    """Failed party -> its SoLR event."""
    enablements: Mapping[tuple[str, Eui64], Enablement] = field(default_factory=dict)
    adt_files: Mapping[tuple[str, str], AdtFile] = field(default_factory=dict)
    """(failed party, SRP party) -> the latest ADT file."""
    suspended: frozenset[str] = frozenset()

    def user(self, user_id: Eui64) -> User | None:
        return self.users.get(user_id)

    def mpids_of(self, party: str) -> frozenset[str]:
        return frozenset(mpid for mpid, owner in self.mpid_owner.items() if owner == party)


def initial_state(manifest: Manifest) -> RegistryState:
    """The registry as ``dcc-gateway init`` wrote it: parties, users, devices, MPID owners."""
    parties = {
        name: Party(name, ActorKind(party.kind), tuple(party.mpids), _agent_for(manifest, name))
        for name, party in manifest.parties.items()
    }
    users = {
        actor.user_id: User(actor.user_id, name, actor.party, actor.role, actor.office, actor.roles)
        for name, actor in manifest.actors.items()
    }
    devices = {
        device.device_id: Device(device.device_id, device.type, device.smets, device.supplier_mpid, device.network_mpid)
        for device in manifest.devices
    }
    owners = {mpid: name for name, party in parties.items() for mpid in party.mpids}
    return RegistryState(parties=parties, users=users, devices=devices, mpid_owner=owners)


def _agent_for(manifest: Manifest, party: str) -> str | None:
    for actor in manifest.actors.values():
        if actor.party == party and actor.agent_for:
            return actor.agent_for
    return None
