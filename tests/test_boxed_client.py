"""The real DCC Boxed client against a ``--boxed`` gateway (issue 13, item 4).

All 297 real DUIS templates, signed by DCC Boxed's own signing tool with its own embedded ZAZ1
keys (counters fresh, as the tool sets them), are sent unchanged to a gateway serving a world made
by ``init --boxed`` from the real ZAZ1 keystore. Critical SRVs go CV4, then CV5 with the returned
Pre-Command signed by the Boxed supplier's ZAZ1 DS key. Every synchronous answer and every async
delivery must then pass the tool's ``Validate`` and parse with ``@smartdcc/duis-parser``.

A template is *eligible* when the tool can sign it, its originator is a user of the boxed world and
one of that user's roles may send its SRV (the real eligibility matrix).

The contract: every eligible template served, with each device answer's ``GBCSPayload`` decoding
(with the project's GBCS reader) as a response of its use case, cross-checked against the RTDS vector.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree

from gateway.boxed import init_boxed_world
from gateway.clock import SystemClock
from gateway.eui64 import Eui64
from gateway.gbcs import CraFlag
from gateway.gbcs.reader import read_message
from gateway.gbcs.rtds import DEVICE_VARIANTS, RtdsCatalogue
from gateway.manifest import Manifest
from gateway.namespaces import SR
from gateway.policy.eligibility import Eligibility
from tests.boxed_client import BoxedClient, ClientUnavailable, ToolResult, unavailable
from tests.boxed_client.sweep import Outcome, counts, receiving, run_sweep
from tests.shared_data import shared_path

pytestmark = pytest.mark.interop

_SR = f"{{{SR}}}"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True)
AUTHORISATION_REFUSALS = frozenset({"E1", "E2", "E3", "E4", "E13", "E19", "E40", "HTTP 401", "HTTP 403"})
"""What a template a boxed user may send must never meet: its identity, role or device unknown."""
@dataclass(frozen=True)
class Sweep:
    manifest: Manifest
    eligibility: Eligibility
    outcomes: list[Outcome]
    extra_deliveries: list[bytes]
    """Deliveries about no template's RequestID (device alerts)."""
    validated: dict[bytes, ToolResult]
    parsed: dict[bytes, dict[str, object]]

    def roles_of(self, outcome: Outcome) -> tuple[str, ...]:
        for actor in self.manifest.actors.values():
            if str(actor.user_id) == outcome.originator:
                return actor.roles
        return ()

    def eligible(self, outcome: Outcome) -> bool:
        variant = self.eligibility.variant(outcome.srv)
        return (
            outcome.signed.ok
            and variant is not None
            and any(self.eligibility.permits(role, variant) for role in self.roles_of(outcome))
        )

    def eligible_outcomes(self) -> list[Outcome]:
        return [o for o in self.outcomes if self.eligible(o)]


async def _run(client: BoxedClient, world: Path, manifest: Manifest) -> tuple[list[Outcome], list[bytes]]:
    async with receiving(world) as receiver:
        supplier = manifest.actor("failed_supplier_is")
        assert supplier.digital_signing is not None
        key = serialization.load_pem_private_key(supplier.digital_signing.key.read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        templates = sorted(shared_path("duis", "templates").iterdir())
        outcomes = await run_sweep(client, world, templates, clock=SystemClock(), receiver=receiver, supplier_ds_key=key)
    claimed = {id(d) for o in outcomes for d in o.deliveries}
    return outcomes, [d for d in receiver.documents if id(d) not in claimed]


@pytest.fixture(scope="module")
def client() -> BoxedClient:
    try:
        return BoxedClient.install()
    except ClientUnavailable as exc:
        unavailable(str(exc))
        raise


@pytest.fixture(scope="module")
def sweep(client: BoxedClient, tmp_path_factory: pytest.TempPathFactory) -> Sweep:
    keystore = shared_path("zaz1", "keystore.json")
    matrix = shared_path("duis", "srv-eligibility-matrix.json")
    world = tmp_path_factory.mktemp("boxed-sweep")
    manifest, _ = init_boxed_world(world, keystore, now=dt.datetime.now(dt.timezone.utc), devices=4, seed="boxed-sweep")
    outcomes, extra = asyncio.run(_run(client, world, manifest))
    documents = list(dict.fromkeys([a for o in outcomes for a in o.answers()] + extra))
    validated = dict(zip(documents, client.validate(documents), strict=True))
    parsed = dict(zip(documents, client.parse(documents), strict=True))
    print(f"\nboxed template sweep: {dict(sorted(counts(outcomes).items()))}")
    return Sweep(manifest, Eligibility.load(matrix), outcomes, extra, validated, parsed)


def _problem_check(outcome: Outcome) -> str | None:
    final = outcome.final
    if final is None or final.status == 200:
        return None
    check: str = json.loads(final.answer)["check"]
    return check


def _has_comment(outcome: Outcome) -> bool:
    return b"<!--" in outcome.signed.output


# --- what passes now ---------------------------------------------------------------------------------


def test_the_tool_signs_every_template_whose_originator_it_has_a_key_for(sweep: Sweep) -> None:
    unsigned = {o.name: (o.originator, o.signed.exit_code) for o in sweep.outcomes if not o.signed.ok}
    # The load controller 90-B3-D5-1F-30-01-00-08 has no key in the tool: exit 3, missing key material.
    assert unsigned == {
        "ECS47e_7.16_APC_INPUT_SUCCESS_REQUEST_DUIS.XML": ("90-B3-D5-1F-30-01-00-08", 3),
        "ECS47e_7.16_APC_OUTPUT_SUCCESS_REQUEST_DUIS.XML": ("90-B3-D5-1F-30-01-00-08", 3),
    }
    counters = [int((o.request_id or "::0").split(":")[2]) for o in sweep.outcomes if o.signed.ok]
    assert all(counter > 1_600_000_000_000 for counter in counters)  # the tool's counters: milliseconds now


def test_no_eligible_template_is_refused_for_who_sent_it_or_where_it_went(sweep: Sweep) -> None:
    """Every eligible template gets past authentication, user, role, device and replay checks."""
    eligible = sweep.eligible_outcomes()
    assert len(eligible) >= 280
    refused = {o.name: o.code for o in eligible if o.code in AUTHORISATION_REFUSALS}
    assert refused == {}
    problems = {o.name: _problem_check(o) for o in eligible if o.code.startswith("HTTP")}
    assert problems == {}


def test_templates_no_boxed_user_may_send_are_refused_for_exactly_that(sweep: Sweep) -> None:
    others = [o for o in sweep.outcomes if o.signed.ok and not sweep.eligible(o)]
    for outcome in others:
        if sweep.roles_of(outcome):
            # A boxed user, but none of its roles may send the SRV (or nobody may: 8.6 Service Opt In).
            assert outcome.code == "E2", outcome.name
        else:
            # Not a DUIS user here: the tool signed with the only key it has for that EUI-64 (the DSP's 89,
            # supplier 2's 02), which no Service Request may carry.
            assert (outcome.code, _problem_check(outcome)) == ("HTTP 401", "certificate-role"), outcome.name
    assert {o.originator for o in others if not sweep.roles_of(o)} == {"90-B3-D5-1F-30-00-00-02", "90-B3-D5-1F-30-03-00-00"}


def test_every_answer_and_every_delivery_passes_the_tools_validate(sweep: Sweep) -> None:
    assert len(sweep.validated) > 400
    failed = {
        etree.fromstring(doc, _PARSER).findtext(f"{_SR}Header/{_SR}RequestID"): (r.exit_code, r.log[-300:])
        for doc, r in sweep.validated.items()
        if not r.ok
    }
    assert failed == {}
    # Validate prints what was signed: the answer without its signature, the same header.
    for document, result in sweep.validated.items():
        signed = etree.fromstring(result.output, _PARSER)
        assert signed.find("{http://www.w3.org/2000/09/xmldsig#}Signature") is None
        assert signed.findtext(f"{_SR}Header/{_SR}ResponseID") == etree.fromstring(document, _PARSER).findtext(
            f"{_SR}Header/{_SR}ResponseID"
        )


def test_duis_parser_reads_every_answer_as_the_response_it_is(sweep: Sweep) -> None:
    for document, parsed in sweep.parsed.items():
        assert parsed["ok"], parsed
        header = parsed["duis"]["header"]  # type: ignore[index]
        root = etree.fromstring(document, _PARSER)
        assert header["type"] == "response"
        assert header["responseCode"] == root.findtext(f"{_SR}Header/{_SR}ResponseCode")
        request_id = root.findtext(f"{_SR}Header/{_SR}RequestID")
        if request_id is not None:
            originator, target, counter = request_id.split(":")
            assert header["requestId"] == {"originatorId": originator.lower(), "targetId": target.lower(), "counter": counter}


def test_every_accepted_request_gets_its_result_delivered(sweep: Sweep) -> None:
    accepted = [o for o in sweep.outcomes if o.code == "I99"]
    assert len(accepted) >= 150
    assert [o.name for o in accepted if not o.deliveries] == []


def test_critical_templates_go_through_cv4_then_cv5(sweep: Sweep) -> None:
    """Where the gateway returns a Pre-Command, the Boxed supplier's ZAZ1 DS signature on it is accepted."""
    through = [o for o in sweep.outcomes if o.cv5 is not None]
    assert through, "no CV4 was answered with a Pre-Command"
    assert {o.cv5.code for o in through if o.cv5 is not None} == {"I99"}
    assert {o.srv for o in through} >= {"1.6"}


# --- the final contract ---------------------------------------------------------------------------------------


def test_every_eligible_template_is_served(sweep: Sweep) -> None:
    """CV4 ends in the CV5's I99; device requests I99 then an I0 delivery; non-device requests I0 or I99."""
    unserved = {}
    for outcome in sweep.eligible_outcomes():
        if outcome.cv == 4 and outcome.cv5 is None:
            unserved[outcome.name] = f"CV4 answered {outcome.code}"
        elif outcome.code not in ("I0", "I99"):
            unserved[outcome.name] = outcome.code
        elif outcome.code == "I99" and not any(b"<sr:ResponseCode>I0<" in d for d in outcome.deliveries):
            unserved[outcome.name] = "no I0 result delivered"
    assert unserved == {}


def test_templates_carrying_comments_are_let_through_as_their_signatures_are(sweep: Sweep) -> None:
    """Six templates keep ``<!-- NOTE … -->`` comments between elements after the tool signs them;
    C14N leaves those out of the signed content, and the parser accepts them (but beside text)."""
    commented = [o for o in sweep.eligible_outcomes() if _has_comment(o)]
    assert len(commented) == 6
    assert {o.name: o.code for o in commented if o.code.startswith("HTTP")} == {}


def _rtds_response(name: str) -> Path | None:
    """The RTDS 4.5.0 response vector of a template's use case (``ECS02_1.6_X_REQUEST_DUIS.XML`` ->
    ``1.6_ECS02/ECS02_1.6_X_RESPONSE_GBCS.HEX``), when there is one."""
    stem = name.removesuffix("_REQUEST_DUIS.XML")
    use_case, srv = stem.split("_")[:2]
    path = shared_path("gbcs", "rtds-4.5.0") / f"{srv}_{use_case}" / f"{stem}_RESPONSE_GBCS.HEX"
    return path if path.is_file() else None


def _payloads(document: bytes) -> Iterator[bytes]:
    for text in etree.fromstring(document, _PARSER).iter(f"{_SR}GBCSPayload"):
        yield base64.b64decode("".join((text.text or "").split()))


def _variant_of(template_use_case: str, answered: int, srv: str) -> bool:
    """Whether ``answered`` is the message code of a use case the template's request cannot be told from
    (the same DUIS request for another device variant: ``gateway.gbcs.rtds.DEVICE_VARIANTS``)."""
    catalogue = RtdsCatalogue.load(shared_path("gbcs", "rtds-4.5.0"))
    group = next((g for g in DEVICE_VARIANTS if template_use_case in g), frozenset())
    return any(u.message_code == answered for u in catalogue.use_cases(srv) if u.name in group - {template_use_case})


def test_each_device_answer_carries_the_gbcs_response_of_its_use_case(sweep: Sweep) -> None:
    """Each result's GBCSPayload reads, with the project's GBCS reader, as a response of the use case of the
    RTDS vector (same message code, envelope and content kind), from that device to that user, for that
    request's counter. A template whose request is also another device variant's (ECS26b and ECS26k are
    the same DUIS request) may be answered as that variant, the simulated device's."""
    wrong: dict[str, str] = {}
    variants = []
    checked = 0
    for outcome in sweep.eligible_outcomes():
        vector = _rtds_response(outcome.name)
        if vector is None or outcome.code != "I99":
            continue
        expected = read_message(bytes.fromhex(vector.read_text().strip()))
        results = [d for d in outcome.deliveries if b"<sr:ResponseCode>I0<" in d]
        payloads = [p for d in results for p in _payloads(d)]
        if not payloads:
            wrong[outcome.name] = "no GBCSPayload"
            continue
        got = read_message(payloads[0])
        counter = int((outcome.request_id or "::0").split(":")[2])
        facts = (got.cra_flag, got.originator, got.recipient, got.counter, got.envelope, got.content_kind)
        want = (CraFlag.RESPONSE, Eui64.parse(outcome.target), Eui64.parse(outcome.originator), counter,
                expected.envelope, expected.content_kind)  # fmt: skip
        if facts != want:
            wrong[outcome.name] = f"{facts} != {want}"
        elif got.message_code != expected.message_code:
            if _variant_of(outcome.name.split("_")[0], got.message_code, outcome.srv):
                variants.append(outcome.name)
            else:
                wrong[outcome.name] = f"message code {got.message_code:#06x}, not {expected.message_code:#06x}"
        checked += 1
    assert wrong == {} and checked >= 250
    assert len(variants) <= 20


def test_deliveries_about_no_template_are_device_alerts(sweep: Sweep) -> None:
    for document in sweep.extra_deliveries:
        root = etree.fromstring(document, _PARSER)
        assert root.find(f"{_SR}Body/{_SR}DeviceAlertMessage") is not None or root.find(
            f"{_SR}Body/{_SR}DCCAlertMessage"
        ) is not None, document[:300]

