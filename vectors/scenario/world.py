"""The world the SoLR scenario plays in: its actors and meters, found in a world's manifest.

Nothing here depends on the world's seed beyond the manifest: actors are found
by their SPEC §3 names, meters by type, generation and supplier.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gateway.eui64 import Eui64
from gateway.manifest import Actor, Device, Manifest
from pki import IssuedCertificate

# The actors of the default world (SPEC §3) the scenario needs.
FAILED_IS = "failed_supplier_is"
FAILED_GS = "failed_supplier_gs"
SOLR_IS = "solr_is"
SRP_SC = "srp_sc"
SRP_SRO = "srp_sro"
SRP_ARO = "srp_aro"
AUTHORITY = "authority"
PMA = "pma"
DCC_OPERATOR = "dcc_operator"
ACTORS = (FAILED_IS, FAILED_GS, SOLR_IS, SRP_SC, SRP_SRO, SRP_ARO, AUTHORITY, PMA, DCC_OPERATOR)


class ScenarioUnavailable(ValueError):
    """The world lacks an actor, key or meter the scenario needs (the reason says which)."""


@dataclass(frozen=True, slots=True)
class ScenarioWorld:
    """The actors and meters the scenario uses, found in the manifest."""

    actors: Mapping[str, Actor]
    dcc: Eui64
    failed: str
    solr: str
    esme1: Device
    """A SMETS1 ESME of the failed supplier (SC switches it by CV1)."""
    gsme1: Device
    """A SMETS1 GSME of the failed supplier (its GS user's ordinary request; SC by CV1)."""
    gs_second: Device
    """Another GSME of the failed supplier: the counter is per (originator, target)."""
    esme2: Device
    """A SMETS2 ESME of the failed supplier (CV4 then CV5)."""
    gsme2: Device
    solr_device: Device
    """A meter of the SoLR's own MPIDs: never the SC role's to touch."""
    new_aro: Eui64
    """A User ID no actor or meter has, for the SRO to make an ARO of."""

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> ScenarioWorld:
        missing = [name for name in ACTORS if name not in manifest.actors]
        if missing:
            raise ScenarioUnavailable(f"the world has no actor {', '.join(missing)} (SPEC §3 default names)")
        actors = {name: manifest.actors[name] for name in ACTORS}
        for name in (FAILED_IS, FAILED_GS):
            if actors[name].digital_signing is None:
                raise ScenarioUnavailable(f"{name} has no Digital Signing key to sign Pre-Commands with")
        failed, solr = actors[FAILED_IS].party, actors[SOLR_IS].party
        failed_mpids = set(manifest.party(failed).mpids)
        solr_mpids = set(manifest.party(solr).mpids)
        own = [device for device in manifest.devices if device.supplier_mpid in failed_mpids]

        def pick(devices: Sequence[Device], what: str) -> Device:
            if not devices:
                raise ScenarioUnavailable(f"the world has no {what}")
            return devices[0]

        gsmes1 = [x for x in own if x.type == "GSME" and x.smets == 1]
        gsme1 = pick(gsmes1, "SMETS1 GSME of the failed supplier")
        # Prefer a second SMETS1 GSME (CV1 -> I99); a SMETS2 one serves too (CV4 -> I0 consumes the counter alike).
        seconds = [x for x in own if x.type == "GSME" and x.device_id != gsme1.device_id]
        gs_second = pick(sorted(seconds, key=lambda x: x.smets), "second GSME of the failed supplier")
        taken = {a.user_id for a in manifest.actors.values()} | {x.device_id for x in manifest.devices}
        sro = actors[SRP_SRO].user_id
        new_aro = next(Eui64(sro.value + step) for step in range(0x100, 0x10000) if Eui64(sro.value + step) not in taken)
        return cls(
            actors=actors,
            dcc=manifest.gateway.dsp_user_id,
            failed=failed,
            solr=solr,
            esme1=pick([x for x in own if x.type == "ESME" and x.smets == 1], "SMETS1 ESME of the failed supplier"),
            gsme1=gsme1,
            gs_second=gs_second,
            esme2=pick([x for x in own if x.type == "ESME" and x.smets == 2], "SMETS2 ESME of the failed supplier"),
            gsme2=pick([x for x in own if x.type == "GSME" and x.smets == 2], "SMETS2 GSME of the failed supplier"),
            solr_device=pick(
                sorted((x for x in manifest.devices if x.supplier_mpid in solr_mpids), key=lambda x: x.smets),
                "meter of the SoLR",
            ),
            new_aro=new_aro,
        )

    def user(self, actor: str) -> Eui64:
        return self.actors[actor].user_id


def xml_sign_key(actor: Actor) -> IssuedCertificate:
    """The actor's xmlSign (87) key and certificate, as the world wrote them."""
    return IssuedCertificate.load(actor.xml_sign.cert, actor.xml_sign.key)


def ds_key(actor: Actor) -> IssuedCertificate:
    """The actor's Digital Signing key (it signs GBCS Pre-Commands)."""
    if actor.digital_signing is None:
        raise ScenarioUnavailable(f"{actor.name} has no Digital Signing key")
    return IssuedCertificate.load(actor.digital_signing.cert, actor.digital_signing.key)


