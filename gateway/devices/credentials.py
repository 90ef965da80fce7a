"""A meter's keys beyond its trust anchor: its own key-agreement and signing keys, its supplier's prepayment key.

* The meter's **key-agreement** (KA) key: with its supplier's prepayment KA key it
  authenticates UTRNs (SR 2.2, :mod:`gateway.devices.utrn`).
* The meter's **digital-signing** (DS) key: it signs the answers to critical
  commands (SR 2.5), as a GBCS device does.
* Its supplier's **prepayment KA certificate**, placed on the meter at install like
  the DS trust anchor (:mod:`gateway.devices.anchors`): the supplier user holding
  the meter's MPID for its fuel. A top-up vended by anyone else fails the MAC.

Meter keys are derived from the world's seed and the device ID (the test PKI's
derivation, :func:`pki.keys.derive_private_key`): a million meters cost no key
storage, and anyone holding the world directory can compute them, which is what a
test world is for and why nothing here may protect anything real. The public halves
are shown by ``GET /sim/devices/{id}`` so that a harness can vend UTRNs itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.devices.anchors import anchor_actor
from gateway.devices.utrn import ValueClass, originator_counter, vend_utrn
from gateway.eui64 import Eui64
from gateway.manifest import Device, Manifest
from pki.keys import derive_private_key

_PURPOSES = ("ka", "ds")


class CredentialsError(ValueError):
    """The meter lacks a key it needs; the reason names which."""


@dataclass(frozen=True, slots=True)
class SupplierPrepaymentKey:
    """The prepayment KA certificate a meter holds: whose it is and its public key."""

    eui64: Eui64
    public_key: ec.EllipticCurvePublicKey
    actor: str


def meter_private_key(seed: str, device_id: Eui64, purpose: str) -> ec.EllipticCurvePrivateKey:
    """The meter's ``ka`` or ``ds`` key in the world of ``seed`` (the same every run)."""
    if purpose not in _PURPOSES:
        raise ValueError(f"a meter has a ka and a ds key, not {purpose!r}")
    return derive_private_key(f"simulated-meter:{seed}".encode(), f"{device_id}/{purpose}")


def public_key_hex(key: ec.EllipticCurvePrivateKey) -> str:
    """The uncompressed X9.62 point, hex: what a harness loads with ``EllipticCurvePublicKey.from_encoded_point``."""
    return key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint).hex()


@dataclass
class MeterCredentials:
    """Every meter's keys in one world; the supplier certificates are read once each, when first needed."""

    manifest: Manifest
    _suppliers: dict[str, SupplierPrepaymentKey] = field(default_factory=dict)

    def key(self, device_id: Eui64, purpose: str) -> ec.EllipticCurvePrivateKey:
        if self.manifest.seed is None:
            raise CredentialsError("the manifest has no seed, so its meters have no keys of their own")
        return meter_private_key(self.manifest.seed, device_id, purpose)

    def supplier_prepayment_key(self, device: Device) -> SupplierPrepaymentKey:
        """The prepayment KA certificate installed on the meter; CredentialsError if its supplier has none."""
        actor = anchor_actor(device.type, device.supplier_mpid, self.manifest.actors.values())
        if actor is None or actor.prepayment_key_agreement is None:
            raise CredentialsError(f"no supplier prepayment key-agreement certificate is installed on {device.device_id}")
        known = self._suppliers.get(actor.name)
        if known is None:
            try:
                certificate = x509.load_pem_x509_certificate(actor.prepayment_key_agreement.cert.read_bytes())
            except (OSError, ValueError) as exc:
                raise CredentialsError(f"cannot read {actor.name}'s prepayment key-agreement certificate: {exc}") from exc
            public_key = certificate.public_key()
            if not isinstance(public_key, ec.EllipticCurvePublicKey):
                raise CredentialsError(f"{actor.name}'s prepayment key-agreement certificate has no EC key")
            known = SupplierPrepaymentKey(actor.user_id, public_key, actor.name)
            self._suppliers[actor.name] = known
        return known


@dataclass(frozen=True)
class MeterKeys:
    """One meter's keys, as its behaviours ask for them (each derived or read only when asked)."""

    credentials: MeterCredentials
    device: Device

    def key_agreement(self) -> ec.EllipticCurvePrivateKey:
        return self.credentials.key(self.device.device_id, "ka")

    def signing(self) -> ec.EllipticCurvePrivateKey:
        return self.credentials.key(self.device.device_id, "ds")

    def supplier_prepayment(self) -> SupplierPrepaymentKey:
        return self.credentials.supplier_prepayment_key(self.device)


def vend_for_meter(
    manifest: Manifest, actor_name: str, device_id: str, value: int, value_class: ValueClass, utrn_counter: int
) -> tuple[str, int]:
    """What a supplier's vending system does (``dcc-gateway utrn``): a UTRN for the meter, vended with
    ``actor_name``'s prepayment key, and the RequestID counter of the SR 2.2 that carries it."""
    actor = manifest.actor(actor_name)
    if actor.prepayment_key_agreement is None:
        raise CredentialsError(f"{actor_name} has no prepayment key-agreement key (only suppliers have one)")
    device = manifest.device(device_id)
    if not device.is_meter:
        raise CredentialsError(f"{device.device_id} is a {device.type}, not a meter")
    key = serialization.load_pem_private_key(actor.prepayment_key_agreement.key.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CredentialsError(f"{actor_name}'s prepayment key is not an EC key")
    meter = MeterCredentials(manifest).key(device.device_id, "ka").public_key()
    utrn = vend_utrn(
        supplier_prepayment_key=key, meter_key_agreement=meter, originator=actor.user_id, target=device.device_id,
        utrn_counter=utrn_counter, value=value, value_class=value_class,
    )  # fmt: skip
    return utrn, originator_counter(utrn_counter)
