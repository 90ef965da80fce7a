"""``gateway.toml``: the gateway's configuration, as frozen dataclasses with safe defaults.

Policy is data (STYLE.md): the SoLR Contingency allow-list, limits and ADT
defaults live here, not in code. Every key is checked: an unknown section or
key is a :class:`ConfigError`, because a misspelt limit that silently falls
back to its default is a security bug nobody sees.

Relative paths (the SQLite store, the eligibility matrix, the XSD) are resolved
against the directory holding ``gateway.toml`` (the world directory).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import tomllib
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

CONFIG_FILE_NAME = "gateway.toml"
SQLITE_PREFIX = "sqlite:///"
_SRV_FORM = re.compile(r"\A\d+(?:\.\d+)+\Z")

ClockMode = Literal["system", "fixed", "accelerated"]
ConsoleSwitch = bool | Literal["loopback"]


class ConfigError(ValueError):
    """``gateway.toml`` is missing, not TOML, or holds an unknown key or a bad value."""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Where the gateway listens."""

    host: str = "127.0.0.1"
    """Listen address. Loopback by default: a simulator should not face a network unasked."""
    port: int = 8079
    """TCP port (DCC Boxed uses 8079). 0 asks the OS for a free port (tests)."""


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """Where the gateway keeps its state."""

    url: str = "sqlite:///store.db"
    """``sqlite:///relative/or/absolute.db`` or ``postgresql://…``. A relative SQLite path is
    resolved against the world directory at load time, so the loaded value is absolute."""

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite database file, or None for PostgreSQL and ``:memory:``."""
        if not self.url.startswith(SQLITE_PREFIX):
            return None
        rest = self.url[len(SQLITE_PREFIX) :]
        return None if rest == ":memory:" else Path(rest)


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """Input limits, enforced at ingress before any parsing or canonicalisation."""

    max_body_bytes: int = 262144
    """Largest request body accepted (HTTP 413 above it). Real DUIS requests are a few KB."""
    max_depth: int = 32
    """Deepest element nesting accepted."""
    max_elements: int = 5000
    """Most elements in one document."""
    max_attributes_per_element: int = 16
    """Caps attributes per element: exclusive C14N is quadratic in them."""
    max_namespace_declarations: int = 32
    """Caps ``xmlns`` declarations in the whole document (canonicalisation cost grows with them)."""


@dataclass(frozen=True, slots=True)
class IngressConfig:
    """Slow clients and floods, bounded where the bytes arrive and before the verifier (issue 16)."""

    header_timeout_seconds: float = 10.0
    """Longest a request's headers may take to arrive, from the connection's opening or, on a
    kept-alive connection, from the request's first byte. Then the connection is closed."""
    body_timeout_seconds: float = 10.0
    """Longest a request's body may take to arrive once its headers are in. Then 408
    ``body-timeout`` and the connection is closed. A DUIS request is a few KB."""
    idle_timeout_seconds: float = 60.0
    """Longest a kept-alive connection may wait for its next request before it is closed."""
    max_connections: int = 1024
    """Open connections, all peers together; one more is answered 503 and closed. Keep it below
    the process's file limit (``ulimit -n``): the store and the outbox need descriptors too."""
    max_connections_per_peer: int = 128
    """Open connections from one peer (IP address); one more is answered 503 and closed. Behind a
    TLS terminator every connection comes from its address: limit per client there."""
    verify_queue: int = 256
    """Requests waiting for the verifier, all peers together. Past it: 503 ``verifier-queue-full``
    with Retry-After. The verifier serves the waiting peers in turn, not in arrival order."""
    verify_queue_per_peer: int = 128
    """Requests of one peer waiting for the verifier; past it that peer's next one gets the 503.
    Waiting costs nothing and a refusal invites an instant retry, so by default one peer's
    connections may all wait: the 503 is for floods from many addresses."""
    originator_in_flight: int = 4
    """Authenticated requests of one originator (User ID) decided at once (store and answer)."""
    originator_queue: int = 128
    """Authenticated requests of one originator waiting for a turn; past it 503
    ``originator-over-share`` with Retry-After, audited."""
    retry_after_seconds: int = 1
    """What the Retry-After header of those 503 answers says."""

    def __post_init__(self) -> None:
        if self.max_connections_per_peer > self.max_connections:
            raise ValueError("max_connections_per_peer cannot exceed max_connections")
        if self.verify_queue_per_peer > self.verify_queue:
            raise ValueError("verify_queue_per_peer cannot exceed verify_queue")


@dataclass(frozen=True, slots=True)
class ClockConfig:
    """The gateway's notion of now (certificate validity, contingency expiry, ADT windows)."""

    mode: ClockMode = "system"
    """``system`` (wall clock), ``fixed`` (stands still at ``start``) or ``accelerated``
    (starts at ``start`` and runs ``rate`` times faster than the wall clock)."""
    start: dt.datetime | None = None
    """The instant a ``fixed`` or ``accelerated`` clock starts at; timezone-aware.
    None means "now" for ``accelerated`` and leaves ``fixed`` to the clock's own default."""
    rate: float = 1.0
    """Speed-up of an ``accelerated`` clock (e.g. 86400 for a day per second)."""

    def __post_init__(self) -> None:
        if self.mode not in ("system", "fixed", "accelerated"):
            raise ValueError(f"mode must be system, fixed or accelerated, not {self.mode!r}")
        if self.start is not None and self.start.tzinfo is None:
            raise ValueError("start needs a UTC offset (e.g. 2026-01-01T00:00:00Z)")
        if not (math.isfinite(self.rate) and self.rate > 0):
            raise ValueError(f"rate must be a positive finite number, not {self.rate!r}")


def _default_sc_allowed_srvs() -> tuple[str, ...]:
    return ("1.6",)


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """Access-control policy data."""

    eligibility_matrix: Path | None = None
    """SRV -> eligible roles matrix (JSON). None (written as ``""``): not configured."""
    sc_allowed_srvs: tuple[str, ...] = field(default_factory=_default_sc_allowed_srvs)
    """Service Reference Variants the SoLR Contingency (``SC``) role may send
    (MP134B requirement 3: Update Payment Mode only, configurable)."""
    contingency_max_days: int = 90
    """Longest contingency enablement after the SoLR appointment (MP134A part 2: 90 days)."""


def _default_thresholds() -> Mapping[str, int]:
    return types.MappingProxyType({"1.6": 100})


@dataclass(frozen=True, slots=True)
class AdtConfig:
    """Anomaly detection defaults, used until an ARO submits an ADT file."""

    default_window_seconds: int = 3600
    """Length of the counting window."""
    default_thresholds: Mapping[str, int] = field(default_factory=_default_thresholds, hash=False)
    """Most requests per SRV per window before quarantine (read-only mapping)."""


@dataclass(frozen=True, slots=True)
class SchemaConfig:
    """XML schema validation."""

    duis_xsd: Path | None = None
    """The official DUIS XSD to validate against as well; None (written as ``""``): not used."""


@dataclass(frozen=True, slots=True)
class SimulationConfig:
    """Simulation-only features."""

    expose_devices: bool = True
    """Serve ``GET /sim/devices/{id}``. Turn off to make the gateway look like production."""
    console: ConsoleSwitch = "loopback"
    """Serve the read-only ``GET /console`` page and its JSON: ``"loopback"`` (only while the gateway
    listens on a loopback address, and only to connections that arrive on one), ``true`` (on any
    address: whoever reaches the port sees the fleet, the registry and recent traffic) or ``false``."""
    gbcs_vectors: Path | None = None
    """The RTDS GBCS vectors folder (``shared/gbcs/rtds-4.5.0``, read in place) the simulated devices
    answer from, and CV4 Pre-Commands are made from (but SR 1.6's); None (``""``): SR 1.6 only."""

    def __post_init__(self) -> None:
        if not (isinstance(self.console, bool) or self.console == "loopback"):  # 1 == True: test the type
            raise ValueError(f'console must be true, false or "loopback", not {self.console!r}')


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """The whole of ``gateway.toml``."""

    server: ServerConfig = field(default_factory=ServerConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    ingress: IngressConfig = field(default_factory=IngressConfig)
    clock: ClockConfig = field(default_factory=ClockConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    adt: AdtConfig = field(default_factory=AdtConfig)
    schema: SchemaConfig = field(default_factory=SchemaConfig)
    simulation: SimulationConfig = field(default_factory=SimulationConfig)


# --- readers: one per value type; each checks the raw TOML value and converts it -----

Reader = Callable[[object, str, Path], object]


def _string(value: object, where: str, base_dir: Path) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a string, not {type(value).__name__}")
    return value


def _boolean(value: object, where: str, base_dir: Path) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where} must be true or false, not {value!r}")
    return value


def _positive_integer(value: object, where: str, base_dir: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where} must be a positive integer, not {value!r}")
    return value


def _port(value: object, where: str, base_dir: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise ConfigError(f"{where} must be a TCP port number (0-65535), not {value!r}")
    return value


def _number(value: object, where: str, base_dir: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where} must be a number, not {value!r}")
    return float(value)


def _positive_seconds(value: object, where: str, base_dir: Path) -> float:
    seconds = _number(value, where, base_dir)
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(f"{where} must be a positive number of seconds, not {value!r}")
    return seconds


def _srv(value: object, where: str) -> str:
    if not isinstance(value, str) or not _SRV_FORM.match(value):
        raise ConfigError(f'{where} must hold Service Reference Variants such as "1.6", not {value!r}')
    return value


def _srv_list(value: object, where: str, base_dir: Path) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ConfigError(f'{where} must be a list of SRVs such as ["1.6"]')
    return tuple(_srv(item, where) for item in value)


def _thresholds(value: object, where: str, base_dir: Path) -> Mapping[str, int]:
    if not isinstance(value, dict):
        raise ConfigError(f'{where} must be a table such as {{"1.6" = 100}}')
    checked = {_srv(key, where): _positive_integer(count, f"{where}.{key}", base_dir) for key, count in value.items()}
    return types.MappingProxyType(dict(sorted(checked.items())))


def _optional_path(value: object, where: str, base_dir: Path) -> Path | None:
    text = _string(value, where, base_dir)
    if not text:
        return None
    path = Path(text).expanduser()
    return path if path.is_absolute() else base_dir / path


def _console_switch(value: object, where: str, base_dir: Path) -> bool | str:
    if isinstance(value, bool) or value == "loopback":
        return value  # type: ignore[return-value]  # narrowed by the test above
    raise ConfigError(f'{where} must be true, false or "loopback", not {value!r}')


def _clock_mode(value: object, where: str, base_dir: Path) -> str:
    if value not in ("system", "fixed", "accelerated"):
        raise ConfigError(f'{where} must be "system", "fixed" or "accelerated", not {value!r}')
    return value


def _optional_datetime(value: object, where: str, base_dir: Path) -> dt.datetime | None:
    if value == "":
        return None
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError as exc:
            raise ConfigError(f"{where} is not an ISO 8601 date-time: {value!r}") from exc
    if not isinstance(value, dt.datetime):
        raise ConfigError(f"{where} must be an ISO 8601 date-time, not {value!r}")
    if value.tzinfo is None:
        raise ConfigError(f"{where} needs a UTC offset (e.g. 2026-01-01T00:00:00Z)")
    return value


def _store_url(value: object, where: str, base_dir: Path) -> str:
    url = _string(value, where, base_dir)
    if not url.startswith((SQLITE_PREFIX, "postgresql://", "postgres://")):
        raise ConfigError(f"{where} must start with sqlite:/// or postgresql://, not {url!r}")
    return url


@dataclass(frozen=True, slots=True)
class _Section:
    name: str
    cls: type[Any]
    readers: tuple[tuple[str, Reader], ...]


def _sections() -> tuple[_Section, ...]:
    """The schema of ``gateway.toml``: section, dataclass, and a reader per key."""
    integer = _positive_integer
    return (
        _Section("server", ServerConfig, (("host", _string), ("port", _port))),
        _Section("store", StoreConfig, (("url", _store_url),)),
        _Section(
            "limits",
            LimitsConfig,
            tuple((f.name, integer) for f in fields(LimitsConfig)),
        ),
        _Section(
            "ingress",
            IngressConfig,
            (
                ("header_timeout_seconds", _positive_seconds),
                ("body_timeout_seconds", _positive_seconds),
                ("idle_timeout_seconds", _positive_seconds),
                ("max_connections", integer),
                ("max_connections_per_peer", integer),
                ("verify_queue", integer),
                ("verify_queue_per_peer", integer),
                ("originator_in_flight", integer),
                ("originator_queue", integer),
                ("retry_after_seconds", integer),
            ),
        ),
        _Section("clock", ClockConfig, (("mode", _clock_mode), ("start", _optional_datetime), ("rate", _number))),
        _Section(
            "policy",
            PolicyConfig,
            (
                ("eligibility_matrix", _optional_path),
                ("sc_allowed_srvs", _srv_list),
                ("contingency_max_days", integer),
            ),
        ),
        _Section("adt", AdtConfig, (("default_window_seconds", integer), ("default_thresholds", _thresholds))),
        _Section("schema", SchemaConfig, (("duis_xsd", _optional_path),)),
        _Section(
            "simulation",
            SimulationConfig,
            (("expose_devices", _boolean), ("console", _console_switch), ("gbcs_vectors", _optional_path)),
        ),
    )


def _refuse_unknown(table: Mapping[str, object], known: list[str], where: str) -> None:
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ConfigError(f"unknown {where}: {', '.join(unknown)} (known: {', '.join(known)})")


def _parse_section(section: _Section, table: object, base_dir: Path) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(f"[{section.name}] must be a table")
    readers = dict(section.readers)
    _refuse_unknown(table, list(readers), f"key(s) in [{section.name}]")
    values = {key: readers[key](value, f"{section.name}.{key}", base_dir) for key, value in table.items()}
    try:
        return section.cls(**values)
    except ValueError as exc:
        raise ConfigError(f"[{section.name}] {exc}") from exc


def _resolve_store_url(url: str, base_dir: Path) -> str:
    """``sqlite:///store.db`` -> ``sqlite:////abs/world/store.db``; other URLs unchanged."""
    if not url.startswith(SQLITE_PREFIX):
        return url
    rest = url[len(SQLITE_PREFIX) :]
    if rest == ":memory:" or Path(rest).is_absolute():
        return url
    return SQLITE_PREFIX + str((base_dir / rest).resolve())


def parse_config(raw: Mapping[str, object], *, base_dir: Path) -> GatewayConfig:
    """Builds a :class:`GatewayConfig` from parsed TOML; relative paths resolve against ``base_dir``."""
    sections = _sections()
    _refuse_unknown(raw, [section.name for section in sections], "section(s)")
    parsed = {section.name: _parse_section(section, raw.get(section.name, {}), base_dir) for section in sections}
    config = GatewayConfig(**parsed)
    return replace(config, store=StoreConfig(_resolve_store_url(config.store.url, base_dir)))


def config_path(path: Path) -> Path:
    """``path`` itself, or ``path/gateway.toml`` when ``path`` is a directory."""
    return path / CONFIG_FILE_NAME if path.is_dir() else path


def load_config(path: Path) -> GatewayConfig:
    """Reads ``gateway.toml`` (or ``DIR/gateway.toml``); raises :class:`ConfigError` on any problem."""
    path = config_path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    return parse_config(raw, base_dir=path.parent.resolve())


# --- writing ---------------------------------------------------------------------------


def _raw_value(value: object) -> object:
    """A dataclass value as it is written in TOML (None -> "" meaning "not set")."""
    if value is None:
        return ""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    return value


def default_tables() -> dict[str, dict[str, object]]:
    """Every section and key with its default, as raw TOML values."""
    defaults = GatewayConfig()
    return {
        section.name: {key: _raw_value(getattr(getattr(defaults, section.name), key)) for key, _ in section.readers}
        for section in _sections()
    }


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid TOML basic-string escapes
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise ConfigError(f"cannot write {value!r} to TOML")


def render_config(tables: Mapping[str, Mapping[str, object]]) -> str:
    """TOML text for ``tables``, one commented section per dataclass."""
    lines = ['# dcc-gateway configuration (SPEC §7). Unknown keys are errors; "" means not set.', ""]
    for section in _sections():
        doc = (section.cls.__doc__ or "").strip().splitlines()[0]
        lines += [f"# {doc}", f"[{section.name}]"]
        lines += [f"{key} = {_toml_value(value)}" for key, value in tables[section.name].items()]
        lines.append("")
    return "\n".join(lines)


def _merge_overrides(overrides: Mapping[str, Mapping[str, object]]) -> dict[str, dict[str, object]]:
    tables = default_tables()
    _refuse_unknown(overrides, list(tables), "section(s)")
    for name, values in overrides.items():
        _refuse_unknown(values, list(tables[name]), f"key(s) in [{name}]")
        tables[name].update({key: _raw_value(value) for key, value in values.items()})
    return tables


def write_default_config(path: Path, **overrides: Mapping[str, object]) -> GatewayConfig:
    """Writes a complete ``gateway.toml`` with every key at its default except ``overrides``.

    ``overrides`` maps a section to its keys, e.g.
    ``write_default_config(p, policy={"eligibility_matrix": "/x.json"})``. The text
    is validated before it is written and the loaded result is returned.
    """
    path = config_path(path)
    text = render_config(_merge_overrides(overrides))
    parse_config(tomllib.loads(text), base_dir=path.parent.resolve())
    path.write_text(text, encoding="utf-8")
    return load_config(path)
