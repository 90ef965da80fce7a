"""``dcc-gateway init DIR --boxed KEYSTORE``: the simulated world in DCC Boxed's identities.

A harness written for DCC Boxed signs its requests with the ZAZ1 test keys, addresses
DCC Boxed's devices and checks every answer against DCC Boxed's DSP certificate. This
world gives it all three, from the DCC Boxed ``keystore.json`` the user points at (read
in place: nothing of it ships with the project; its certificates and the keys the world
uses are written into the world directory, like the test PKI's):

* users: every keystore EUI-64 holding an xmlSign (``87``) certificate and key, with the
  DUIS roles its other certificates give (``02`` supplier: ``IS`` and ``GS``; ``03``
  network operator: ``ED`` and ``GT``; ``7F`` other user: ``OU``). The Boxed supplier
  ``90-B3-D5-1F-30-01-00-00`` is the failing supplier (party ``failed-supplier``);
* the trust anchor of the Boxed supplier's meters: its Supplier (``02``) digital-signing
  certificate, the one DCC Boxed's own tools use (named ``Z1-…``, not ``Z1b-…``);
* the DCC's response key: the DSP's dSPXmlSign (``89``) key of ``90-B3-D5-1F-30-00-00-02``,
  so that DCC Boxed's signing tool validates every answer;
* devices: every device the real DUIS templates address (:data:`BOXED_DEVICES`), registered
  to the Boxed supplier, SMETS2; then the default world's mixed fleet with the Boxed supplier
  in place of the generated failed supplier;
* the SoLR actors DCC Boxed lacks (SoLR, SRP with its SC user and officers, Authority, PMA,
  DCC operator) from the project's test PKI, as in the default world.

Every readable certificate of the keystore goes into the world's SMKI repository beside the
test PKI's. Several organisation CAs then issue certificates: the test PKI's (``OU=07, CN=DG``,
whose certificate is in the repository, so its certificates must chain to it) and DCC Boxed's
(``CN=Z1, OU=07``, and ``CN=OB, OU=07`` for the other user's ``7F`` pair), whose CA
certificates DCC Boxed does not publish, so theirs are trusted as imported: the SPEC §4 rule
"chained to the organisation CA when that CA is in the repository", applied per issuer.

Certificates that have expired are reported (:attr:`BoxedReport.expired`) and recorded in
``manifest.json`` under ``boxed``; the gateway refuses them as signers like any expired
certificate. The meters' trust anchor may be one of them: a GBCS device does not check
certificate validity periods, so the meters keep trusting it, as DCC Boxed's do.

Bad input raises :class:`KeystoreError` before anything is written.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.eui64 import Eui64
from gateway.manifest import MANIFEST_FILE_NAME, Device, DeviceType, Manifest, PaymentMode, load_manifest
from gateway.smki.certificate import KeyUsage, RoleCode, SmkiCertificate
from gateway.world import (
    ACTORS,
    DEFAULT_DEVICES,
    DEFAULT_SEED,
    DSP_USER_ID,
    FAILED,
    GATEWAY_URL,
    PARTIES,
    ActorSpec,
    PartySpec,
    WorldLayout,
    actor_entry,
    check_device_count,
    generate_devices,
    issue_actor_keys,
    manifest_head,
    prepare_directory,
    write_config,
    write_manifest,
    write_test_authorities,
)

BOXED_SUPPLIER = Eui64.parse("90-B3-D5-1F-30-01-00-00")
BOXED_DSP = DSP_USER_ID
"""90-B3-D5-1F-30-00-00-02: DCC Boxed's DSP User ID (the default world uses it too)."""

SUPPLIER_MPIDS = ("BOXE", "BOXG")
"""The Boxed supplier's MPIDs (electricity, gas); DCC Boxed names none in DUIS, so these are ours."""
NETWORK_MPIDS = ("BOXD", "BOXT")
"""The Boxed network operator's MPIDs (electricity distributor, gas transporter)."""

_USAGES = ("digitalSignature", "keyAgreement")
_MAX_KEYSTORE_BYTES = 4 << 20
_ZAZ1_DIR = "pki/zaz1"


class KeystoreError(ValueError):
    """KEYSTORE is not a DCC Boxed keystore, or lacks something a boxed world needs (init exits 2)."""


# --- DCC Boxed's devices -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BoxedDevice:
    """A device of DCC Boxed that the real DUIS templates address, with what its type rests on."""

    device_id: Eui64
    type: DeviceType
    evidence: str
    """Which templates address it and why that gives its type."""
    mpxn: str | None = None
    payment_mode: PaymentMode | None = None
    credit_pence: int | None = None


def _boxed(suffix: str, device_type: DeviceType, evidence: str, **meter: object) -> BoxedDevice:
    return BoxedDevice(Eui64.parse(f"00-DB-12-34-56-78-90-{suffix}"), device_type, evidence, **meter)  # type: ignore[arg-type]


BOXED_DEVICES: tuple[BoxedDevice, ...] = (
    _boxed("A0", "ESME", "the ECS (electricity meter) use cases; 8.6 Service Opt In names it an ESME with MPAN 1312345678111",
           mpxn="1312345678111", payment_mode="Prepayment", credit_pence=1200),
    _boxed("A1", "GSME", "the GCS (gas meter) use cases; 6.20.1 sets its MPRN 1234567890",
           mpxn="1234567890", payment_mode="Prepayment", credit_pence=650),
    _boxed("A2", "CHF", "the CCS (comms hub) and DBCH (dual-band comms hub) use cases, 8.14 hub status updates"),
    _boxed("A3", "GPF", "GCS reads 'RELIABLE_GPF' and CS02b handovers: the gas proxy of A1"),
    _boxed("A4", "PPMID", "CS03A2 / CS03C non-critical joins of a non-meter device, 11.2 read by the DSP"),
    _boxed("A5", "HCALCS", "CS03A2 critical join of a non-meter device: the HAN-connected load switch"),
    _boxed("A6", "ESME", "ECS46d (electricity meter) future-dated APC output schedule and its 8F66 alert",
           mpxn="1312345678444", payment_mode="Credit", credit_pence=2500),
)
"""A6's MPAN is ours (no template names one); A0's and A1's come from the templates."""

_GAS_DEVICES = frozenset({"GSME", "GPF"})


def boxed_fleet(mixed: Iterable[Device]) -> Iterator[Device]:
    """The Boxed devices (supplier and network operator MPIDs of their fuel), then ``mixed``."""
    for boxed in BOXED_DEVICES:
        gas = boxed.type in _GAS_DEVICES
        yield Device(
            device_id=boxed.device_id,
            type=boxed.type,
            smets=2,
            mpxn=boxed.mpxn,
            supplier_mpid=SUPPLIER_MPIDS[1] if gas else SUPPLIER_MPIDS[0],
            payment_mode=boxed.payment_mode,
            credit_pence=boxed.credit_pence,
            network_mpid=NETWORK_MPIDS[1] if gas else NETWORK_MPIDS[0],
        )
    yield from mixed


# --- the keystore --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeystoreEntry:
    """One certificate (and perhaps private key) of a DCC Boxed keystore."""

    eui64: Eui64
    usage: str
    name: str
    keystore_role: int
    """The ``role`` the keystore gives (decimal); the certificate's own OU decides."""
    certificate_pem: bytes
    private_key_pem: bytes | None
    certificate: SmkiCertificate | None
    """None when the certificate cannot be read (then ``problem`` says why)."""
    problem: str | None = None

    @property
    def role(self) -> int | None:
        return self.certificate.role if self.certificate is not None else None

    def describe(self) -> str:
        role = f"{self.role:02X}" if self.role is not None else "?"
        return f"{self.name} ({role}, {self.eui64})"

    def signing_key(self) -> ec.EllipticCurvePrivateKey | None:
        """The private key if it is a P-256 key matching the certificate; else None."""
        if self.private_key_pem is None or self.certificate is None or self.certificate.public_key is None:
            return None
        try:
            key = serialization.load_pem_private_key(self.private_key_pem, password=None)
        except (ValueError, TypeError):
            return None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
            return None
        if key.public_key().public_numbers() != self.certificate.public_key.public_numbers():
            return None
        return key


@dataclass(frozen=True)
class Keystore:
    path: Path
    sha256: str
    entries: tuple[KeystoreEntry, ...]


def read_keystore(path: Path) -> Keystore:
    """Reads ``{eui: {usage: {serial: {certificate, privateKey, name, role}}}}`` strictly.

    The shape must be exactly that (else KeystoreError naming where it is not); a
    certificate that cannot be read is kept with its reason (the ZAZ1 keystore holds
    two that modern parsers refuse) and never used.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeystoreError(f"cannot read the keystore {path}: {exc.strerror or exc}") from exc
    if len(data) > _MAX_KEYSTORE_BYTES:
        raise KeystoreError(f"{path} is not a DCC Boxed keystore: {len(data)} bytes is far more than one holds")
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise KeystoreError(f"{path} is not a DCC Boxed keystore: not JSON ({exc})") from exc
    entries = list(_keystore_entries(raw, path))
    if not entries:
        raise KeystoreError(f"{path} is not a DCC Boxed keystore: it holds no certificates")
    return Keystore(path.resolve(), hashlib.sha256(data).hexdigest(), tuple(entries))


def _not_a_keystore(path: Path, where: str, what: str) -> KeystoreError:
    return KeystoreError(f"{path} is not a DCC Boxed keystore: {where} must be {what}")


def _keystore_entries(raw: object, path: Path) -> Iterator[KeystoreEntry]:
    if not isinstance(raw, dict):
        raise _not_a_keystore(path, "the top level", "an object of EUI-64s")
    for eui_text, usages in raw.items():
        try:
            eui64 = Eui64.parse_compact(eui_text)
        except ValueError:
            raise _not_a_keystore(path, f"key {eui_text!r}", "an EUI-64 as 16 hex digits") from None
        if not isinstance(usages, dict):
            raise _not_a_keystore(path, eui_text, "an object of key usages")
        for usage, serials in usages.items():
            if usage not in _USAGES or not isinstance(serials, dict):
                raise _not_a_keystore(
                    path, f"{eui_text}.{usage}", f"one of {', '.join(_USAGES)}, holding an object of serial numbers"
                )
            for serial, entry in serials.items():
                yield _keystore_entry(path, eui64, usage, f"{eui_text}.{usage}.{serial}", entry)


def _keystore_entry(path: Path, eui64: Eui64, usage: str, where: str, entry: object) -> KeystoreEntry:
    if not isinstance(entry, dict):
        raise _not_a_keystore(path, where, "an object")
    certificate, name, role = entry.get("certificate"), entry.get("name"), entry.get("role")
    private_key = entry.get("privateKey")
    if not isinstance(certificate, str) or not isinstance(name, str) or not isinstance(role, int) or isinstance(role, bool):
        raise _not_a_keystore(path, where, "an object with a certificate (PEM text), a name and a role (number)")
    if private_key is not None and not isinstance(private_key, str):
        raise _not_a_keystore(path, f"{where}.privateKey", "PEM text")
    pem = certificate.encode()
    key = private_key.encode() if private_key else None
    try:
        loaded = SmkiCertificate.load(x509.load_pem_x509_certificate(pem))
    except ValueError as exc:
        return KeystoreEntry(eui64, usage, name, role, pem, key, None, f"unreadable certificate ({exc})")
    problem = None
    if loaded.eui64 != eui64:
        problem = f"the certificate is for {loaded.eui64}, not {eui64}"
    elif loaded.role != role:
        problem = f"the keystore gives role {role:#04x}, the certificate {loaded.role!r}"
    return KeystoreEntry(eui64, usage, name, role, pem, key, loaded, problem)


# --- who is who -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Zaz1User:
    """A ZAZ1 identity registered as a DUIS user of the boxed world."""

    actor: ActorSpec
    xml_sign: KeystoreEntry
    digital_signing: KeystoreEntry | None = None
    prepayment_key_agreement: KeystoreEntry | None = None
    """The supplier's prepayment key-agreement key (``Z1-supplierPP-ka``): it vends UTRNs (SR 2.2)."""


_ROLES_BY_CERTIFICATE: Mapping[int, tuple[str, ...]] = {
    RoleCode.SUPPLIER: ("IS", "GS"),
    RoleCode.NETWORK_OPERATOR: ("ED", "GT"),
    RoleCode.OTHER: ("OU",),
}
"""The DUIS user roles a User ID's SMKI certificates give it (DUIS: a supplier party's users
act for both fuels, a network party's as distributor and as transporter)."""
_ACTORS_BY_CERTIFICATE: Mapping[int, tuple[str, str, str]] = {
    RoleCode.SUPPLIER: ("failed_supplier_is", "supplier", FAILED.name),
    RoleCode.NETWORK_OPERATOR: ("network_ed", "network", "network-operator"),
    RoleCode.OTHER: ("other_ou", "other", "other-user"),
}
"""Actor name, kind and party of a ZAZ1 user, by its party certificate: the default world's names.
The default world's ``failed_supplier_gs`` has no counterpart: its role is the Boxed supplier's second."""


@dataclass(frozen=True)
class BoxedIdentities:
    """What a boxed world takes from the keystore, checked."""

    keystore: Keystore
    dsp: KeystoreEntry
    users: tuple[Zaz1User, ...]
    not_registered: tuple[str, ...]
    """Keystore identities without an xmlSign certificate and key, or without a DUIS role."""

    @classmethod
    def select(cls, keystore: Keystore) -> BoxedIdentities:
        usable = [entry for entry in keystore.entries if entry.problem is None and entry.certificate is not None]
        dsp = _dsp_key(usable)
        users: list[Zaz1User] = []
        not_registered: list[str] = []
        taken: set[str] = set()
        for eui64 in _unique(entry.eui64 for entry in usable):
            if eui64 == BOXED_DSP:
                continue
            entries = [e for e in usable if e.eui64 == eui64]
            user, reason = _zaz1_user(eui64, entries, taken)
            if user is None:
                not_registered.append(f"{eui64} ({', '.join(e.name for e in entries)}): {reason}")
            else:
                users.append(user)
                taken.add(user.actor.name)
        order = [name for name, _, _ in _ACTORS_BY_CERTIFICATE.values()]
        users.sort(key=lambda user: order.index(user.actor.name))
        supplier = next((user for user in users if user.actor.user_id == BOXED_SUPPLIER), None)
        if supplier is None:
            raise KeystoreError(
                f"{keystore.path} lacks the Boxed supplier's keys: an xmlSign (87) certificate with its private key "
                f"and a Supplier (02) digital-signing certificate for {BOXED_SUPPLIER}"
            )
        if supplier.digital_signing is None:
            raise KeystoreError(
                f"{keystore.path} lacks the Boxed supplier's Supplier (02) digital-signing certificate with its "
                f"private key (the trust anchor of its meters, used to sign Pre-Commands) for {BOXED_SUPPLIER}"
            )
        return cls(keystore, dsp, tuple(users), tuple(not_registered))


def _unique(values: Iterable[Eui64]) -> list[Eui64]:
    return list(dict.fromkeys(values))


def _with_key(entries: Iterable[KeystoreEntry], role: int) -> list[KeystoreEntry]:
    return [
        entry
        for entry in entries
        if entry.role == role
        and entry.certificate is not None
        and entry.certificate.key_usage is KeyUsage.DIGITAL_SIGNATURE
        and entry.signing_key() is not None
    ]


def _dsp_key(usable: list[KeystoreEntry]) -> KeystoreEntry:
    candidates = _with_key((e for e in usable if e.eui64 == BOXED_DSP), RoleCode.DSP_XML_SIGN)
    if not candidates:
        raise KeystoreError(
            f"the keystore lacks the DSP's dSPXmlSign (89) certificate with its private key for {BOXED_DSP} "
            "(DCC Boxed's dsp-xml-sign-90B3D51F30000002-ds): the gateway signs every answer with it"
        )
    # The hexadecimal OU of DUIS 1.4.1 on, and the longest-lived: the one DCC Boxed's signing tool finds first.
    return max(candidates, key=lambda e: (not e.certificate.legacy_role_text, e.certificate.not_after))  # type: ignore[union-attr]


def _zaz1_user(eui64: Eui64, entries: list[KeystoreEntry], taken: set[str]) -> tuple[Zaz1User | None, str]:
    xml_sign = _with_key(entries, RoleCode.XML_SIGN)
    if not xml_sign:
        return None, "no xmlSign (87) certificate with its private key, so no DUIS requests"
    party_roles = [role for role in _ROLES_BY_CERTIFICATE if any(entry.role == role for entry in entries)]
    if len(party_roles) != 1:
        held = ", ".join(sorted({f"{e.role:02X}" for e in entries if e.role is not None}))
        return None, f"its certificates ({held}) give no single DUIS user role"
    party_role = party_roles[0]
    name, kind, party = _ACTORS_BY_CERTIFICATE[party_role]
    if party_role == RoleCode.SUPPLIER and eui64 != BOXED_SUPPLIER:
        return None, f"a supplier other than the Boxed supplier {BOXED_SUPPLIER}; this world fails only that one"
    if name in taken:
        return None, f"a second {kind} user; DCC Boxed has one"
    roles = _ROLES_BY_CERTIFICATE[party_role]
    digital_signing = _supplier_anchor(entries) if party_role == RoleCode.SUPPLIER else None
    actor = ActorSpec(
        name, kind, party, roles[0], eui64, digital_signing=digital_signing is not None, roles=roles
    )
    newest = max(xml_sign, key=lambda e: e.certificate.not_after)  # type: ignore[union-attr]
    prepayment = _supplier_prepayment_key(entries) if party_role == RoleCode.SUPPLIER else None
    return Zaz1User(actor, newest, digital_signing, prepayment), ""


def _supplier_anchor(entries: list[KeystoreEntry]) -> KeystoreEntry | None:
    """The Supplier DS certificate the meters trust: the ``Z1-`` one, as DCC Boxed's tools pick it
    (its ``Z1b-`` twin is a second key for credential-replacement tests)."""
    candidates = _with_key(entries, RoleCode.SUPPLIER)
    if not candidates:
        return None
    return min(candidates, key=lambda e: (not e.name.startswith("Z1-"), e.name))


def _supplier_prepayment_key(entries: list[KeystoreEntry]) -> KeystoreEntry | None:
    """The supplier's prepayment KA key: the ``Z1-`` ``…PP-ka`` entry with its key, as DCC Boxed's tools pick it."""
    candidates = [
        entry
        for entry in entries
        if entry.role == RoleCode.SUPPLIER
        and entry.certificate is not None
        and entry.certificate.key_usage is KeyUsage.KEY_AGREEMENT
        and "PP" in entry.name
        and entry.signing_key() is not None
    ]
    return min(candidates, key=lambda e: (not e.name.startswith("Z1-"), e.name)) if candidates else None


# --- the report ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExpiredCertificate:
    name: str
    user_id: Eui64
    role: int
    not_after: dt.datetime
    use: str
    """What the world does with it (nothing, or: the meters' trust anchor)."""

    def describe(self) -> str:
        return f"{self.name} ({self.role:02X}, {self.user_id}) expired {self.not_after.isoformat()}: {self.use}"

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "user_id": str(self.user_id),
            "role": f"{self.role:02X}",
            "not_after": self.not_after.isoformat(),
            "use": self.use,
        }


@dataclass(frozen=True)
class BoxedReport:
    """What ``init --boxed`` did with the keystore, for the user to read."""

    keystore: Path
    users: tuple[tuple[str, Eui64, tuple[str, ...]], ...]
    """(actor name, User ID, roles) of every ZAZ1 user registered."""
    expired: tuple[ExpiredCertificate, ...]
    not_registered: tuple[str, ...]
    skipped: tuple[str, ...]
    """Keystore certificates left out of the SMKI repository, with why."""
    anchor: str
    dsp: str

    def lines(self) -> list[str]:
        out = [f"DCC Boxed identities from {self.keystore}:"]
        out += [f"  user {name}: {user_id} as {', '.join(roles)}" for name, user_id, roles in self.users]
        out.append(f"  responses and alerts signed with {self.dsp}")
        out.append(f"  trust anchor of the Boxed supplier's meters: {self.anchor}")
        out += [f"  not a user: {reason}" for reason in self.not_registered]
        out += [f"  expired: {expired.describe()}" for expired in self.expired]
        out += [f"  skipped: {reason}" for reason in self.skipped]
        return out


def _expired(identities: BoxedIdentities, now: dt.datetime) -> tuple[ExpiredCertificate, ...]:
    anchors = {id(user.digital_signing) for user in identities.users if user.digital_signing is not None}
    expired = []
    for entry in identities.keystore.entries:
        certificate = entry.certificate
        if entry.problem is not None or certificate is None or certificate.not_after >= now:
            continue
        use = (
            "the trust anchor of the Boxed supplier's meters (devices do not check validity periods); "
            "the gateway refuses it as a signer"
            if id(entry) in anchors
            else "in the SMKI repository only; the gateway refuses it as a signer"
        )
        expired.append(ExpiredCertificate(entry.name, entry.eui64, certificate.role or 0, certificate.not_after, use))
    return tuple(sorted(expired, key=lambda e: (e.not_after, e.name)))


# --- writing the world -----------------------------------------------------------------------------


def _zaz1_file(eui64: Eui64, certificate: SmkiCertificate, key: bool) -> str:
    """Where a ZAZ1 PEM goes: by EUI-64, role and serial (keystore names are not trusted as paths)."""
    stem = f"{certificate.role or 0:02X}-{certificate.serial:x}"
    return f"{_ZAZ1_DIR}/{eui64.compact.upper()}/{stem}{'.key' if key else ''}.pem"


def _write_zaz1(layout: WorldLayout, entry: KeystoreEntry, certificate: SmkiCertificate) -> str:
    """Writes the entry's certificate (as the keystore has it) and returns its path in the world."""
    cert = _zaz1_file(entry.eui64, certificate, key=False)
    path = layout.path(cert)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(entry.certificate_pem)
    return cert


def _write_zaz1_pair(layout: WorldLayout, entry: KeystoreEntry) -> dict[str, str]:
    """Writes an entry chosen for its key (see _with_key): certificate and private key."""
    key, certificate = entry.signing_key(), entry.certificate
    if key is None or certificate is None:
        raise KeystoreError(f"{entry.describe()}: its private key is unusable")
    pair = {"cert": _write_zaz1(layout, entry, certificate), "key": _zaz1_file(entry.eui64, certificate, key=True)}
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    layout.path(pair["key"]).write_bytes(pem)
    layout.path(pair["key"]).chmod(0o600)
    return pair


def _parties() -> tuple[PartySpec, ...]:
    mpids = {FAILED.name: SUPPLIER_MPIDS, "network-operator": NETWORK_MPIDS}
    return tuple(PartySpec(party.name, party.kind, mpids.get(party.name, party.mpids)) for party in PARTIES)


def init_boxed_world(
    directory: Path,
    keystore_path: Path,
    *,
    now: dt.datetime,
    devices: int = DEFAULT_DEVICES,
    seed: str = DEFAULT_SEED,
    force: bool = False,
    shared_dir: Path | None = None,
) -> tuple[Manifest, BoxedReport]:
    """Writes the boxed world into ``directory`` (SPEC §2 ``init --boxed``); returns its manifest and the report.

    The keystore is read and checked first: on KeystoreError nothing has been written.
    ``now`` decides which certificates are reported as expired. Otherwise as
    :func:`gateway.world.init_world`.
    """
    check_device_count(devices)
    identities = BoxedIdentities.select(read_keystore(keystore_path))
    directory = Path(directory)
    prepare_directory(directory, force)
    layout = WorldLayout(directory)
    parties = _parties()
    ca = write_test_authorities(layout, seed)
    skipped = []
    for entry in identities.keystore.entries:
        if entry.problem is not None or entry.certificate is None:
            skipped.append(f"{entry.describe()}: {entry.problem}")
        else:
            _write_zaz1(layout, entry, entry.certificate)
    dsp = _write_zaz1_pair(layout, identities.dsp)
    gateway_entry = {
        "url": GATEWAY_URL,
        "dsp_user_id": str(BOXED_DSP),
        "response_cert": dsp["cert"],
        "response_key": dsp["key"],
    }
    actors: dict[str, object] = {}
    for user in identities.users:
        keys: dict[str, object] = {"xml_sign": _write_zaz1_pair(layout, user.xml_sign), "digital_signing": None}
        if user.digital_signing is not None:
            keys["digital_signing"] = _write_zaz1_pair(layout, user.digital_signing)
        if user.prepayment_key_agreement is not None:
            keys["prepayment_key_agreement"] = _write_zaz1_pair(layout, user.prepayment_key_agreement)
        actors[user.actor.name] = actor_entry(user.actor, keys, parties)
    replaced = {user.actor.name for user in identities.users} | {"failed_supplier_gs"}
    for actor in ACTORS:  # the test PKI's for what the keystore lacks (SoLR actors; a missing network operator)
        if actor.name not in replaced:
            actors[actor.name] = actor_entry(actor, issue_actor_keys(layout, ca, actor), parties)
    report = BoxedReport(
        keystore=identities.keystore.path,
        users=tuple((u.actor.name, u.actor.user_id, u.actor.roles) for u in identities.users),
        expired=_expired(identities, now),
        not_registered=identities.not_registered,
        skipped=tuple(skipped),
        anchor=next(u.digital_signing for u in identities.users if u.digital_signing is not None).describe(),  # type: ignore[union-attr]
        dsp=identities.dsp.describe(),
    )
    head = manifest_head(seed, gateway_entry, actors, parties)
    head["boxed"] = {
        "keystore": str(identities.keystore.path),
        "keystore_sha256": identities.keystore.sha256,
        "expired": [expired.to_json() for expired in report.expired],
        "not_registered": list(report.not_registered),
        "skipped": list(report.skipped),
    }
    mixed = generate_devices(seed, devices, {FAILED.name: SUPPLIER_MPIDS})
    manifest = directory / MANIFEST_FILE_NAME
    write_manifest(manifest, head, boxed_fleet(mixed))
    write_config(directory, shared_dir)
    return load_manifest(manifest), report


__all__ = [
    "BOXED_DEVICES",
    "BOXED_DSP",
    "BOXED_SUPPLIER",
    "BoxedDevice",
    "BoxedIdentities",
    "BoxedReport",
    "ExpiredCertificate",
    "Keystore",
    "KeystoreEntry",
    "KeystoreError",
    "init_boxed_world",
    "read_keystore",
]
