"""A generated suite on disk: ``OUT/<id>.xml`` to send, ``OUT/<id>.json`` (its sidecar) saying what to expect.

A sidecar holds ``id``, ``category``, ``description``, ``reference``,
``endpoint`` (the DCC Boxed path to POST to) and ``expect`` (see
:class:`vectors.judge.Expectation`); a catalogue vector also holds
``strict_duis`` (``refuse``/``accept``) or ``outside_strict_duis`` (why that
profile leaves it out), a stateful one ``sequence`` (its place in the run) and
``relies_on``. ``suite.json`` describes the whole suite, ``skipped.json`` lists
the vectors not generated and why, ``imported-certificates.pem`` the extra
certificates the world's repository was given.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vectors.expect import Profile
from vectors.judge import Expectation

INDEX = "suite.json"
SKIPPED = "skipped.json"
IMPORTED_CERTIFICATES = "imported-certificates.pem"
NOT_SIDECARS = frozenset({INDEX, SKIPPED})


class SuiteError(ValueError):
    """The world or the suite directory cannot be used."""


@dataclass(frozen=True, slots=True)
class SuiteVector:
    """One vector of a suite, read back from its sidecar."""

    id: str
    category: str
    description: str
    reference: str
    endpoint: str
    expectation: Expectation
    xml: Path
    sequence: int | None = None
    """Its place in the ordered SoLR scenario; None for the catalogue's vectors, which stand alone."""

    @classmethod
    def read(cls, sidecar_path: Path) -> SuiteVector:
        sidecar = json.loads(sidecar_path.read_text(encoding="utf-8"))
        try:
            return cls(
                id=sidecar["id"],
                category=sidecar.get("category", "?"),
                description=sidecar.get("description", ""),
                reference=sidecar.get("reference", ""),
                endpoint=sidecar["endpoint"],
                expectation=Expectation.from_sidecar(sidecar),
                xml=sidecar_path.with_suffix(".xml"),
                sequence=sidecar.get("sequence"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SuiteError(f"{sidecar_path}: not a vector sidecar ({type(exc).__name__}: {exc})") from exc

    @property
    def stateful(self) -> bool:
        return self.sequence is not None

    def judged_by(self, profile: Profile) -> bool:
        return profile is Profile.OURS or self.expectation.strict_duis is not None


def load_suite(out: Path) -> list[SuiteVector]:
    """The suite in run order: the catalogue's vectors by file name, then the scenario's by ``sequence``."""
    vectors = [SuiteVector.read(path) for path in sorted(out.glob("*.json")) if path.name not in NOT_SIDECARS]
    if not vectors:
        raise SuiteError(f"{out}: no vectors (run 'dcc-gateway vectors generate' first)")
    return sorted(vectors, key=lambda vector: (vector.sequence or 0, vector.xml.name))


def write_vector(out: Path, sidecar: Mapping[str, Any], data: bytes) -> None:
    vector_id = sidecar["id"]
    (out / f"{vector_id}.xml").write_bytes(data)
    write_json(out / f"{vector_id}.json", sidecar)


def write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
