"""The one-page report of a run: counts by class, then every miss with its vector's id and why it matters.

:class:`RunReport` holds the outcome of every vector sent; it prints as text
(:meth:`RunReport.write_text`), as JSON (:meth:`RunReport.to_json`) and as
JUnit XML (:meth:`RunReport.write_junit`). A class is a vector's category.
"Why it matters" is the kind of miss, what a miss in that class lets happen,
and the vector's own description and reference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from xml.etree import ElementTree

from vectors.catalogue.model import (
    CATEGORIES,
    CERTIFICATE,
    CONTENT,
    DOCUMENT,
    MALLEABILITY,
    PARSE,
    POSITIVE,
    PROFILE,
    WRAPPING,
)
from vectors.expect import Profile
from vectors.judge import Miss
from vectors.scenario import ACCEPTED, DIRECTIVE, POLICY, POLICY_CATEGORIES, REPLAY

CLASSES = (*CATEGORIES, *POLICY_CATEGORIES)
"""Every class a suite can hold, in report order."""

FRESH_STORE_NOTE = (
    "stateful vectors (those with a 'sequence') expect a fresh store from 'dcc-gateway init' + 'serve': "
    "a second run against the same store meets E40 (replay) where they expect I99"
)

MISS_MEANINGS: Mapping[Miss, str] = {
    Miss.ACCEPTED_ATTACK: "accepted a request it must refuse",
    Miss.REFUSED_VALID: "refused a request it must accept",
    Miss.WRONG_REASON: "gave the right verdict for another reason than the check this vector targets (that check "
    "may be missing, and only a later one stopped it)",
    Miss.NO_VERDICT: "gave no verdict (a crash, a time-out or an answer that is neither a refusal nor a signed "
    "response: on hostile input that is a denial of service and may hide a half-processed request)",
}

CLASS_RISKS: Mapping[str, str] = {
    PARSE: "the parser lets through a construct behind XXE, entity expansion, comment truncation or unbounded "
    "work before the signature is checked",
    DOCUMENT: "a document that is not the Service Request DUIS defines reaches the signature check or the policy",
    WRAPPING: "signature wrapping: the endpoint may act on content nobody signed, next to a valid signature",
    CONTENT: "content changed after signing, or signed by another key, is taken as signed",
    PROFILE: "a signature outside the DUIS profile is verified, and with it the algorithms, references and "
    "transforms that generic XMLDSig verifiers are attacked through",
    MALLEABILITY: "an equivalent encoding of a valid signature is treated differently",
    CERTIFICATE: "a key the SMKI repository does not vouch for as the originator's xmlSign (87) key is trusted",
    POSITIVE: "requests real signers send (DUIS templates, DCC Boxed, xmlsec1, signxml) are refused: users' "
    "requests would fail",
    DIRECTIVE: "the SoLR state changes on a directive MP134B or MP134A part 2 forbids, or not on one they allow",
    POLICY: "the SoLR Contingency role, or a supplier, acts beyond what MP134B allows it",
    REPLAY: "a replayed or re-signed request is executed again",
    ACCEPTED: "a request the policy must allow is refused: prepayment customers stay off supply",
}


@dataclass(frozen=True, slots=True)
class Outcome:
    """One vector sent and judged."""

    id: str
    category: str
    expected: str
    got: str
    miss: Miss | None
    seconds: float
    description: str = ""
    reference: str = ""
    stateful: bool = False
    """A step of the ordered SoLR scenario (its sidecar has a ``sequence``)."""

    @property
    def ok(self) -> bool:
        return self.miss is None

    def why_it_matters(self) -> str:
        if self.miss is None:
            return ""
        risk = CLASS_RISKS.get(self.category, "a wrong verdict")
        return (f"The endpoint {MISS_MEANINGS[self.miss]}; in class {self.category} that means {risk}. "
                f"{self.description} [{self.reference}]")


@dataclass(frozen=True, slots=True)
class ClassCount:
    vectors: int = 0
    passed: int = 0
    missed: int = 0


@dataclass(frozen=True)
class RunReport:
    url: str
    profile: Profile
    outcomes: tuple[Outcome, ...]
    left_out: int = 0
    """Vectors of the suite the profile does not judge (not sent)."""

    @property
    def ok(self) -> bool:
        return all(outcome.ok for outcome in self.outcomes)

    def misses(self) -> list[Outcome]:
        """Worst kind first, then in run order."""
        return [outcome for kind in Miss for outcome in self.outcomes if outcome.miss is kind]

    def classes(self) -> dict[str, ClassCount]:
        counts: dict[str, ClassCount] = {}
        for outcome in self.outcomes:
            count = counts.get(outcome.category, ClassCount())
            counts[outcome.category] = ClassCount(
                count.vectors + 1, count.passed + outcome.ok, count.missed + (not outcome.ok)
            )
        rank = {category: index for index, category in enumerate(CLASSES)}
        return dict(sorted(counts.items(), key=lambda item: rank.get(item[0], len(rank))))

    def notes(self) -> list[str]:
        if any(o.stateful and o.got == "200 E40" and o.miss is not None for o in self.outcomes):
            return [FRESH_STORE_NOTE]
        return []

    # --- text ------------------------------------------------------------------------------------

    def write_text(self, stream: TextIO, *, verbose: bool = False) -> None:
        """Counts by class, then the misses class by class: what a miss there lets happen, and each one."""
        if verbose:
            self._write_every_vector(stream)
        missed = self.misses()
        left_out = f" ({self.left_out} of the suite left out by this profile)" if self.left_out else ""
        print(f"{len(self.outcomes)} vectors against {self.url}, --expect {self.profile.value}{left_out}", file=stream)
        print(f"\n{'class':<14} {'vectors':>7} {'passed':>7} {'missed':>7}", file=stream)
        for category, count in self.classes().items():
            print(f"{category:<14} {count.vectors:>7} {count.passed:>7} {count.missed:>7}", file=stream)
        passed = len(self.outcomes) - len(missed)
        print(f"{'all':<14} {len(self.outcomes):>7} {passed:>7} {len(missed):>7}", file=stream)
        if not missed:
            print("\nno misses", file=stream)
        else:
            print(f"\n{len(missed)} misses: the endpoint", file=stream)
            for kind in Miss:
                count = sum(outcome.miss is kind for outcome in missed)
                if count:
                    print(f"  {kind.value} ({count}): {MISS_MEANINGS[kind]}", file=stream)
            for category in self.classes():
                in_class = [outcome for outcome in missed if outcome.category == category]
                if in_class:
                    risk = CLASS_RISKS.get(category, "a wrong verdict")
                    print(f"\n{category}: a miss here means {risk}", file=stream)
                for outcome in in_class:
                    print(f"  {outcome.miss.value if outcome.miss else ''}  {outcome.id}: expected {outcome.expected}, "
                          f"got {outcome.got}", file=stream)
                    print(f"      {outcome.description} [{outcome.reference}]", file=stream)
        for note in self.notes():
            print(f"\nnote: {note}", file=stream)

    def _write_every_vector(self, stream: TextIO) -> None:
        width = max((len(o.id) for o in self.outcomes), default=10)
        print(f"{'vector':<{width}}  {'class':<12}  {'expected':<34}  {'got':<34}  result", file=stream)
        for o in self.outcomes:
            result = "ok" if o.miss is None else o.miss.value
            print(f"{o.id:<{width}}  {o.category:<12}  {o.expected:<34}  {o.got:<34}  {result}", file=stream)
        print(file=stream)

    # --- JSON and JUnit ----------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        missed = self.misses()
        return {
            "url": self.url,
            "expect": self.profile.value,
            "ok": self.ok,
            "totals": {"vectors": len(self.outcomes), "passed": len(self.outcomes) - len(missed),
                       "missed": len(missed), "left_out": self.left_out},
            "classes": {c: {"vectors": n.vectors, "passed": n.passed, "missed": n.missed}
                        for c, n in self.classes().items()},
            "misses": [
                {"id": o.id, "class": o.category, "kind": o.miss.value if o.miss else None, "expected": o.expected,
                 "got": o.got, "why_it_matters": o.why_it_matters(), "reference": o.reference}
                for o in missed
            ],
            "vectors": [{"id": o.id, "class": o.category, "expected": o.expected, "got": o.got,
                         "result": "ok" if o.miss is None else o.miss.value} for o in self.outcomes],
            "notes": self.notes(),
        }

    def write_junit(self, path: Path) -> None:
        suites = ElementTree.Element("testsuites", name=f"dcc-gateway vectors --expect {self.profile.value}")
        for category in dict.fromkeys(o.category for o in self.outcomes):
            members: Sequence[Outcome] = [o for o in self.outcomes if o.category == category]
            suite = ElementTree.SubElement(
                suites, "testsuite", name=category, tests=str(len(members)),
                failures=str(sum(not o.ok for o in members)), time=f"{sum(o.seconds for o in members):.3f}",
            )
            for o in members:
                case = ElementTree.SubElement(suite, "testcase", classname=f"vectors.{category}", name=o.id,
                                              time=f"{o.seconds:.3f}")
                if o.miss is not None:
                    failure = ElementTree.SubElement(case, "failure", type=o.miss.value,
                                                     message=f"expected {o.expected}, got {o.got}")
                    failure.text = o.why_it_matters() + "\n"
        ElementTree.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)
