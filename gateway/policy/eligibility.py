"""SRV eligibility, loaded as data from the real DUIS matrix (SPEC §1).

Each Service Reference Variant carries its eligible User Roles, whether it is
critical and whether it is a non-device request. The SoLR Contingency role
(``SC``) is not in the matrix: its allow-list is configuration, default
``["1.6"]`` (MP134B requirement 3), and an SRV in the allow-list must exist
in the matrix.

Device types (convention): DUIS lists each SRV's eligible roles, and the
roles say which fuel the SRV concerns. An SRV eligible only to electricity
roles (IS, ES, ED) applies to ESMEs, only to gas roles (GS, GT) to GSMEs,
otherwise to both; roles with no fuel (OU, RSA) do not decide. The RTDS GBCS
vectors, where configured, add the device types their use cases of the SRV
address (a comms hub for 8.11, a gas proxy for 4.1.1, a PPMID for 8.7.2, ...):
``with_device_types``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

ELECTRICITY_ROLES = frozenset({"IS", "ES", "ED"})
GAS_ROLES = frozenset({"GS", "GT"})
CONTINGENCY_ROLE = "SC"


class EligibilityError(ValueError):
    """The matrix file is unreadable or inconsistent with the configuration."""


@dataclass(frozen=True, slots=True)
class ServiceVariant:
    variant: str
    name: str
    critical: bool
    non_device: bool
    roles: frozenset[str]
    vector_device_types: frozenset[str] = frozenset()
    """The device types the RTDS vectors of the SRV's use cases address."""

    @property
    def device_types(self) -> frozenset[str]:
        if self.non_device:
            return frozenset()
        electricity = bool(self.roles & ELECTRICITY_ROLES)
        gas = bool(self.roles & GAS_ROLES)
        if electricity and not gas:
            meters = frozenset({"ESME"})
        elif gas and not electricity:
            meters = frozenset({"GSME"})
        else:
            meters = frozenset({"ESME", "GSME"})
        return meters | self.vector_device_types


@dataclass(frozen=True)
class Eligibility:
    variants: Mapping[str, ServiceVariant]
    contingency_allowed: frozenset[str]

    @classmethod
    def load(cls, path: Path, contingency_allowed: Iterable[str] = ("1.6",)) -> Eligibility:
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise EligibilityError(f"cannot read the SRV eligibility matrix {path}: {exc}") from exc
        return cls.from_rows(rows, contingency_allowed, source=str(path))

    @classmethod
    def from_rows(cls, rows: object, contingency_allowed: Iterable[str], *, source: str = "<rows>") -> Eligibility:
        if not isinstance(rows, list):
            raise EligibilityError(f"{source}: expected a list of SRV rows")
        variants: dict[str, ServiceVariant] = {}
        for row in rows:
            try:
                variant = ServiceVariant(
                    variant=str(row["Service Reference Variant"]),
                    name=str(row["Service Request Name"]),
                    critical=row["Critical"] == "Yes",
                    non_device=row["Non-Device Request"] == "Yes",
                    roles=frozenset(str(role) for role in row["Eligible User Roles"]),
                )
            except (KeyError, TypeError) as exc:
                raise EligibilityError(f"{source}: malformed row {row!r}") from exc
            variants[variant.variant] = variant
        allowed = frozenset(contingency_allowed)
        unknown = sorted(allowed - variants.keys())
        if unknown:
            raise EligibilityError(f"SC allow-list names SRVs not in the matrix: {unknown}")
        return cls(variants, allowed)

    def variant(self, srv: str) -> ServiceVariant | None:
        return self.variants.get(srv)

    def with_device_types(self, device_types: Mapping[str, frozenset[str]]) -> Eligibility:
        """The same matrix, each SRV also applying to ``device_types[srv]`` (from the RTDS vectors)."""
        variants = {
            srv: replace(variant, vector_device_types=device_types.get(srv, frozenset()))
            for srv, variant in self.variants.items()
        }
        return Eligibility(variants, self.contingency_allowed)

    def permits(self, role: str, variant: ServiceVariant) -> bool:
        if role == CONTINGENCY_ROLE:
            return variant.variant in self.contingency_allowed
        return role in variant.roles
