"""The run report (vectors.report): counts by class, every miss with why it matters, as text, JSON and JUnit."""

from __future__ import annotations

import io
from pathlib import Path

from lxml import etree

from vectors import Miss, Outcome, Profile, RunReport
from vectors.report import CLASS_RISKS, FRESH_STORE_NOTE, MISS_MEANINGS


def outcome(vector_id: str, category: str, miss: Miss | None = None, *, got: str = "401 x",
            stateful: bool = False) -> Outcome:
    return Outcome(vector_id, category, "401 x", got, miss, 0.01, description=f"{vector_id} described.",
                   reference=f"ref-{vector_id}", stateful=stateful)


REPORT = RunReport(
    url="http://127.0.0.1:8079",
    profile=Profile.OURS,
    outcomes=(
        outcome("positive-ok", "positive"),
        outcome("parse-ok", "parse"),
        outcome("odd-class", "not-a-class", Miss.WRONG_REASON),
        outcome("profile-wrong", "profile", Miss.WRONG_REASON),
        outcome("profile-hole", "profile", Miss.ACCEPTED_ATTACK, got="200 E40"),
        outcome("policy-replayed", "policy", Miss.REFUSED_VALID, got="200 E40", stateful=True),
    ),
    left_out=3,
)


def test_classes_are_counted_in_report_order() -> None:
    classes = REPORT.classes()
    assert list(classes) == ["parse", "profile", "positive", "policy", "not-a-class"]
    assert (classes["profile"].vectors, classes["profile"].passed, classes["profile"].missed) == (2, 0, 2)
    assert (classes["parse"].vectors, classes["parse"].passed, classes["parse"].missed) == (1, 1, 0)


def test_misses_come_worst_kind_first_then_in_run_order() -> None:
    assert [o.id for o in REPORT.misses()] == ["profile-hole", "policy-replayed", "odd-class", "profile-wrong"]
    assert not REPORT.ok
    assert RunReport("u", Profile.OURS, (outcome("a", "parse"),)).ok


def test_why_it_matters_names_the_kind_the_class_risk_the_vector_and_its_reference() -> None:
    why = outcome("profile-hole", "profile", Miss.ACCEPTED_ATTACK).why_it_matters()
    assert why.startswith(f"The endpoint {MISS_MEANINGS[Miss.ACCEPTED_ATTACK]}; in class profile that means ")
    assert CLASS_RISKS["profile"] in why and why.endswith("profile-hole described. [ref-profile-hole]")
    assert outcome("ok", "profile").why_it_matters() == ""


def test_text_is_counts_then_misses_by_class() -> None:
    stream = io.StringIO()
    REPORT.write_text(stream)
    text = stream.getvalue()
    assert text.startswith("6 vectors against http://127.0.0.1:8079, --expect ours (3 of the suite left out")
    assert "\nprofile              2       0       2\n" in text
    assert "\nall                  6       2       4\n" in text
    assert f"  accepted-attack (1): {MISS_MEANINGS[Miss.ACCEPTED_ATTACK]}\n" in text
    assert f"\nprofile: a miss here means {CLASS_RISKS['profile']}\n" in text
    assert ("  accepted-attack  profile-hole: expected 401 x, got 200 E40\n"
            "      profile-hole described. [ref-profile-hole]") in text
    assert text.index("profile-hole:") < text.index("profile-wrong:")
    assert f"note: {FRESH_STORE_NOTE}" in text  # a stateful vector met E40
    assert "positive-ok" not in text  # passes are counted, not listed (one page)


def test_verbose_text_lists_every_vector_first() -> None:
    stream = io.StringIO()
    REPORT.write_text(stream, verbose=True)
    lines = stream.getvalue().splitlines()
    assert lines[0].split() == ["vector", "class", "expected", "got", "result"]
    assert lines[1].split()[0] == "positive-ok" and lines[1].split()[-1] == "ok"
    assert any(line.split()[0] == "profile-hole" and line.endswith("accepted-attack") for line in lines[1:7])


def test_json_carries_the_counts_the_misses_and_every_vector() -> None:
    document = REPORT.to_json()
    assert document["totals"] == {"vectors": 6, "passed": 2, "missed": 4, "left_out": 3}
    assert document["classes"]["profile"] == {"vectors": 2, "passed": 0, "missed": 2}
    first = document["misses"][0]
    assert first == {"id": "profile-hole", "class": "profile", "kind": "accepted-attack", "expected": "401 x",
                     "got": "200 E40", "why_it_matters": REPORT.misses()[0].why_it_matters(),
                     "reference": "ref-profile-hole"}
    assert [v["result"] for v in document["vectors"]][:2] == ["ok", "ok"]
    assert document["notes"] == [FRESH_STORE_NOTE] and document["ok"] is False


def test_junit_has_a_suite_per_class_and_a_typed_failure_per_miss(tmp_path: Path) -> None:
    path = tmp_path / "report.xml"
    REPORT.write_junit(path)
    suites = {s.get("name"): s for s in etree.parse(str(path)).iter("testsuite")}
    assert suites["profile"].get("tests") == "2" and suites["profile"].get("failures") == "2"
    failures = {case.get("name"): case.find("failure") for case in suites["profile"].iter("testcase")}
    assert failures["profile-hole"].get("type") == "accepted-attack"  # type: ignore[union-attr]
    assert suites["parse"].get("failures") == "0"
