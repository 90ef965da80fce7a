"""Which certificate each meter trusts: the registered supplier's ``02`` DS certificate at install.

A meter's Supplier trust anchor is placed on it at installation and changes only
by a signed credentials update, which the simulation does not model. So when a
supplier fails, its meters keep trusting its DS key: only a holder of that key
(the failed supplier, or an SRP holding its keys, MP134A) can switch a SMETS2
meter, however the DCC's access control is set. Meters do not consult SMKI
revocation either: revoking the certificate stops the DCC accepting the supplier's
requests, not the meter accepting its signature.

Which actor: the supplier user holding the device's MPID with the role for its
fuel (ESME: ``IS``/``ES``; GSME: ``GS``), else any user with a DS key holding that
MPID (the generated world's SoLR has one ``IS`` user for both of its MPIDs).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.eui64 import Eui64
from gateway.gbcs import DeviceType
from gateway.manifest import Actor, Device, Manifest
from gateway.smki.certificate import RoleCode, SmkiCertificate

_ROLES_BY_FUEL: Mapping[str, frozenset[str]] = {"ESME": frozenset({"IS", "ES"}), "GSME": frozenset({"GS"})}


class TrustAnchorError(ValueError):
    """A meter's supplier has no usable Supplier DS certificate."""


@dataclass(frozen=True, slots=True)
class TrustAnchor:
    """The Supplier DS certificate a meter trusts, with what the meter needs from it."""

    fingerprint: str
    """Hex SHA-256 of the DER certificate: what the meter's state records."""
    eui64: Eui64
    role: int
    public_key: ec.EllipticCurvePublicKey
    actor: str | None = None
    """The manifest actor holding the matching private key, when known."""
    party: str | None = None

    @classmethod
    def from_certificate(
        cls, certificate: x509.Certificate, *, actor: str | None = None, party: str | None = None
    ) -> TrustAnchor:
        """Refuses anything but a Supplier (``02``) digital-signing certificate with an EUI-64 and a P-256 key."""
        loaded = SmkiCertificate.load(certificate)
        if loaded.role != RoleCode.SUPPLIER or loaded.eui64 is None or loaded.public_key is None:
            raise TrustAnchorError(f"not a Supplier (02) DS certificate: {loaded.describe()}")
        return cls(loaded.fingerprint, loaded.eui64, RoleCode.SUPPLIER, loaded.public_key, actor, party)

    def to_json(self) -> dict[str, object]:
        return {
            "eui64": str(self.eui64),
            "role": f"{self.role:02X}",
            "fingerprint_sha256": self.fingerprint,
            "actor": self.actor,
            "party": self.party,
        }


def anchor_actor(device_type: DeviceType, mpid: str, actors: Iterable[Actor]) -> Actor | None:
    """The actor whose DS certificate a meter of this type and MPID trusts (rule in the module docstring)."""
    holders = [actor for actor in actors if actor.digital_signing is not None and mpid in actor.mpids]
    for actor in holders:
        if actor.role in _ROLES_BY_FUEL[device_type]:
            return actor
    return holders[0] if holders else None


def load_anchor(actor: Actor) -> TrustAnchor:
    """Reads the actor's DS certificate (once per supplier user, at start-up)."""
    if actor.digital_signing is None:
        raise TrustAnchorError(f"actor {actor.name} has no digital signing key pair")
    try:
        certificate = x509.load_pem_x509_certificate(actor.digital_signing.cert.read_bytes())
    except (OSError, ValueError) as exc:
        raise TrustAnchorError(f"cannot read {actor.name}'s DS certificate: {exc}") from exc
    return TrustAnchor.from_certificate(certificate, actor=actor.name, party=actor.party)


@dataclass(frozen=True, slots=True)
class FleetAnchors:
    """The trust anchors of a whole fleet: a handful of certificates for any number of meters."""

    by_supply: Mapping[tuple[DeviceType, str], TrustAnchor]
    """(device type, supplier MPID) -> anchor."""
    by_fingerprint: Mapping[str, TrustAnchor]

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> FleetAnchors:
        """One anchor per (device type, MPID) pair that occurs; every device must have one."""
        by_supply: dict[tuple[DeviceType, str], TrustAnchor] = {}
        loaded: dict[str, TrustAnchor] = {}
        for supply in {(device.type, device.supplier_mpid) for device in manifest.devices if device.is_meter}:
            actor = anchor_actor(*supply, manifest.actors.values())
            if actor is None:
                raise TrustAnchorError(f"no supplier user with a DS key holds MPID {supply[1]} ({supply[0]})")
            if actor.name not in loaded:
                loaded[actor.name] = load_anchor(actor)
            by_supply[supply] = loaded[actor.name]
        return cls(by_supply, {anchor.fingerprint: anchor for anchor in loaded.values()})

    def for_device(self, device: Device) -> TrustAnchor:
        return self.by_supply[(device.type, device.supplier_mpid)]

    def for_supplier(self, mpid: str) -> TrustAnchor | None:
        """A device that is no meter (comms hub, PPMID, load switch, ...) trusts its premises' supplier:
        the anchor of that supplier MPID's meters (electricity first), None when it has none."""
        found = [anchor for (device_type, held), anchor in sorted(self.by_supply.items()) if held == mpid]
        return found[0] if found else None
