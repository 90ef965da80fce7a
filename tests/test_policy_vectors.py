"""The stateful policy/replay/acceptance vectors: their counter plan, coverage of MP134B, and the runner.

The vectors' verdicts against a live gateway are checked end to end in
``tests/test_vectors_cli.py``; here: what must hold of the generated scenario
before it is ever sent (counters, ADT threshold, authentication, order), the
independent replay-plan checker on hand-made plans, and the runner's ordering
(judging answers: ``tests/test_vectors_judge.py``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from pathlib import Path

import pytest
from lxml import etree

from gateway.clock import FixedClock
from gateway.manifest import Manifest, load_manifest
from gateway.namespaces import DS
from gateway.policy import directives as d
from gateway.runtime import open_world
from gateway.world import init_world
from vectors.generate import run_order_errors
from vectors.report import CLASSES
from vectors.scenario import (
    ADMIN,
    COUNTER_START,
    POLICY,
    POLICY_CATEGORIES,
    REPLAY,
    SRP_ARO,
    SRP_SC,
    CounterSource,
    PlannedRequest,
    ScenarioUnavailable,
    ScenarioWorld,
    StatefulVector,
    build_policy_vectors,
    plan_errors,
    read_planned,
)
from vectors.suite import load_suite

NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
MP134B_REQUIREMENTS_WITH_REQUESTS = range(1, 7)
"""R1-R6. R7 (alerts routed to the SRP) is about what the gateway sends, not what it accepts."""


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("policy-vectors") / "world"
    init_world(directory, devices=20)
    return directory


@pytest.fixture(scope="module")
def manifest(world_dir: Path) -> Manifest:
    return load_manifest(world_dir)


@pytest.fixture(scope="module")
def scenario(manifest: Manifest) -> list[StatefulVector]:
    return build_policy_vectors(ScenarioWorld.from_manifest(manifest), CounterSource(COUNTER_START), NOW)


def _planned(vectors: list[StatefulVector]) -> list[PlannedRequest]:
    planned = []
    for vector in vectors:
        code = vector.expect.get("response_code")
        if code is None:
            continue
        request = read_planned(vector.id, vector.data, str(code))
        assert request is not None, vector.id
        planned.append(request)
    return planned


# --- the counter source and the replay-plan checker ------------------------------------------


def test_counter_source_hands_out_strictly_increasing_counters() -> None:
    counters = CounterSource(7)
    drawn = [counters.next() for _ in range(5)]
    assert drawn == sorted(set(drawn)) and drawn[0] == 7
    assert counters.issued == drawn
    with pytest.raises(ValueError):
        CounterSource(-1)


def _req(vector_id: str, counter: int, code: str, *, target: str = "T", cv: int = 1) -> PlannedRequest:
    return PlannedRequest(vector_id, "O", target, counter, cv, code)


@pytest.mark.parametrize(
    ("plan", "complaint"),
    [
        pytest.param([_req("a", 5, "I99"), _req("b", 5, "I99")], "b: expects I99", id="same-counter-twice"),
        pytest.param([_req("a", 5, "I99"), _req("b", 4, "I0", cv=4)], "b: expects I0", id="lower-counter-accepted"),
        pytest.param([_req("a", 9, "*"), _req("b", 5, "I99")], "b: expects I99", id="below-a-maybe-accepted-vector"),
        pytest.param([_req("a", 9, "*"), _req("b", 9, "E40")], "b: expects E40", id="replay-of-a-maybe-accepted"),
        pytest.param([_req("b", 3, "E40")], "b: expects E40", id="replay-of-nothing"),
        pytest.param([_req("a", 5, "E43"), _req("b", 5, "I99")], "b: expects I99", id="quarantine-consumes"),
        pytest.param([_req("b", 5, "I99", cv=5)], "b: expects I99 for a Signed", id="cv5-without-cv4"),
        pytest.param(
            [_req("a", 5, "I0", cv=4), _req("b", 5, "E42", cv=5), _req("c", 5, "I99", cv=5)],
            "c: expects I99 for a Signed",
            id="cv5-after-its-precommand-was-taken",
        ),
    ],
)
def test_plan_errors_name_the_vector_that_cannot_get_its_code(plan: list[PlannedRequest], complaint: str) -> None:
    errors = plan_errors(plan)
    assert len(errors) == 1 and errors[0].startswith(complaint), errors


def test_a_consistent_plan_has_no_errors() -> None:
    plan = [
        _req("star", 1000, "*"),
        _req("a", 2000, "I99"),
        _req("again", 2000, "E40"),
        _req("lower", 1999, "E40"),
        _req("other-target", 2000, "I99", target="U"),
        _req("cv4", 2001, "I0", cv=4),
        _req("cv5", 2001, "I99", cv=5),
        _req("refused", 1, "E41"),
    ]
    assert plan_errors(plan) == []


def test_read_planned_reads_the_request_id_back_from_the_bytes(scenario: list[StatefulVector], manifest: Manifest) -> None:
    first = next(v for v in scenario if v.endpoint != ADMIN)
    planned = read_planned(first.id, first.data, "I99")
    assert planned is not None
    root = etree.fromstring(first.data)
    assert f"{planned.originator}:{planned.target}:{planned.counter}" in etree.tostring(root).decode()
    assert read_planned("x", b"<not-closed", "I99") is None
    directive = next(v for v in scenario if v.endpoint == ADMIN)
    assert read_planned(directive.id, directive.data, "I99") is None


# --- the generated scenario ------------------------------------------------------------------


@pytest.mark.parametrize("requirement", MP134B_REQUIREMENTS_WITH_REQUESTS)
def test_every_mp134b_requirement_has_a_negative_request_vector(
    scenario: list[StatefulVector], requirement: int
) -> None:
    cites = re.compile(rf"MP134B[^;]*\bR{requirement}\b")
    negatives = [
        v
        for v in scenario
        if v.category == POLICY and str(v.expect.get("response_code", "")).startswith("E") and cites.search(v.reference)
    ]
    assert negatives, f"no policy vector refuses a request under MP134B R{requirement}"


def test_scenario_covers_every_policy_category_and_the_policy_codes(scenario: list[StatefulVector]) -> None:
    assert {v.category for v in scenario} == set(POLICY_CATEGORIES)
    assert set(POLICY_CATEGORIES) <= set(CLASSES)
    codes = {v.expect.get("response_code") for v in scenario}
    assert {"I99", "I0", "E1", "E2", "E3", "E4", "E12", "E40", "E41", "E42", "E43"} <= codes
    verdicts = {v.expect.get("accepted") for v in scenario if v.endpoint == ADMIN}
    assert verdicts == {True, False}


def test_scenario_counters_can_all_come_true_against_a_fresh_store(scenario: list[StatefulVector]) -> None:
    assert plan_errors(_planned(scenario)) == []


def test_adt_threshold_is_the_number_of_sc_admissions_before_the_quarantined_request(
    scenario: list[StatefulVector], manifest: Manifest
) -> None:
    sc = str(manifest.actor(SRP_SC).user_id)
    aro = str(manifest.actor(SRP_ARO).user_id)
    adt = [v for v in scenario if v.endpoint == ADMIN and v.expect["accepted"] and b'name="submit-adt"' in v.data]
    assert len(adt) == 1
    root = etree.fromstring(adt[0].data)
    assert root.findtext("{*}DirectiveID", "").startswith(aro)
    thresholds = json.loads(root.findtext('{*}Command/{*}Argument[@name="thresholds"]') or "{}")
    quarantined = next(i for i, v in enumerate(scenario) if v.expect.get("response_code") == "E43")
    admitted = [
        p
        for p in _planned(scenario[:quarantined])
        if p.originator == sc and (p.expected_code == "I0" or (p.expected_code == "I99" and p.command_variant <= 3))
    ]
    assert thresholds == {"1.6": len(admitted)} and admitted
    assert scenario.index(adt[0]) < min(scenario.index(next(v for v in scenario if v.id == p.vector_id)) for p in admitted)


def test_every_request_vector_authenticates_as_its_originator(
    scenario: list[StatefulVector], world_dir: Path
) -> None:
    """None of these vectors is about authentication: the gateway's own verifier must pass each one."""
    verifier = open_world(world_dir).verifier(FixedClock(NOW))
    for vector in scenario:
        if vector.endpoint == ADMIN:
            verified_directive = verifier.verify_directive(vector.data)
            assert d.parse_directive(verified_directive) is not None, vector.id
            continue
        verified = verifier.verify_request(vector.data)
        assert verified.signer.eui64 == verified.originator, vector.id


def test_relies_on_names_only_earlier_vectors(scenario: list[StatefulVector]) -> None:
    seen: set[str] = set()
    for vector in scenario:
        assert set(vector.relies_on) <= seen, (vector.id, set(vector.relies_on) - seen)
        seen.add(vector.id)
    for vector in scenario:
        if vector.category == REPLAY:
            assert any(not name.startswith("directive-") for name in vector.relies_on), vector.id


def test_scenario_is_a_pure_function_of_the_world_and_now(scenario: list[StatefulVector], manifest: Manifest) -> None:
    again = build_policy_vectors(ScenarioWorld.from_manifest(manifest), CounterSource(COUNTER_START), NOW)
    assert [(v.id, v.data) for v in again] == [(v.id, v.data) for v in scenario]


def test_malleated_replay_differs_only_in_its_signature_value(scenario: list[StatefulVector], world_dir: Path) -> None:
    by_id = {v.id: v for v in scenario}
    original, malleated = by_id["accepted-supplier-gs-smets1-credit"].data, by_id["replay-malleated-signature"].data
    assert original != malleated
    value = f"{{{DS}}}Signature/{{{DS}}}SignatureValue"
    one, two = etree.fromstring(original), etree.fromstring(malleated)
    assert one.findtext(value) != two.findtext(value)
    one.find(value).text = two.find(value).text  # type: ignore[union-attr]
    assert etree.tostring(one) == etree.tostring(two)
    verifier = open_world(world_dir).verifier(FixedClock(NOW))
    assert verifier.verify_request(malleated).request_id == verifier.verify_request(original).request_id


def test_generation_refuses_a_scenario_that_a_catalogue_vector_may_have_replayed(
    scenario: list[StatefulVector],
) -> None:
    """A catalogue vector that may be accepted (any code) on the same originator and target, earlier in the
    run and with a counter as high, would turn the scenario's first I99 into E40: generation must say so."""
    first = scenario[0]
    assert first.expect == {"http_status": 200, "response_code": "I99"}
    catalogue = {"zz-same-counter": (first.data, {"http_status": 200, "response_code": "*"})}
    problems = run_order_errors(catalogue, scenario, None)
    assert len(problems) == 1 and problems[0].startswith(f"{first.id}: expects I99"), problems
    assert run_order_errors({}, scenario, None) == []


def test_a_world_without_the_meters_has_no_scenario(manifest: Manifest) -> None:
    with pytest.raises(ScenarioUnavailable, match="SMETS1 GSME"):
        ScenarioWorld.from_manifest(dataclasses.replace(manifest, devices=()))


# --- the runner --------------------------------------------------------------------------------


def _write(out: Path, vector_id: str, **extra: object) -> None:
    sidecar = {"id": vector_id, "endpoint": "/api/v1/serviceS", "expect": {"http_status": 200}, **extra}
    (out / f"{vector_id}.json").write_text(json.dumps(sidecar))
    (out / f"{vector_id}.xml").write_bytes(b"<x/>")


def test_load_suite_sends_the_catalogue_first_then_the_scenario_in_sequence(tmp_path: Path) -> None:
    _write(tmp_path, "zz-catalogue")
    _write(tmp_path, "aa-catalogue")
    _write(tmp_path, "a-second-step", sequence=2)
    _write(tmp_path, "z-first-step", sequence=1)
    (tmp_path / "suite.json").write_text("{}")
    assert [v.id for v in load_suite(tmp_path)] == ["aa-catalogue", "zz-catalogue", "z-first-step", "a-second-step"]
