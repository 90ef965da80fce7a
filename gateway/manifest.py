"""``manifest.json`` (SPEC §3): who is who in a simulated world, and where their keys are.

:func:`load_manifest` checks every required key and type, parses EUI-64s to
:class:`~gateway.eui64.Eui64` and resolves paths against the manifest's own
directory, so callers never handle raw JSON. Problems raise
:class:`ManifestError` naming the offending key.

Conventions beyond SPEC §3 (extra keys are allowed there):

* top-level ``parties``: party name -> ``{"kind", "mpids"}``; a supplier's
  ``mpids`` list its electricity MPID first, then its gas MPID;
* actor ``agent_for`` (the SRP's SC user: the failed supplier's party) and
  ``office`` (``"SRO"``/``"ARO"`` for officers);
* ``gateway.response_key`` and ``smki.org_ca_key`` (the simulated DCC signs
  responses and CRLs);
* top-level ``seed``: the seed the world was generated from;
* actor ``roles``: every DUIS role of a User ID that holds more than one (a DCC
  Boxed world: its supplier is ``IS`` and ``GS``, its network operator ``ED``
  and ``GT``); ``role`` is then the first of them. Absent: the actor's roles are
  ``[role]`` (SPEC §1: one role per User ID, as in the default world);
* device ``network_mpid``: the MPID of the device's registered network operator
  (electricity distributor or gas transporter), when the world records one;
* top-level ``boxed``: in a world made by ``init --boxed``, where its DCC Boxed
  identities came from and which of their certificates had expired.
"""

from __future__ import annotations

import json
import re
import sys
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar, cast

from gateway.eui64 import Eui64

MANIFEST_FILE_NAME = "manifest.json"

ActorKind = Literal["supplier", "solr", "srp", "authority", "pma", "dcc", "network", "other", "officer"]
ACTOR_KINDS: frozenset[str] = frozenset(
    ("supplier", "solr", "srp", "authority", "pma", "dcc", "network", "other", "officer")
)
USER_ROLES: frozenset[str] = frozenset(("IS", "ES", "GS", "RSA", "ED", "GT", "OU", "SC"))
"""DUIS user roles, plus ``SC`` (SoLR Contingency, MP134B)."""
DeviceType = Literal["ESME", "GSME", "GPF", "CHF", "HCALCS", "PPMID", "IHD", "CAD"]
DEVICE_TYPES: tuple[str, ...] = ("ESME", "GSME", "GPF", "CHF", "HCALCS", "PPMID", "IHD", "CAD")
"""The DUIS 5.4 device types (``DeviceType`` enumeration of the official XSD)."""
METER_TYPES: frozenset[str] = frozenset(("ESME", "GSME"))
"""The devices that meter a supply: they have an MPxN, a payment mode and a credit balance."""
PaymentMode = Literal["Credit", "Prepayment"]

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")


class ManifestError(ValueError):
    """``manifest.json`` is missing, not JSON, or lacks a required key or type."""


def duis_text(eui: Eui64) -> str:
    """``str(eui)``, about ten times faster: it runs once per device when writing large fleets."""
    return eui.to_bytes().hex("-").upper()


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A certificate and its private key (PEM files)."""

    cert: Path
    key: Path


@dataclass(frozen=True, slots=True)
class GatewayInfo:
    """The gateway itself: where it listens and the ``89`` key it signs responses with."""

    url: str
    dsp_user_id: Eui64
    response_cert: Path
    response_key: Path | None


@dataclass(frozen=True, slots=True)
class SmkiInfo:
    """The world's SMKI anchors."""

    root_ca: Path
    org_ca: Path
    crl: Path
    org_ca_key: Path | None = None


@dataclass(frozen=True, slots=True)
class Party:
    """An organisation (SEC party) with its MPIDs (suppliers: electricity first, then gas)."""

    name: str
    kind: str
    mpids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Actor:
    """A user or officer of a party, with the keys it signs with."""

    name: str
    kind: str
    party: str
    user_id: Eui64
    role: str | None
    """The DUIS user role (``IS``, ``SC``, …); None for non-users (authority, PMA, DCC, officers)."""
    mpids: tuple[str, ...]
    xml_sign: KeyPair
    digital_signing: KeyPair | None
    """The Supplier (``02``) DS key for GBCS pre-commands; suppliers only."""
    response_url: str | None
    """Where the gateway POSTs this user's async results and alerts; None for non-users."""
    agent_for: str | None = None
    """The SRP's SC user: the failed supplier party it acts for."""
    office: str | None = None
    """Officers: ``SRO`` or ``ARO``."""
    roles: tuple[str, ...] = ()
    """Every DUIS role of the User ID, ``role`` first; ``(role,)`` unless the manifest lists more."""
    prepayment_key_agreement: KeyPair | None = None
    """The Supplier (``02``) prepayment key-agreement key that vends UTRNs (SR 2.2); suppliers only."""

    def __post_init__(self) -> None:
        if not self.roles and self.role is not None:
            object.__setattr__(self, "roles", (self.role,))


@dataclass(frozen=True, slots=True)
class Device:
    """A simulated device as the world starts it: a meter (ESME, GSME), or another device of the
    premises (comms hub, gas proxy, PPMID, …), which has no MPxN, payment mode or credit."""

    device_id: Eui64
    type: DeviceType
    smets: int
    mpxn: str | None
    """MPAN (13 digits, ESME) or MPRN (10 digits, GSME); None for a device that is not a meter."""
    supplier_mpid: str
    """The MPID of the supplier the device is registered to (for a non-meter: the premises' supplier)."""
    payment_mode: PaymentMode | None
    """None for a device that is not a meter."""
    credit_pence: int | None
    """None for a device that is not a meter."""
    network_mpid: str | None = None
    """The MPID of the device's registered network operator (ED or GT), when the world records one."""

    @property
    def is_meter(self) -> bool:
        return self.type in METER_TYPES

    def to_json(self) -> dict[str, object]:
        """The manifest form (SPEC §3), keys in SPEC order; ``network_mpid`` only when recorded."""
        entry: dict[str, object] = {
            "device_id": duis_text(self.device_id),
            "type": self.type,
            "smets": self.smets,
            "mpxn": self.mpxn,
            "supplier_mpid": self.supplier_mpid,
            "payment_mode": self.payment_mode,
            "credit_pence": self.credit_pence,
        }
        if self.network_mpid is not None:
            entry["network_mpid"] = self.network_mpid
        return entry


@dataclass(frozen=True, slots=True)
class Manifest:
    """A loaded ``manifest.json``."""

    path: Path
    gateway: GatewayInfo
    smki: SmkiInfo
    actors: Mapping[str, Actor]
    parties: Mapping[str, Party]
    devices: tuple[Device, ...]
    seed: str | None = None
    _devices_by_id: Mapping[Eui64, Device] = field(init=False, repr=False, compare=False, hash=False)
    _actors_by_user: Mapping[Eui64, Actor] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_devices_by_id", types.MappingProxyType({d.device_id: d for d in self.devices}))
        object.__setattr__(
            self, "_actors_by_user", types.MappingProxyType({a.user_id: a for a in self.actors.values()})
        )

    @property
    def directory(self) -> Path:
        return self.path.parent

    def actor(self, name: str) -> Actor:
        return _lookup(self.actors, name, "actor")

    def actors_of_kind(self, kind: str) -> tuple[Actor, ...]:
        """Actors of ``kind`` in manifest order."""
        return tuple(actor for actor in self.actors.values() if actor.kind == kind)

    def actor_by_user_id(self, user_id: Eui64) -> Actor:
        return _lookup(self._actors_by_user, user_id, "user id")

    def party(self, name: str) -> Party:
        return _lookup(self.parties, name, "party")

    def device(self, device_id: Eui64 | str) -> Device:
        """The device with this id (an :class:`Eui64` or its DUIS text)."""
        key = device_id if isinstance(device_id, Eui64) else Eui64.parse(device_id)
        return _lookup(self._devices_by_id, key, "device")


def _lookup(mapping: Mapping[K, V], key: K, what: str) -> V:
    try:
        return mapping[key]
    except KeyError:
        raise KeyError(f"no {what} {key!s} in the manifest") from None


# --- parsing ---------------------------------------------------------------------------

JsonObject = Mapping[str, object]


def _object(value: object, where: str) -> JsonObject:
    if not isinstance(value, dict):
        raise ManifestError(f"{where} must be a JSON object")
    return cast(JsonObject, value)


def _field(obj: JsonObject, key: str, kind: type[T], where: str) -> T:
    if key not in obj:
        raise ManifestError(f"{where}: missing key {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ManifestError(f"{where}.{key} must be a {kind.__name__}, not {value!r}")
    return value


def _nullable(obj: JsonObject, key: str, kind: type[T], where: str) -> T | None:
    """A key that must be present (SPEC §3 lists it) but may be null."""
    if key not in obj:
        raise ManifestError(f"{where}: missing key {key!r}")
    return None if obj[key] is None else _field(obj, key, kind, where)


def _optional(obj: JsonObject, key: str, kind: type[T], where: str) -> T | None:
    """A key that may be absent or null (our additions to SPEC §3)."""
    return None if obj.get(key) is None else _field(obj, key, kind, where)


def _choice(value: T, allowed: Iterable[T], where: str) -> T:
    """``value`` if allowed, returned as the allowed object itself (one shared string per fleet)."""
    options = tuple(allowed)
    if value not in options:
        raise ManifestError(f"{where} must be one of {', '.join(map(str, options))}, not {value!r}")
    return options[options.index(value)]


def _eui64(text: str, where: str) -> Eui64:
    try:
        return Eui64.parse(text)
    except ValueError as exc:
        raise ManifestError(f"{where}: {exc}") from exc


def _string_list(obj: JsonObject, key: str, where: str) -> tuple[str, ...]:
    values = _field(obj, key, list, where)
    if not all(isinstance(value, str) for value in values):
        raise ManifestError(f"{where}.{key} must be a list of strings")
    return tuple(values)


def _path(base: Path, text: str) -> Path:
    path = Path(text)
    return path if path.is_absolute() else base / path


def _key_pair(obj: JsonObject, base: Path, where: str) -> KeyPair:
    return KeyPair(_path(base, _field(obj, "cert", str, where)), _path(base, _field(obj, "key", str, where)))


def _parse_gateway(obj: JsonObject, base: Path) -> GatewayInfo:
    key = _optional(obj, "response_key", str, "gateway")
    return GatewayInfo(
        url=_field(obj, "url", str, "gateway"),
        dsp_user_id=_eui64(_field(obj, "dsp_user_id", str, "gateway"), "gateway.dsp_user_id"),
        response_cert=_path(base, _field(obj, "response_cert", str, "gateway")),
        response_key=_path(base, key) if key is not None else None,
    )


def _parse_smki(obj: JsonObject, base: Path) -> SmkiInfo:
    org_ca_key = _optional(obj, "org_ca_key", str, "smki")
    return SmkiInfo(
        root_ca=_path(base, _field(obj, "root_ca", str, "smki")),
        org_ca=_path(base, _field(obj, "org_ca", str, "smki")),
        crl=_path(base, _field(obj, "crl", str, "smki")),
        org_ca_key=_path(base, org_ca_key) if org_ca_key is not None else None,
    )


def _parse_roles(obj: JsonObject, role: str | None, where: str) -> tuple[str, ...]:
    """``roles`` when listed (every one a DUIS role, ``role`` first, no repeats, SC alone), else ``(role,)``."""
    if obj.get("roles") is None:
        return (role,) if role is not None else ()
    roles = tuple(_choice(value, sorted(USER_ROLES), f"{where}.roles") for value in _string_list(obj, "roles", where))
    if role is None or not roles or roles[0] != role:
        raise ManifestError(f"{where}.roles must start with the actor's role {role!r}")
    if len(set(roles)) != len(roles):
        raise ManifestError(f"{where}.roles lists a role twice")
    if "SC" in roles and len(roles) > 1:
        raise ManifestError(f"{where}.roles: the SoLR Contingency role SC is held alone")
    return roles


def _parse_actor(name: str, obj: JsonObject, base: Path) -> Actor:
    where = f"actors.{name}"
    role = _nullable(obj, "role", str, where)
    if role is not None:
        role = _choice(role, sorted(USER_ROLES), f"{where}.role")
    digital_signing = _nullable(obj, "digital_signing", dict, where)
    prepayment = _optional(obj, "prepayment_key_agreement", dict, where)
    return Actor(
        name=name,
        kind=_choice(_field(obj, "kind", str, where), sorted(ACTOR_KINDS), f"{where}.kind"),
        party=_field(obj, "party", str, where),
        user_id=_eui64(_field(obj, "user_id", str, where), f"{where}.user_id"),
        role=role,
        mpids=_string_list(obj, "mpids", where),
        xml_sign=_key_pair(_field(obj, "xml_sign", dict, where), base, f"{where}.xml_sign"),
        digital_signing=(
            _key_pair(digital_signing, base, f"{where}.digital_signing") if digital_signing is not None else None
        ),
        response_url=_nullable(obj, "response_url", str, where),
        agent_for=_optional(obj, "agent_for", str, where),
        office=_optional(obj, "office", str, where),
        roles=_parse_roles(obj, role, where),
        prepayment_key_agreement=(
            _key_pair(prepayment, base, f"{where}.prepayment_key_agreement") if prepayment is not None else None
        ),
    )


def _parse_party(name: str, obj: JsonObject) -> Party:
    where = f"parties.{name}"
    return Party(name, _field(obj, "kind", str, where), _string_list(obj, "mpids", where))


def _parties_from_actors(actors: Mapping[str, Actor]) -> dict[str, Party]:
    """For manifests without ``parties``: one party per name, kind and MPIDs from its users."""
    parties: dict[str, Party] = {}
    for actor in actors.values():
        if actor.party not in parties or parties[actor.party].kind == "officer":
            parties[actor.party] = Party(actor.party, actor.kind, actor.mpids)
    return parties


def _parse_device(value: object, where: str) -> Device:
    obj = _object(value, where)
    device_type = _choice(_field(obj, "type", str, where), DEVICE_TYPES, f"{where}.type")
    device_id = _eui64(_field(obj, "device_id", str, where), f"{where}.device_id")
    smets = _choice(_field(obj, "smets", int, where), (1, 2), f"{where}.smets")
    supplier_mpid = sys.intern(_field(obj, "supplier_mpid", str, where))  # a handful of MPIDs, many devices
    network = _optional(obj, "network_mpid", str, where)
    network_mpid = sys.intern(network) if network is not None else None
    if device_type not in METER_TYPES:
        for key in ("mpxn", "payment_mode", "credit_pence"):
            if obj.get(key) is not None:
                raise ManifestError(f"{where}.{key}: a {device_type} is not a meter; leave it out or null")
        return Device(device_id, cast(DeviceType, device_type), smets, None, supplier_mpid, None, None, network_mpid)
    mpxn = _field(obj, "mpxn", str, where)
    if not mpxn.isdigit():
        raise ManifestError(f"{where}.mpxn must be digits, not {mpxn!r}")
    return Device(
        device_id=device_id,
        type=cast(DeviceType, device_type),
        smets=smets,
        mpxn=mpxn,
        supplier_mpid=supplier_mpid,
        payment_mode=cast(
            PaymentMode,
            _choice(_field(obj, "payment_mode", str, where), ("Credit", "Prepayment"), f"{where}.payment_mode"),
        ),
        credit_pence=_field(obj, "credit_pence", int, where),
        network_mpid=network_mpid,
    )


def _check_references(actors: Mapping[str, Actor], parties: Mapping[str, Party]) -> None:
    for actor in actors.values():
        for reference in (actor.party, actor.agent_for):
            if reference is not None and reference not in parties:
                raise ManifestError(f"actors.{actor.name} names unknown party {reference!r}")
    user_ids = [actor.user_id for actor in actors.values()]
    if len(set(user_ids)) != len(user_ids):
        raise ManifestError("two actors share a user_id")


def _build_manifest(top: JsonObject, devices: tuple[Device, ...], path: Path) -> Manifest:
    base = path.parent
    actors_raw = _field(top, "actors", dict, "manifest")
    actors = {name: _parse_actor(name, _object(obj, f"actors.{name}"), base) for name, obj in actors_raw.items()}
    parties_raw = _optional(top, "parties", dict, "manifest")
    parties = (
        {name: _parse_party(name, _object(obj, f"parties.{name}")) for name, obj in parties_raw.items()}
        if parties_raw is not None
        else _parties_from_actors(actors)
    )
    _check_references(actors, parties)
    if len({device.device_id for device in devices}) != len(devices):
        raise ManifestError("two devices share a device_id")
    return Manifest(
        path=path,
        gateway=_parse_gateway(_field(top, "gateway", dict, "manifest"), base),
        smki=_parse_smki(_field(top, "smki", dict, "manifest"), base),
        actors=types.MappingProxyType(actors),
        parties=types.MappingProxyType(parties),
        devices=devices,
        seed=_optional(top, "seed", str, "manifest"),
    )


def _parse_devices(values: Iterable[object]) -> tuple[Device, ...]:
    return tuple(_parse_device(value, f"devices[{index}]") for index, value in enumerate(values))


def parse_manifest(raw: object, *, path: Path) -> Manifest:
    """Builds a :class:`Manifest` from parsed JSON; paths resolve against ``path``'s directory."""
    top = _object(raw, "manifest")
    return _build_manifest(top, _parse_devices(_field(top, "devices", list, "manifest")), path)


# --- decoding: devices become Devices as they are read ---------------------------------

_WHITESPACE = re.compile(r"[ \t\n\r]*")


def _skip(text: str, pos: int) -> int:
    match = _WHITESPACE.match(text, pos)
    return match.end() if match else pos


def _expect(text: str, pos: int, char: str) -> int:
    """The offset after ``char``, which must come next (after whitespace)."""
    pos = _skip(text, pos)
    if text[pos : pos + 1] != char:
        raise ManifestError(f"expected {char!r} at offset {pos}")
    return pos + 1


def _next_is(text: str, pos: int, char: str) -> bool:
    return text[_skip(text, pos) : _skip(text, pos) + 1] == char


_W = r"[ \t\n\r]*"
_CANONICAL_DEVICE = re.compile(
    _W
    + r'\{"device_id": "([0-9A-F]{2}(?:-[0-9A-F]{2}){7})", "type": "(ESME|GSME)", "smets": ([12]), '
    + r'"mpxn": "([0-9]+)", "supplier_mpid": "([^"\\\x00-\x1f]*)", "payment_mode": "(Credit|Prepayment)", '
    + r'"credit_pence": (-?(?:0|[1-9][0-9]*))\}'
)
"""A device entry exactly as ``init`` writes it (SPEC key order, ``json.dumps`` spacing, no escapes, valid values).

Such an entry is read straight from the match, twice as fast as decoding it to
a dict and checking that (a million-meter manifest is read at every start);
anything else (other spacing or key order, extra keys, escapes, invalid values)
takes the general path, which also names what is wrong. A match accepts only
what the general path accepts, with the same result.
"""
_AFTER_DEVICE = re.compile(_W + "([,\\]])")
_SHARED_STRINGS = types.MappingProxyType({text: text for text in ("ESME", "GSME", "Credit", "Prepayment")})


def _canonical_device(match: re.Match[str]) -> Device:
    device_id, device_type, smets, mpxn, mpid, payment_mode, credit = match.groups()
    return Device(
        device_id=Eui64(int(device_id.replace("-", ""), 16)),
        type=cast(DeviceType, _SHARED_STRINGS[device_type]),
        smets=int(smets),
        mpxn=mpxn,
        supplier_mpid=sys.intern(mpid),
        payment_mode=cast(PaymentMode, _SHARED_STRINGS[payment_mode]),
        credit_pence=int(credit),
    )


def _decode_devices(decoder: json.JSONDecoder, text: str, pos: int) -> tuple[tuple[Device, ...], int]:
    pos = _expect(text, pos, "[")
    devices: list[Device] = []
    if _next_is(text, pos, "]"):
        return (), _expect(text, pos, "]")
    canonical, after = _CANONICAL_DEVICE.match, _AFTER_DEVICE.match
    while True:
        match = canonical(text, pos)
        if match is not None:
            devices.append(_canonical_device(match))
            pos = match.end()
        else:
            value, pos = decoder.raw_decode(text, _skip(text, pos))
            devices.append(_parse_device(value, f"devices[{len(devices)}]"))
        separator = after(text, pos)
        if separator is None:
            raise ManifestError(f"expected ',' or ']' at offset {_skip(text, pos)}")
        pos = separator.end()
        if separator.group(1) == "]":
            return tuple(devices), pos


def _decode_manifest(text: str) -> tuple[dict[str, object], tuple[Device, ...]]:
    """``json.loads`` of the top-level object, except that each element of ``devices``
    becomes a :class:`Device` as soon as it is read.

    A million-device manifest would otherwise hold a million dicts and a million
    Devices at the same time (about twice the memory).
    """
    decoder = json.JSONDecoder()
    top: dict[str, object] = {}
    devices: tuple[Device, ...] | None = None
    pos = _expect(text, 0, "{")
    while not _next_is(text, pos, "}"):
        if not _next_is(text, pos, '"'):
            raise ManifestError(f"object key expected at offset {_skip(text, pos)}")
        key, pos = decoder.raw_decode(text, _skip(text, pos))
        pos = _skip(text, _expect(text, pos, ":"))
        if key == "devices":
            devices, pos = _decode_devices(decoder, text, pos)
        else:
            top[key], pos = decoder.raw_decode(text, pos)
        if not _next_is(text, pos, ","):
            break
        pos = _expect(text, pos, ",")
        if _next_is(text, pos, "}"):
            raise ManifestError(f"trailing comma at offset {pos}")
    pos = _expect(text, pos, "}")
    if _skip(text, pos) != len(text):
        raise ManifestError(f"unexpected data after the manifest at offset {_skip(text, pos)}")
    if devices is None:
        raise ManifestError("manifest: missing key 'devices'")
    return top, devices


def manifest_path(dir_or_file: Path) -> Path:
    """``dir_or_file`` itself, or ``DIR/manifest.json`` when it is a directory."""
    return dir_or_file / MANIFEST_FILE_NAME if dir_or_file.is_dir() else dir_or_file


def load_manifest(dir_or_file: Path) -> Manifest:
    """Reads and checks ``manifest.json`` (or ``DIR/manifest.json``)."""
    path = manifest_path(Path(dir_or_file)).resolve()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path} is not UTF-8: {exc}") from exc
    try:
        top, devices = _decode_manifest(text)
    except ManifestError as exc:
        raise ManifestError(f"{path}: {exc}") from exc
    except ValueError as exc:  # json.JSONDecodeError
        raise ManifestError(f"{path} is not valid JSON: {exc}") from exc
    return _build_manifest(top, devices, path)
