"""Directives (SPEC §6): typed values, their XML form, and who may issue each.

A directive is a document in the gateway's namespace, signed like a Service
Request (same verifier, same profile), whose DirectiveID names the issuer as
originator and the DCC as target::

    <d:Directive xmlns:d="urn:x-dcc-gateway:directive:1">
      <d:DirectiveID>ISSUER-EUI-64:DSP-EUI-64:counter</d:DirectiveID>
      <d:Command name="enable-contingency">
        <d:Argument name="failed">failed-supplier</d:Argument>
        <d:Argument name="srp_user">90-B3-D5-1F-30-13-00-01</d:Argument>
        <d:Argument name="until">2026-03-01T00:00:00Z</d:Argument>
      </d:Command>
      <ds:Signature>…</ds:Signature>
    </d:Directive>

The schema fixes the envelope; :func:`parse_directive` turns the signed
arguments into one of the typed dataclasses below, strictly (every field
present, nothing extra, values of the right type).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, get_type_hints

from lxml import etree

from gateway.eui64 import Eui64
from gateway.namespaces import DIRECTIVE, DS
from gateway.policy.state import ActorKind
from gateway.verify.documents import VerifiedDirective

_D = f"{{{DIRECTIVE}}}"
COMMAND = _D + "Command"
ARGUMENT = _D + "Argument"
_SRV = re.compile(r"\A[0-9]{1,2}(?:\.[0-9]{1,2}){1,2}\Z")


class DirectiveError(ValueError):
    """The signed directive is malformed (unknown command, missing or bad argument)."""


# --- the directives -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RevokeLicence:
    supplier: str


@dataclass(frozen=True, slots=True)
class AppointSolr:
    failed: str
    solr: str


@dataclass(frozen=True, slots=True)
class EnableContingency:
    failed: str
    srp_user: Eui64
    until: dt.datetime


@dataclass(frozen=True, slots=True)
class WithdrawContingency:
    failed: str
    srp_user: Eui64


@dataclass(frozen=True, slots=True)
class DelayRevocation:
    supplier: str
    until: dt.datetime
    considered: str


@dataclass(frozen=True, slots=True)
class DelayMpidTransfer:
    supplier: str
    until: dt.datetime
    considered: str


@dataclass(frozen=True, slots=True)
class ConfirmTakeover:
    failed: str
    estate: str
    staff: str
    srp_support: str
    risks: str
    timescales: str


@dataclass(frozen=True, slots=True)
class RevokeCertificates:
    supplier: str


@dataclass(frozen=True, slots=True)
class TransferMpids:
    failed: str
    solr: str


@dataclass(frozen=True, slots=True)
class RegisterParty:
    name: str
    kind: str
    mpids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RegisterUser:
    user_id: Eui64
    name: str
    party: str
    role: str


@dataclass(frozen=True, slots=True)
class RegisterDevice:
    device_id: Eui64
    device_type: str
    smets: int
    mpid: str


@dataclass(frozen=True, slots=True)
class SuspendParty:
    party: str


@dataclass(frozen=True, slots=True)
class CreateAro:
    user_id: Eui64
    name: str


@dataclass(frozen=True, slots=True)
class SubmitAdt:
    failed: str
    window_seconds: int
    thresholds: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class ReleaseQuarantine:
    """The user releases one of its quarantined requests (SEC anomaly detection: release or delete)."""

    event_ref: int


@dataclass(frozen=True, slots=True)
class DeleteQuarantine:
    event_ref: int


Directive = (
    RevokeLicence
    | AppointSolr
    | EnableContingency
    | WithdrawContingency
    | DelayRevocation
    | DelayMpidTransfer
    | ConfirmTakeover
    | RevokeCertificates
    | TransferMpids
    | RegisterParty
    | RegisterUser
    | RegisterDevice
    | SuspendParty
    | CreateAro
    | SubmitAdt
    | ReleaseQuarantine
    | DeleteQuarantine
)


@dataclass(frozen=True, slots=True)
class Issuer:
    """Who may issue a directive: a party kind, and for officers their office."""

    kind: ActorKind
    office: str | None = None


_AUTHORITY = frozenset({Issuer(ActorKind.AUTHORITY)})
_PMA = frozenset({Issuer(ActorKind.PMA)})
_DCC = frozenset({Issuer(ActorKind.DCC)})
_DUIS_USERS = frozenset(
    Issuer(kind) for kind in (ActorKind.SUPPLIER, ActorKind.SOLR, ActorKind.SRP, ActorKind.NETWORK, ActorKind.OTHER)
)

COMMANDS: Mapping[str, tuple[type[Any], frozenset[Issuer]]] = {
    "revoke-licence": (RevokeLicence, _AUTHORITY),
    "appoint-solr": (AppointSolr, _AUTHORITY),
    "enable-contingency": (EnableContingency, _AUTHORITY),
    "withdraw-contingency": (WithdrawContingency, _AUTHORITY),
    "delay-revocation": (DelayRevocation, _PMA),
    "delay-mpid-transfer": (DelayMpidTransfer, _PMA),
    "confirm-takeover": (ConfirmTakeover, frozenset({Issuer(ActorKind.SOLR)})),
    "revoke-certificates": (RevokeCertificates, _DCC),
    "transfer-mpids": (TransferMpids, _DCC),
    "register-party": (RegisterParty, _DCC),
    "register-user": (RegisterUser, _DCC),
    "register-device": (RegisterDevice, _DCC),
    "suspend-party": (SuspendParty, _DCC),
    "create-aro": (CreateAro, frozenset({Issuer(ActorKind.OFFICER, "SRO")})),
    "submit-adt": (SubmitAdt, frozenset({Issuer(ActorKind.OFFICER, "ARO")})),
    "release-quarantine": (ReleaseQuarantine, _DUIS_USERS),
    "delete-quarantine": (DeleteQuarantine, _DUIS_USERS),
}
QUARANTINE_DIRECTIVES = (ReleaseQuarantine, DeleteQuarantine)
"""Directives that act on the store's quarantine, not on the registry state."""
NAMES: Mapping[type[Any], str] = {cls: name for name, (cls, _) in COMMANDS.items()}


def command_name(directive: Directive) -> str:
    return NAMES[type(directive)]


def issuers(directive: Directive) -> frozenset[Issuer]:
    return COMMANDS[command_name(directive)][1]


# --- arguments as text ----------------------------------------------------------------


def arguments(directive: Directive) -> dict[str, str]:
    """The directive's fields as the text written in its XML arguments."""
    return {f.name: _to_text(getattr(directive, f.name)) for f in dataclasses.fields(directive)}


def from_arguments(name: str, values: Mapping[str, str]) -> Directive:
    """Builds the typed directive; raises DirectiveError on anything missing, extra or malformed."""
    if name not in COMMANDS:
        raise DirectiveError(f"unknown directive {name!r}")
    cls = COMMANDS[name][0]
    hints = get_type_hints(cls)
    fields = [f.name for f in dataclasses.fields(cls)]
    missing = [f for f in fields if f not in values]
    extra = [k for k in values if k not in fields]
    if missing or extra:
        raise DirectiveError(f"{name}: missing arguments {missing}, unexpected {extra}")
    try:
        converted = {f: _from_text(hints[f], values[f]) for f in fields}
    except ValueError as exc:
        raise DirectiveError(f"{name}: {exc}") from exc
    directive: Directive = cls(**converted)
    return directive


def _to_text(value: object) -> str:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, Mapping):
        return json.dumps(dict(value), sort_keys=True, separators=(",", ":"))
    return str(value)


def _from_text(kind: object, text: str) -> object:
    if kind is str:
        if not text.strip():
            raise ValueError("empty text argument")
        return text.strip()
    if kind is int:
        return int(text)
    if kind is Eui64:
        return Eui64.parse(text.strip())
    if kind is dt.datetime:
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        if when.tzinfo is None:
            raise ValueError(f"date-time without a timezone: {text!r}")
        return when.astimezone(dt.timezone.utc)
    if kind == tuple[str, ...]:
        return tuple(part.strip() for part in text.split(",") if part.strip())
    if kind == Mapping[str, int]:
        return _thresholds(text)
    raise ValueError(f"unsupported argument type {kind}")


def _thresholds(text: str) -> Mapping[str, int]:
    value = json.loads(text)
    if not isinstance(value, dict) or not value:
        raise ValueError("thresholds must be a non-empty JSON object {SRV: count}")
    checked: dict[str, int] = {}
    for srv, count in value.items():
        if not isinstance(srv, str) or not _SRV.match(srv):
            raise ValueError(f"not a Service Reference Variant: {srv!r}")
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise ValueError(f"threshold for {srv} must be a non-negative integer")
        checked[srv] = count
    return checked


# --- XML ----------------------------------------------------------------------------------


def directive_tree(directive: Directive, directive_id: str) -> etree._Element:
    """The unsigned directive document (sign it with gateway.signing.sign_tree)."""
    root = etree.Element(_D + "Directive", nsmap={"d": DIRECTIVE, "ds": DS})
    etree.SubElement(root, _D + "DirectiveID").text = directive_id
    command = etree.SubElement(root, COMMAND, name=command_name(directive))
    for name, text in arguments(directive).items():
        etree.SubElement(command, ARGUMENT, name=name).text = text
    return root


def parse_directive(verified: VerifiedDirective) -> Directive:
    """The typed directive from the signed content of a verified directive document."""
    commands = [element for element in verified.content if element.tag == COMMAND]
    if len(commands) != 1:
        raise DirectiveError("a directive holds exactly one Command")
    command = commands[0]
    values: dict[str, str] = {}
    for argument in command:
        name = argument.get("name", "")
        if argument.tag != ARGUMENT or name in values:
            raise DirectiveError(f"unexpected or repeated argument {name!r}")
        values[name] = argument.text or ""
    return from_arguments(command.get("name", ""), values)
