"""Judging one answer (vectors.judge) under both profiles, and which vectors strict-duis judges (vectors.expect).

Each answer is written out as an endpoint would send it; the table says what
the report must print as "got" and which kind of miss it is, if any.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lxml import etree

from gateway.namespaces import DS, SR
from pki import TestSmkiCa
from tests import factories
from tests.shared_data import shared_path
from vectors import VECTORS, Answer, Expectation, Miss, Profile, Verdict, build_context, judge
from vectors.catalogue.model import CERTIFICATE, CONTENT, POSITIVE, PROFILE, WRAPPING
from vectors.expect import BEYOND_DUIS, strict_duis_verdict
from vectors.judge import unanswered
from vectors.suite import SuiteVector

OURS, STRICT = Profile.OURS, Profile.STRICT_DUIS
SIGNATURE_LEVEL = {WRAPPING, CONTENT, PROFILE, CERTIFICATE, POSITIVE}


def response(code: str, *, signed: bool = True, namespace: str = SR) -> Answer:
    signature = f'<ds:Signature xmlns:ds="{DS}"/>' if signed else ""
    body = (f'<sr:Response xmlns:sr="{namespace}"><sr:Header><sr:ResponseCode>{code}</sr:ResponseCode></sr:Header>'
            f"<sr:Body/>{signature}</sr:Response>")
    return Answer(200, "application/xml", body.encode())


def problem(status: int, check: str) -> Answer:
    return Answer(status, "application/problem+json", json.dumps({"status": status, "check": check}).encode())


def directive(accepted: object) -> Answer:
    return Answer(200, "application/json", json.dumps({"accepted": accepted, "reason": "r"}).encode())


REFUSE_401 = Expectation(401, check="signature-object", strict_duis=Verdict.REFUSE)
ACCEPT_ANY = Expectation(200, response_code="*", strict_duis=Verdict.ACCEPT)
POLICY_E4 = Expectation(200, response_code="E4")
POLICY_I99 = Expectation(200, response_code="I99")
DIRECTIVE_ACCEPTED = Expectation(200, accepted=True)
DIRECTIVE_REFUSED = Expectation(200, accepted=False)


@pytest.mark.parametrize(
    ("expectation", "answer", "profile", "got", "miss"),
    [
        # the catalogue: refused before authentication, with this check
        pytest.param(REFUSE_401, problem(401, "signature-object"), OURS, "401 signature-object", None, id="exact"),
        pytest.param(REFUSE_401, problem(401, "key-info"), OURS, "401 key-info", Miss.WRONG_REASON, id="other-check"),
        pytest.param(REFUSE_401, problem(400, "schema"), OURS, "400 schema", Miss.WRONG_REASON, id="schema-first"),
        pytest.param(REFUSE_401, response("E40"), OURS, "200 E40", Miss.ACCEPTED_ATTACK, id="authenticated"),
        pytest.param(REFUSE_401, problem(500, "internal-error"), OURS, "500 internal-error", Miss.NO_VERDICT, id="500"),
        pytest.param(REFUSE_401, Answer(404), OURS, "404 (no DUIS endpoint at this URL)", Miss.NO_VERDICT, id="404"),
        pytest.param(REFUSE_401, response("I99", signed=False), OURS, "200 (no signed sr:Response)", Miss.NO_VERDICT,
                     id="unsigned-response"),
        pytest.param(REFUSE_401, response("I99", namespace="urn:x-evil"), OURS, "200 (no signed sr:Response)",
                     Miss.NO_VERDICT, id="foreign-namespace-response"),
        pytest.param(REFUSE_401, Answer(200, "text/plain", b"OK"), OURS, "200 (no signed sr:Response)",
                     Miss.NO_VERDICT, id="plain-ok"),
        # the catalogue: accepted, any DUIS code (authentication is what is tested)
        pytest.param(ACCEPT_ANY, response("E40"), OURS, "200 E40", None, id="accepted-then-replay"),
        pytest.param(ACCEPT_ANY, response("I99"), OURS, "200 I99", None, id="accepted"),
        pytest.param(ACCEPT_ANY, problem(401, "digest-mismatch"), OURS, "401 digest-mismatch", Miss.REFUSED_VALID,
                     id="false-reject"),
        # the scenario: an exact DUIS code
        pytest.param(POLICY_E4, response("E4"), OURS, "200 E4", None, id="policy-exact"),
        pytest.param(POLICY_E4, response("E3"), OURS, "200 E3", Miss.WRONG_REASON, id="policy-other-code"),
        pytest.param(POLICY_E4, response("I99"), OURS, "200 I99", Miss.ACCEPTED_ATTACK, id="policy-hole"),
        pytest.param(POLICY_E4, problem(401, "signature-invalid"), OURS, "401 signature-invalid", Miss.WRONG_REASON,
                     id="policy-refused-earlier"),
        pytest.param(POLICY_I99, response("E4"), OURS, "200 E4", Miss.REFUSED_VALID, id="policy-false-reject"),
        pytest.param(POLICY_I99, response("I0"), OURS, "200 I0", Miss.WRONG_REASON, id="policy-other-acceptance"),
        pytest.param(POLICY_I99, problem(401, "certificate-unknown"), OURS, "401 certificate-unknown",
                     Miss.REFUSED_VALID, id="policy-refused-before-authentication"),
        # directives
        pytest.param(DIRECTIVE_ACCEPTED, directive(True), OURS, "200 accepted", None, id="directive-accepted"),
        pytest.param(DIRECTIVE_REFUSED, directive(False), OURS, "200 refused", None, id="directive-refused"),
        pytest.param(DIRECTIVE_ACCEPTED, directive(False), OURS, "200 refused", Miss.REFUSED_VALID,
                     id="directive-false-reject"),
        pytest.param(DIRECTIVE_REFUSED, directive(True), OURS, "200 accepted", Miss.ACCEPTED_ATTACK,
                     id="directive-hole"),
        pytest.param(DIRECTIVE_REFUSED, problem(401, "signature-invalid"), OURS, "401 signature-invalid",
                     Miss.WRONG_REASON, id="directive-refused-before-authentication"),
        pytest.param(DIRECTIVE_ACCEPTED, directive("yes"), OURS, "200 (no directive verdict)", Miss.NO_VERDICT,
                     id="directive-not-a-bool"),
        # strict-duis: the verdict only
        pytest.param(REFUSE_401, problem(400, "schema"), STRICT, "400 schema", None, id="strict-any-4xx"),
        pytest.param(REFUSE_401, Answer(403, "text/html", b"<h1>no</h1>"), STRICT, "403", None, id="strict-bare-403"),
        pytest.param(REFUSE_401, response("E4"), STRICT, "200 E4", Miss.ACCEPTED_ATTACK, id="strict-authenticated"),
        pytest.param(REFUSE_401, Answer(405), STRICT, "405 (no DUIS endpoint at this URL)", Miss.NO_VERDICT,
                     id="strict-wrong-path"),
        pytest.param(REFUSE_401, Answer(502), STRICT, "502", Miss.NO_VERDICT, id="strict-502"),
        pytest.param(ACCEPT_ANY, response("E19"), STRICT, "200 E19", None, id="strict-accepted-unknown-device"),
        pytest.param(ACCEPT_ANY, Answer(401), STRICT, "401", Miss.REFUSED_VALID, id="strict-false-reject"),
    ],
)
def test_judge(expectation: Expectation, answer: Answer, profile: Profile, got: str, miss: Miss | None) -> None:
    judgement = judge(expectation, answer, profile)
    assert (judgement.got, judgement.miss) == (got, miss)
    assert judgement.ok is (miss is None)


def test_no_answer_is_no_verdict() -> None:
    judgement = unanswered("connection refused")
    assert (judgement.got, judgement.miss) == ("error: connection refused", Miss.NO_VERDICT)


def test_a_vector_outside_strict_duis_cannot_be_judged_by_it() -> None:
    with pytest.raises(ValueError, match="strict-duis"):
        judge(POLICY_E4, response("E4"), STRICT)


@pytest.mark.parametrize(
    ("expectation", "ours", "strict"),
    [
        (REFUSE_401, "401 signature-object", "refused (4xx)"),
        (ACCEPT_ANY, "200 *", "accepted"),
        (DIRECTIVE_REFUSED, "200 refused", None),
        (POLICY_I99, "200 I99", None),
    ],
)
def test_what_the_report_says_was_expected(expectation: Expectation, ours: str, strict: str | None) -> None:
    assert expectation.wanted(OURS) == ours
    if strict is not None:
        assert expectation.wanted(STRICT) == strict


def test_a_sidecar_reads_back_as_its_expectation(tmp_path: Path) -> None:
    path = tmp_path / "v.json"
    sidecar = {"id": "v", "category": "wrapping", "endpoint": "/api/v1/serviceS",
               "expect": {"http_status": 401, "check": "signature-object"}, "strict_duis": "refuse"}
    path.write_text(json.dumps(sidecar))
    vector = SuiteVector.read(path)
    assert vector.expectation == REFUSE_401
    assert vector.judged_by(STRICT) and vector.judged_by(OURS) and not vector.stateful


# --- which vectors strict-duis judges ----------------------------------------------------------


def test_every_catalogue_vector_has_a_strict_verdict_or_a_reason() -> None:
    for vector in VECTORS:
        verdict, reason = strict_duis_verdict(vector)
        assert (verdict is None) == bool(reason), vector.id
        if verdict is not None:
            assert vector.category in SIGNATURE_LEVEL
            assert verdict is (Verdict.ACCEPT if vector.expect_check is None else Verdict.REFUSE), vector.id


def test_the_exceptions_name_signature_level_vectors_of_the_catalogue() -> None:
    by_id = {vector.id: vector for vector in VECTORS}
    assert set(BEYOND_DUIS) <= set(by_id)
    assert {by_id[vector_id].category for vector_id in BEYOND_DUIS} <= SIGNATURE_LEVEL


def test_strict_duis_judges_every_signature_level_class_both_ways() -> None:
    verdicts = {(v.category, strict_duis_verdict(v)[0]) for v in VECTORS}
    assert {(c, Verdict.REFUSE) for c in SIGNATURE_LEVEL - {POSITIVE}} <= verdicts
    assert (POSITIVE, Verdict.ACCEPT) in verdicts


def test_what_strict_duis_must_accept_is_valid_duis(test_ca: TestSmkiCa) -> None:
    """A vector every strict DUIS gateway must accept has to pass the official DUIS 5.4 XSD."""
    schema = etree.XMLSchema(etree.parse(str(shared_path("duis", "xsd", "DUIS-Schema-V5.4.xsd"))))
    context = build_context(test_ca, now=factories.NOW)
    for vector in VECTORS:
        if strict_duis_verdict(vector)[0] is Verdict.ACCEPT:
            root = etree.fromstring(vector.build(context), etree.XMLParser(resolve_entities=False, no_network=True))
            assert schema.validate(root), (vector.id, schema.error_log.last_error)
