"""``dcc-gateway init``: writes a complete, deterministic simulated world (SPEC §2, §3).

Layout of a world directory::

    gateway.toml                         configuration (gateway.config)
    manifest.json                        who is who (gateway.manifest)
    pki/root-ca.pem                      CN=DG Root (self-signed)
    pki/org-ca.pem, org-ca.key.pem       OU=07, CN=DG: issues every certificate, signs CRLs
    pki/org-ca.crl.pem                   the organisation CA's CRL (initially empty)
    pki/gateway/dsp-xml-sign.pem, .key.pem   the gateway's 89 certificate (signs responses)
    pki/actors/<name>/xml-sign.pem, .key.pem every actor's 87 certificate (signs requests, directives)
    pki/actors/<name>/ds.pem, ds.key.pem     suppliers only: 02 Supplier DS key (pre-commands)

Everything is a pure function of the seed (and the device count): keys, serials
and signatures are derived (see :mod:`pki`), certificate validity is fixed
(2024-01-01 to 2124-01-01), and devices come from SHA-256 of the seed and their
index, not from :mod:`random`, whose non-``random()`` methods may change
between Python versions. Devices are streamed to ``manifest.json`` one per
line, so a million of them take about 20 s and little memory (``init_world``
then reads them back; ``write_world`` does not).

Conventions: user ids are ``90-B3-D5-1F-30-1x-00-0y`` (clear of the DCC Boxed
ZAZ1 ids); device ids ``00-DB-12-D0-<index+1 as 4 bytes>``; a user's
``response_url`` is ``http://127.0.0.1:8089/receive/<actor name>`` (one local
receiver for all simulated users; the gateway retries until something listens),
and ``null`` for actors that are not DUIS users.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import operator
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from cryptography.hazmat.primitives import serialization

import gateway
from gateway.config import CONFIG_FILE_NAME, write_default_config
from gateway.eui64 import Eui64
from gateway.manifest import MANIFEST_FILE_NAME, Device, DeviceType, Manifest, PaymentMode, load_manifest
from pki import IssuedCertificate, RemotePartyRole, TestSmkiCa

CA_NAME = "DG"
CERT_NOT_BEFORE = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
CERT_NOT_AFTER = dt.datetime(2124, 1, 1, tzinfo=dt.timezone.utc)
GATEWAY_URL = "http://127.0.0.1:8079"
DSP_USER_ID = Eui64.parse("90-B3-D5-1F-30-00-00-02")
RECEIVER_URL = "http://127.0.0.1:8089/receive/{name}"
DEVICE_ID_BASE = 0x00DB12D000000000
DEFAULT_SEED = "dcc-gateway"
DEFAULT_DEVICES = 20
MAX_DEVICES = 1_000_000_000
"""Keeps device ids (4-byte index), MPANs (10-digit body) and MPRNs (10 digits) unique."""
# Default SQLite files of a previous world: its state would contradict the new world.
_PREVIOUS_STORE_FILES = ("store.db", "store.db-wal", "store.db-shm")


class WorldError(ValueError):
    """The world cannot be written as asked."""


class WorldExistsError(WorldError, FileExistsError):
    """The target directory is not empty and ``force`` was not given."""


@dataclass(frozen=True, slots=True)
class PartySpec:
    name: str
    kind: str
    mpids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ActorSpec:
    name: str
    kind: str
    party: str
    role: str | None
    user_id: Eui64
    digital_signing: bool = False
    agent_for: str | None = None
    office: str | None = None
    roles: tuple[str, ...] = ()
    """Every role when the User ID holds more than one (a DCC Boxed world), ``role`` first."""

    @property
    def is_user(self) -> bool:
        """A DUIS user (has a role), hence a response URL."""
        return self.role is not None


FAILED = PartySpec("failed-supplier", "supplier", ("FAIL", "FALG"))
SOLR = PartySpec("solr-supplier", "solr", ("SOLR", "SOLG"))
PARTIES: tuple[PartySpec, ...] = (
    FAILED,
    SOLR,
    PartySpec("srp", "srp", ()),
    PartySpec("network-operator", "network", ("NETW",)),
    PartySpec("other-user", "other", ()),
    PartySpec("authority", "authority", ()),
    PartySpec("pma", "pma", ()),
    PartySpec("dcc", "dcc", ()),
)
"""Supplier MPIDs: electricity first, gas second."""


ACTORS: tuple[ActorSpec, ...] = (
    ActorSpec(
        "failed_supplier_is",
        "supplier",
        FAILED.name,
        "IS",
        Eui64.parse("90-B3-D5-1F-30-11-00-01"),
        digital_signing=True,
    ),
    ActorSpec(
        "failed_supplier_gs",
        "supplier",
        FAILED.name,
        "GS",
        Eui64.parse("90-B3-D5-1F-30-11-00-02"),
        digital_signing=True,
    ),
    ActorSpec("solr_is", "solr", SOLR.name, "IS", Eui64.parse("90-B3-D5-1F-30-12-00-01"), digital_signing=True),
    ActorSpec("srp_sc", "srp", "srp", "SC", Eui64.parse("90-B3-D5-1F-30-13-00-01"), agent_for=FAILED.name),
    ActorSpec("srp_sro", "officer", "srp", None, Eui64.parse("90-B3-D5-1F-30-13-00-02"), office="SRO"),
    ActorSpec("srp_aro", "officer", "srp", None, Eui64.parse("90-B3-D5-1F-30-13-00-03"), office="ARO"),
    ActorSpec("network_ed", "network", "network-operator", "ED", Eui64.parse("90-B3-D5-1F-30-14-00-01")),
    ActorSpec("other_ou", "other", "other-user", "OU", Eui64.parse("90-B3-D5-1F-30-15-00-01")),
    ActorSpec("authority", "authority", "authority", None, Eui64.parse("90-B3-D5-1F-30-16-00-01")),
    ActorSpec("pma", "pma", "pma", None, Eui64.parse("90-B3-D5-1F-30-17-00-01")),
    ActorSpec("dcc_operator", "dcc", "dcc", None, Eui64.parse("90-B3-D5-1F-30-18-00-01")),
)


# --- where things go -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorldLayout:
    """Paths inside a world directory (relative forms go into the manifest)."""

    root: Path

    def path(self, relative: str) -> Path:
        return self.root / relative

    root_ca = "pki/root-ca.pem"
    org_ca = "pki/org-ca.pem"
    org_ca_key = "pki/org-ca.key.pem"
    crl = "pki/org-ca.crl.pem"
    response_cert = "pki/gateway/dsp-xml-sign.pem"
    response_key = "pki/gateway/dsp-xml-sign.key.pem"

    @staticmethod
    def actor_file(actor: str, stem: str, key: bool) -> str:
        return f"pki/actors/{actor}/{stem}{'.key' if key else ''}.pem"


# --- shared third-party data -----------------------------------------------------------


RTDS_FOLDER = "rtds-4.5.0"
"""The GBCS vectors the simulated devices answer from, under ``shared/gbcs``."""


def default_shared_dir() -> Path:
    """``$DCC_SHARED_DIR``, else the ``shared`` folder beside the project root."""
    override = os.environ.get("DCC_SHARED_DIR")
    return Path(override) if override else Path(gateway.__file__).resolve().parents[2] / "shared"


def _existing(path: Path) -> str:
    """The absolute path when the file exists, else ``""`` (gateway.toml's "not configured")."""
    return str(path.resolve()) if path.is_file() else ""


def _config_overrides(shared: Path) -> dict[str, dict[str, object]]:
    return {
        "policy": {"eligibility_matrix": _existing(shared / "duis" / "srv-eligibility-matrix.json")},
        "schema": {"duis_xsd": _existing(shared / "duis" / "xsd" / "DUIS-Schema-V5.4.xsd")},
        "simulation": {"gbcs_vectors": _existing_folder(shared / "gbcs" / RTDS_FOLDER)},
    }


def _existing_folder(path: Path) -> str:
    """The absolute path when the folder exists, else ``""``."""
    return str(path.resolve()) if path.is_dir() else ""


# --- the directory ---------------------------------------------------------------------


def prepare_directory(directory: Path, force: bool) -> None:
    """Creates ``directory``; refuses a non-empty one unless ``force``.

    ``force`` removes only what a world consists of (``pki/``, the manifest, the
    config, the default SQLite store) and leaves any other file alone.
    """
    if directory.exists() and not directory.is_dir():
        raise WorldError(f"{directory} exists and is not a directory")
    if directory.exists() and any(directory.iterdir()):
        if not force:
            raise WorldExistsError(f"{directory} is not empty (use --force to replace the world in it)")
        _remove_previous_world(directory)
    directory.mkdir(parents=True, exist_ok=True)


def _remove_previous_world(directory: Path) -> None:
    if (directory / "pki").is_dir():
        shutil.rmtree(directory / "pki")
    for name in (MANIFEST_FILE_NAME, CONFIG_FILE_NAME, *_PREVIOUS_STORE_FILES):
        (directory / name).unlink(missing_ok=True)


# --- PKI -------------------------------------------------------------------------------


def _write_pair(layout: WorldLayout, issued: IssuedCertificate, cert: str, key: str) -> dict[str, str]:
    cert_path, key_path = layout.path(cert), layout.path(key)
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    issued.write_pem(cert_path, key_path)
    return {"cert": cert, "key": key}


def _write_authorities(layout: WorldLayout, ca: TestSmkiCa) -> None:
    (layout.root / "pki").mkdir(exist_ok=True)
    ca.root.write_cert_pem(layout.path(layout.root_ca))
    ca.org.write_pem(layout.path(layout.org_ca), layout.path(layout.org_ca_key))
    crl = ca.crl([], this_update=CERT_NOT_BEFORE, next_update=CERT_NOT_AFTER)
    layout.path(layout.crl).write_bytes(crl.public_bytes(serialization.Encoding.PEM))


def issue_actor_keys(layout: WorldLayout, ca: TestSmkiCa, actor: ActorSpec) -> dict[str, object]:
    """The actor's ``xml_sign`` and ``digital_signing`` manifest entries, writing their PEMs."""
    xml_sign = ca.issue(f"actor/{actor.name}/xml-sign", eui64=actor.user_id, role=RemotePartyRole.XML_SIGN)
    entries: dict[str, object] = {
        "xml_sign": _write_pair(
            layout,
            xml_sign,
            layout.actor_file(actor.name, "xml-sign", key=False),
            layout.actor_file(actor.name, "xml-sign", key=True),
        ),
        "digital_signing": None,
    }
    if actor.digital_signing:
        ds = ca.issue(
            f"actor/{actor.name}/ds", eui64=actor.user_id, role=RemotePartyRole.SUPPLIER, common_name=actor.party
        )
        entries["digital_signing"] = _write_pair(
            layout, ds, layout.actor_file(actor.name, "ds", key=False), layout.actor_file(actor.name, "ds", key=True)
        )
        # The supplier's prepayment key-agreement key: UTRNs are MACed under it and the meter's KA key (SR 2.2).
        prepayment = ca.issue(
            f"actor/{actor.name}/prepayment-ka",
            eui64=actor.user_id,
            role=RemotePartyRole.SUPPLIER,
            key_usage="keyAgreement",
            common_name=actor.party,
        )
        entries["prepayment_key_agreement"] = _write_pair(
            layout,
            prepayment,
            layout.actor_file(actor.name, "prepayment-ka", key=False),
            layout.actor_file(actor.name, "prepayment-ka", key=True),
        )
    return entries


def _write_gateway_keys(layout: WorldLayout, ca: TestSmkiCa) -> dict[str, object]:
    issued = ca.issue("gateway/dsp-xml-sign", eui64=DSP_USER_ID, role=RemotePartyRole.DSP_XML_SIGN)
    pair = _write_pair(layout, issued, layout.response_cert, layout.response_key)
    return {
        "url": GATEWAY_URL,
        "dsp_user_id": str(DSP_USER_ID),
        "response_cert": pair["cert"],
        "response_key": pair["key"],
    }


# --- actors and parties ----------------------------------------------------------------


def actor_entry(
    actor: ActorSpec, keys: Mapping[str, object], parties: tuple[PartySpec, ...] = PARTIES
) -> dict[str, object]:
    """The actor's manifest entry; ``keys`` are its ``xml_sign`` and ``digital_signing`` entries."""
    entry: dict[str, object] = {
        "kind": actor.kind,
        "party": actor.party,
        "user_id": str(actor.user_id),
        "role": actor.role,
        "mpids": list(next(party.mpids for party in parties if party.name == actor.party)),
        **keys,
        "response_url": RECEIVER_URL.format(name=actor.name) if actor.is_user else None,
    }
    if len(actor.roles) > 1:
        entry["roles"] = list(actor.roles)
    if actor.agent_for is not None:
        entry["agent_for"] = actor.agent_for
    if actor.office is not None:
        entry["office"] = actor.office
    return entry


def _parties_entry(parties: tuple[PartySpec, ...]) -> dict[str, object]:
    return {party.name: {"kind": party.kind, "mpids": list(party.mpids)} for party in parties}


# --- devices ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _DevicePlan:
    party: PartySpec
    type: DeviceType
    smets: int
    payment_mode: PaymentMode
    low_credit: bool


_FIXED_PLANS: tuple[_DevicePlan, ...] = (
    # The failed supplier's prepayment meters in all four type/generation combinations
    # come first, so even a small world holds the SoLR scenario's interesting cases.
    _DevicePlan(FAILED, "ESME", 2, "Prepayment", low_credit=True),
    _DevicePlan(FAILED, "GSME", 2, "Prepayment", low_credit=False),
    _DevicePlan(FAILED, "ESME", 1, "Prepayment", low_credit=False),
    _DevicePlan(FAILED, "GSME", 1, "Prepayment", low_credit=True),
    _DevicePlan(SOLR, "ESME", 2, "Credit", low_credit=False),
    _DevicePlan(SOLR, "GSME", 2, "Prepayment", low_credit=False),
    _DevicePlan(FAILED, "ESME", 2, "Credit", low_credit=False),
    _DevicePlan(SOLR, "ESME", 1, "Credit", low_credit=False),
)

_MPAN_WEIGHTS = (3, 5, 7, 13, 17, 19, 23, 29, 31, 37, 41, 43)  # the primes from 3, skipping 11


def mpan_check_digit(first_twelve: str) -> int:
    """The MPAN core check digit (MRA algorithm: prime weights, mod 11, mod 10)."""
    if len(first_twelve) != len(_MPAN_WEIGHTS) or not first_twelve.isdigit():
        raise ValueError(f"an MPAN check digit needs 12 digits, not {first_twelve!r}")
    total: int = sum(map(operator.mul, map(int, first_twelve), _MPAN_WEIGHTS))
    return total % 11 % 10


def _mpan(index: int, distributor: int) -> str:
    body = f"{distributor:02d}{index + 1:010d}"
    return body + str(mpan_check_digit(body))


def _mprn(index: int) -> str:
    """A 10-digit MPRN, unique per index (no MPRN check digit is modelled)."""
    return f"{7_000_000_000 + index + 1:010d}"


def _device_digest(seed: str, index: int) -> bytes:
    return hashlib.sha256(f"{seed}/device/{index}".encode()).digest()


def _random_plan(digest: bytes) -> _DevicePlan:
    """Roughly: half each supplier, 60% ESME, 70% SMETS2; the failed supplier mostly prepayment."""
    party = FAILED if digest[0] < 128 else SOLR
    prepayment_share = 179 if party is FAILED else 64
    return _DevicePlan(
        party=party,
        type="ESME" if digest[1] < 153 else "GSME",
        smets=1 if digest[2] < 77 else 2,
        payment_mode="Prepayment" if digest[3] < prepayment_share else "Credit",
        low_credit=digest[4] < 64,
    )


def _credit_pence(plan: _DevicePlan, digest: bytes) -> int:
    """A few hundred to a few thousand pence; "low" prepayment meters are under £1.50."""
    spread = int.from_bytes(digest[5:7], "big")
    if plan.payment_mode == "Prepayment" and plan.low_credit:
        return spread % 150
    return 300 + spread % 4700


def make_device(seed: str, index: int, mpids: Mapping[str, tuple[str, ...]] | None = None) -> Device:
    """Device ``index`` of the world made from ``seed`` (random access: no state between devices).

    ``mpids``: party name -> (electricity, gas) MPIDs, for a world whose suppliers
    hold other MPIDs than the default world's (a DCC Boxed world's failed supplier).
    """
    digest = _device_digest(seed, index)
    plan = _FIXED_PLANS[index] if index < len(_FIXED_PLANS) else _random_plan(digest)
    electricity_mpid, gas_mpid = (mpids or {}).get(plan.party.name, plan.party.mpids)
    is_esme = plan.type == "ESME"
    return Device(
        device_id=Eui64(DEVICE_ID_BASE + index + 1),
        type=plan.type,
        smets=plan.smets,
        mpxn=_mpan(index, 10 + digest[7] % 14) if is_esme else _mprn(index),
        supplier_mpid=electricity_mpid if is_esme else gas_mpid,
        payment_mode=plan.payment_mode,
        credit_pence=_credit_pence(plan, digest),
    )


def generate_devices(seed: str, count: int, mpids: Mapping[str, tuple[str, ...]] | None = None) -> Iterator[Device]:
    """The world's fleet, one device at a time (``mpids`` as for :func:`make_device`)."""
    return (make_device(seed, index, mpids) for index in range(count))


# --- manifest --------------------------------------------------------------------------


def write_manifest(path: Path, head: Mapping[str, object], devices: Iterable[Device]) -> None:
    """Writes ``head`` with ``devices`` appended as the last key, one device per line.

    Streaming keeps memory flat for large fleets; the output is ordinary JSON.
    """
    text = json.dumps(head, indent=2)
    with path.open("w", encoding="utf-8", buffering=1 << 20) as handle:
        handle.write(text[: -len("\n}")])
        handle.write(',\n  "devices": [')
        _write_devices(handle, devices)
        handle.write("\n  ]\n}\n")


def _write_devices(handle: IO[str], devices: Iterable[Device]) -> None:
    encode = json.JSONEncoder().encode  # one encoder for the whole fleet: json.dumps re-checks its options per call
    separator = "\n    "
    for device in devices:
        handle.write(separator)
        handle.write(encode(device.to_json()))
        separator = ",\n    "


def manifest_head(
    seed: str,
    gateway_entry: Mapping[str, object],
    actors: Mapping[str, object],
    parties: tuple[PartySpec, ...] = PARTIES,
) -> dict[str, object]:
    return {
        "gateway": gateway_entry,
        "smki": {
            "root_ca": WorldLayout.root_ca,
            "org_ca": WorldLayout.org_ca,
            "crl": WorldLayout.crl,
            "org_ca_key": WorldLayout.org_ca_key,
        },
        "seed": seed,
        "parties": _parties_entry(parties),
        "actors": actors,
    }


# --- entry points ----------------------------------------------------------------------


def write_world(
    directory: Path,
    *,
    devices: int = DEFAULT_DEVICES,
    seed: str = DEFAULT_SEED,
    force: bool = False,
    shared_dir: Path | None = None,
) -> Path:
    """Writes the world into ``directory`` and returns the manifest's path (no re-reading)."""
    check_device_count(devices)
    directory = Path(directory)
    prepare_directory(directory, force)
    layout = WorldLayout(directory)
    ca = write_test_authorities(layout, seed)
    gateway_entry = _write_gateway_keys(layout, ca)
    actors = {actor.name: actor_entry(actor, issue_actor_keys(layout, ca, actor)) for actor in ACTORS}
    manifest = directory / MANIFEST_FILE_NAME
    write_manifest(manifest, manifest_head(seed, gateway_entry, actors), generate_devices(seed, devices))
    write_config(directory, shared_dir)
    return manifest


def check_device_count(devices: int) -> None:
    if not 0 <= devices <= MAX_DEVICES:
        raise WorldError(f"the number of devices must be between 0 and {MAX_DEVICES}, not {devices}")


def write_test_authorities(layout: WorldLayout, seed: str) -> TestSmkiCa:
    """The project's test SMKI PKI for ``seed``: root and organisation CA, and the CA's (empty) CRL."""
    ca = TestSmkiCa.create(seed.encode("utf-8"), not_before=CERT_NOT_BEFORE, not_after=CERT_NOT_AFTER, name=CA_NAME)
    _write_authorities(layout, ca)
    return ca


def write_config(directory: Path, shared_dir: Path | None) -> None:
    """``gateway.toml``, pointing at the real eligibility matrix and DUIS XSD where ``shared_dir`` has them."""
    shared = shared_dir if shared_dir is not None else default_shared_dir()
    write_default_config(directory / CONFIG_FILE_NAME, **_config_overrides(shared))


def init_world(
    directory: Path,
    *,
    devices: int = DEFAULT_DEVICES,
    seed: str = DEFAULT_SEED,
    force: bool = False,
    shared_dir: Path | None = None,
) -> Manifest:
    """Creates a complete simulated world in ``directory`` (SPEC §2 ``init``) and loads its manifest.

    Refuses a non-empty directory unless ``force``. ``shared_dir`` (default
    :func:`default_shared_dir`) is where the real eligibility matrix and DUIS XSD
    are looked for; ``gateway.toml`` points at them when they exist.
    """
    return load_manifest(write_world(directory, devices=devices, seed=seed, force=force, shared_dir=shared_dir))
