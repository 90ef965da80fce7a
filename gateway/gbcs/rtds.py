"""The RTDS 4.5.0 GBCS vectors as a catalogue: which use case answers an SRV, with which message.

The vectors (GPL-3.0 test data, read in place from the folder ``gateway.toml`` names, never
copied) are one folder per use case, ``<SRV>_<use case>/``, holding
``<use case>_<SRV>_<scenario>_<KIND>_GBCS.HEX`` with KIND ``PRECOMMAND``, ``COMMAND``,
``RESPONSE``, or ``ALERT_<what>``. Every file is read and parsed by
:func:`~gateway.gbcs.reader.read_message` when the catalogue loads, so a broken vector stops
the gateway at start, never halfway through a request.

Which use case serves a request (:meth:`RtdsCatalogue.use_case_for`), in order:

1. the SRV's use cases whose vectors address a device of the target's type (the vectors
   address DCC Boxed's devices, :data:`RTDS_DEVICE_TYPES`);
2. among several, the first whose discriminator (:data:`DISCRIMINATORS`, DUIS body elements
   and values that choose the GBCS use case) the request's body satisfies;
3. else the first by name. Some use cases differ only by the *device*, not the request
   (ESME variant or GBCS version: ECS26b/ECS26k, ECS23/ECS23b, ...): a simulated device is
   always the first of them (:data:`DEVICE_VARIANTS` names them; a README limit).

Which vector of the use case (:meth:`RtdsCatalogue.vector`): a SUCCESS scenario (an ERROR
one only when the use case has no other); immediate, future-dated or cancellation as the body's ``ExecutionDateTime`` says;
from a device of the target's type; single before twin.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from gateway.eui64 import Eui64
from gateway.gbcs.apdu import CraFlag
from gateway.gbcs.errors import ApduError
from gateway.gbcs.reader import GbcsMessage, read_message
from gateway.namespaces import SR

_SR = f"{{{SR}}}"
_FILE = re.compile(r"\A(?P<use_case>[^_]+)_(?P<srv>[^_]+)_(?:(?P<scenario>.*?)_)?(?P<kind>PRECOMMAND|COMMAND|RESPONSE|ALERT)(?:_(?P<what>.*?))?_GBCS\.HEX\Z")
MAX_VECTOR_BYTES = 64 * 1024
"""Far above any RTDS vector (the largest is a few KB); a larger file is not a vector."""
CANCELLATION = dt.datetime(3000, 12, 31, tzinfo=dt.UTC)

RTDS_DEVICE_TYPES: Mapping[Eui64, str] = types.MappingProxyType(
    {Eui64.parse(f"00-DB-12-34-56-78-90-{suffix}"): device_type for suffix, device_type in (
        ("A0", "ESME"), ("A1", "GSME"), ("A2", "CHF"), ("A3", "GPF"), ("A4", "PPMID"), ("A5", "HCALCS"), ("A6", "ESME"),
    )}  # fmt: skip
)
"""The DCC Boxed devices the RTDS vectors address, by type (the same as ``gateway.boxed``'s fleet)."""


class CatalogueError(ValueError):
    """The vectors folder is missing, or a file in it is not a readable RTDS vector."""


class VectorKind(enum.StrEnum):
    PRECOMMAND = "PRECOMMAND"
    COMMAND = "COMMAND"
    RESPONSE = "RESPONSE"
    ALERT = "ALERT"


@dataclass(frozen=True, slots=True)
class Vector:
    """One RTDS vector file, read."""

    use_case: str
    srv: str
    scenario: str
    kind: VectorKind
    name: str
    message: GbcsMessage
    device_type: str | None = field(init=False, compare=False, repr=False)
    """The type of the DCC Boxed device it addresses (a command's recipient, else its originator)."""

    def __post_init__(self) -> None:
        # Worked out once, at load: every command a meter runs looks its use case up by these.
        apdu = self.message.apdu
        device = apdu.recipient if apdu.cra_flag is CraFlag.COMMAND else apdu.originator
        object.__setattr__(self, "device_type", RTDS_DEVICE_TYPES.get(device))

    @property
    def is_error(self) -> bool:
        return "ERROR" in self.scenario.split("_")


@dataclass(frozen=True, slots=True)
class UseCase:
    """The vectors of one GBCS use case for one SRV (e.g. ``ECS17b`` for SRV 4.1.1)."""

    name: str
    srv: str
    vectors: tuple[Vector, ...]
    device_types: frozenset[str] = field(init=False, compare=False, repr=False)
    """The device types its commands and responses address."""
    message_code: int | None = field(init=False, compare=False, repr=False)
    """The message code of its commands and responses (alerts have their own)."""
    _by_kind: Mapping[VectorKind, tuple[Vector, ...]] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Worked out once, at load, not at each lookup: a meter's every command looks them up.
        answers = [v for v in self.vectors if v.kind is not VectorKind.ALERT]
        codes = {v.message.message_code for v in answers}
        by_kind = {kind: tuple(v for v in self.vectors if v.kind is kind) for kind in VectorKind}
        object.__setattr__(self, "device_types", frozenset(v.device_type for v in answers if v.device_type is not None))
        object.__setattr__(self, "message_code", min(codes) if codes else None)
        object.__setattr__(self, "_by_kind", types.MappingProxyType(by_kind))

    def of(self, kind: VectorKind) -> tuple[Vector, ...]:
        return self._by_kind[kind]


# --- which use case ---------------------------------------------------------------------------

BodyTest = Callable[[etree._Element], bool]


def has(path: str) -> BodyTest:
    """The body has the element at ``path`` (``sr:`` names, ``/`` between them)."""
    xpath = "./" + "/".join(f"{_SR}{step}" for step in path.split("/"))
    return lambda body: body.find(xpath) is not None


def text_is(path: str, *values: str) -> BodyTest:
    """The element at ``path`` has one of ``values`` as its text (any such element, when several)."""
    xpath = ".//" + "/".join(f"{_SR}{step}" for step in path.split("/"))
    wanted = frozenset(values)
    return lambda body: any((element.text or "").strip() in wanted for element in body.iterfind(xpath))


def both(*tests: BodyTest) -> BodyTest:
    return lambda body: all(test(body) for test in tests)


DISCRIMINATORS: Mapping[str, BodyTest] = types.MappingProxyType({
    # 1.5 Update Meter Balance
    "ECS04a": has("PrepaymentMode/AdjustMeterBalance"), "ECS04b": has("CreditMode/ResetMeterBalance"),
    "GCS40a": has("PrepaymentMode/AdjustMeterBalance"), "GCS40b": has("PrepaymentMode/ResetMeterBalance"),
    "GCS40c": has("CreditMode/AdjustMeterBalance"), "GCS40d": has("CreditMode/ResetMeterBalance"),
    # 1.6 Update Payment Mode
    "ECS02": has("Credit"), "ECS03": has("Prepayment"), "GCS02": has("Credit"), "GCS03": has("Prepayment"),
    # 3.3 Clear Event Log
    "ECS15a": text_is("ESMEEventLogType", "ESME"), "ECS15c": text_is("ESMEEventLogType", "ALCS"),
    # 6.13 Read Event or Security Log
    "ECS35a": text_is("LogToRead", "Event"), "ECS35b": text_is("LogToRead", "Security"),
    "ECS35c": text_is("LogToRead", "Event"), "ECS35d": text_is("LogToRead", "Security"),
    "ECS35e": text_is("LogToRead", "PowerEvent"), "ECS35f": text_is("LogToRead", "ALCSEvent"),
    "ECS35g": text_is("LogToRead", "ALCSEvent"),
    "CS10a": text_is("LogToRead", "Event"), "CS10b": text_is("LogToRead", "Security"),
    # 6.15.1 Update Security Credentials (KRP), 6.21 handover, 6.24.1 retrieve
    "CS02bNOByNO": text_is("RemotePartyRole", "NetworkOperator"),
    "CS02bSupplierBySupplier": text_is("RemotePartyRole", "Supplier"),
    "CS02gLoadControllerBySupplier": text_is("RemotePartyRole", "LoadController"),
    "CS02bNOByNOHandover": text_is("RemotePartyRole", "NetworkOperator"),
    "CS02bSupplierBySupplierHandover": text_is("RemotePartyRole", "Supplier"),
    "CS02fMAC": text_is("RemotePartyRole", "LoadController"),
    "CS02aMAC": lambda body: not text_is("RemotePartyRole", "LoadController")(body),
    # 6.22 Configure Alert Behaviour
    "ECS25a": has("ElectricitySupplierAlerts"), "ECS25a1": has("ElectricitySupplierHANAlertSettings"),
    "ECS25a2": has("ElectricitySupplierAlarmSettings"), "ECS25a3": has("ElectricitySupplierLoggingSettings"),
    "ECS25b": has("ElectricityNetworkOperatorAlerts"), "ECS25b3": has("ElectricityNetworkOperatorLoggingSettings"),
    # 6.5 Update Device Configuration (Voltage)
    "ECS29a": both(has("RMSVoltageSettings"), has("SinglePhaseVoltageSettings")),
    "ECS29b": both(has("RMSVoltageSettings"), has("PolyPhaseVoltageSettings")),
    # 6.7 gas flow, 6.8 billing calendar
    "GCS24a": has("UncontrolledGasFlowRateDecimal"), "GCS24": has("UncontrolledGasFlowRate"),
    "ECS30": has("ElectricityBillingCalendar/Monthly"), "ECS30a": has("ElectricityBillingCalendar/Quarterly"),
    "GCS25": text_is("Periodicity", "Monthly"),
    "GCS25a": lambda body: not text_is("Periodicity", "Monthly")(body),
    # 8.9 Read Device Log, 8.11 Update HAN Device Log
    "CCS07": has("ReadSecurityDetails"),
    "CCS01": text_is("RequestType", "Add"), "CCS02": text_is("RequestType", "Remove"),
})  # fmt: skip
"""GBCS use case -> the DUIS body it answers, where one SRV has several use cases for one device type."""

DEVICE_VARIANTS: tuple[frozenset[str], ...] = tuple(frozenset(group) for group in (
    {"ECS08", "ECS08a"}, {"ECS23", "ECS23b"}, {"GCS60", "GCS60a"}, {"ECS26b", "ECS26k"}, {"ECS26d", "ECS26l"},
    {"GCS21d", "GCS21k"}, {"ECS26e", "ECS26m"}, {"ECS26i", "ECS26n"}, {"GCS21e", "GCS21m"},
    {"ECS25r1", "ECS25r2"}, {"ECS29c", "ECS29a"}, {"ECS29d", "ECS29b"}, {"ECS29e", "ECS29f"},
    {"ECS35f", "ECS35g"}, {"CCS05CCS04", "CCS06"}, {"CS03A2NonCritical", "CS03CNonCritical"},
))  # fmt: skip
"""Use cases that the same DUIS request maps to, chosen by the device (ESME variant, GBCS version,
what it is joined to), not the request: a simulated device answers as the first of its SRV's, by name."""


class RtdsCatalogue:
    """Every RTDS vector, by SRV and use case. Immutable once loaded; safe to share between threads."""

    def __init__(self, use_cases: Iterable[UseCase], source: Path | None = None) -> None:
        ordered = sorted(use_cases, key=lambda u: u.name)
        self._by_name: Mapping[str, UseCase] = types.MappingProxyType({u.name: u for u in ordered})
        by_srv: dict[str, list[UseCase]] = {}
        for use_case in ordered:
            by_srv.setdefault(use_case.srv, []).append(use_case)
        self._by_srv: Mapping[str, tuple[UseCase, ...]] = types.MappingProxyType({k: tuple(v) for k, v in by_srv.items()})
        self.source = source
        self._answering: dict[tuple[str, str], tuple[UseCase, ...]] = {}
        """A memo of :meth:`_answering_use_cases` (each entry the same whichever thread adds it)."""

    @classmethod
    def load(cls, directory: Path) -> RtdsCatalogue:
        """Reads every ``*_GBCS.HEX`` under ``directory``; CatalogueError names the first bad file."""
        if not directory.is_dir():
            raise CatalogueError(f"no RTDS vectors folder at {directory}")
        vectors: dict[tuple[str, str], list[Vector]] = {}
        for path in sorted(directory.glob("*/*_GBCS.HEX")):
            vector = _read_vector(path)
            vectors.setdefault((vector.srv, vector.use_case), []).append(vector)
        if not vectors:
            raise CatalogueError(f"{directory} holds no RTDS vectors (<SRV>_<use case>/*_GBCS.HEX)")
        return cls((UseCase(name, srv, tuple(found)) for (srv, name), found in vectors.items()), directory)

    def __len__(self) -> int:
        return len(self._by_name)

    def use_case(self, name: str) -> UseCase | None:
        return self._by_name.get(name)

    def use_cases(self, srv: str) -> tuple[UseCase, ...]:
        return self._by_srv.get(srv, ())

    def device_types_by_srv(self) -> Mapping[str, frozenset[str]]:
        """SRV -> every device type its use cases' vectors address."""
        return types.MappingProxyType({
            srv: frozenset().union(*(u.device_types for u in use_cases)) for srv, use_cases in self._by_srv.items()
        })  # fmt: skip

    def use_case_for(self, srv: str, device_type: str, body: etree._Element | None) -> UseCase | None:
        """The use case answering ``srv`` on a ``device_type`` with this request ``body`` (None: none has vectors)."""
        for_type = self._answering_use_cases(srv, device_type)
        if len(for_type) <= 1 or body is None:
            return for_type[0] if for_type else None
        chosen = [u for u in for_type if u.name in DISCRIMINATORS and DISCRIMINATORS[u.name](body)]
        return (chosen or for_type)[0]

    def _answering_use_cases(self, srv: str, device_type: str) -> tuple[UseCase, ...]:
        """``srv``'s use cases with a response or Pre-Command: those for ``device_type``, or all of them."""
        found = self._answering.get((srv, device_type))
        if found is None:
            candidates = [u for u in self.use_cases(srv) if u.of(VectorKind.RESPONSE) or u.of(VectorKind.PRECOMMAND)]
            found = tuple([u for u in candidates if device_type in u.device_types] or candidates)
            self._answering[(srv, device_type)] = found
        return found

    def vector(
        self, use_case: UseCase, kind: VectorKind, device_type: str, body: etree._Element | None
    ) -> Vector | None:
        """The use case's vector of ``kind`` that best fits the request (see the module docstring)."""
        timing = _timing(body)

        def rank(vector: Vector) -> tuple[bool, bool, bool, bool, bool, str]:
            words = vector.scenario.split("_")
            return (
                vector.is_error,
                "SUCCESS" not in words,
                bool(timing) and not _has_words(vector.scenario, timing),
                vector.device_type != device_type,
                "TWIN" in words,
                vector.name,
            )

        found = use_case.of(kind)
        return min(found, key=rank) if found else None


def _timing(body: etree._Element | None) -> str:
    """IMMEDIATE, FUTURE_DATED or CANCELLATION, as the body's ExecutionDateTime says ("" for no body)."""
    if body is None:
        return ""
    text = (body.findtext(f"{_SR}ExecutionDateTime") or "").strip()
    if not text:
        return "IMMEDIATE"
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return ""
    return "CANCELLATION" if when == CANCELLATION else "FUTURE_DATED"


def _has_words(scenario: str, words: str) -> bool:
    return f"_{words}_" in f"_{scenario}_"


def _read_vector(path: Path) -> Vector:
    match = _FILE.match(path.name)
    if match is None:
        raise CatalogueError(f"{path.name} is not named <use case>_<SRV>_<scenario>_<KIND>_GBCS.HEX")
    if path.stat().st_size > MAX_VECTOR_BYTES:
        raise CatalogueError(f"{path} is larger than any RTDS vector")
    try:
        message = read_message(bytes.fromhex(path.read_text(encoding="ascii").strip()))
    except (UnicodeDecodeError, ValueError) as exc:  # ApduError is a ValueError
        reason = exc.reason if isinstance(exc, ApduError) else str(exc)
        raise CatalogueError(f"{path} is not a GBCS message in hex: {reason}") from exc
    return Vector(
        use_case=match["use_case"],
        srv=match["srv"],
        scenario=match["scenario"] or "",
        kind=VectorKind(match["kind"]),
        name=path.name,
        message=message,
    )
