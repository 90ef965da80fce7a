"""Properties of the policy over random SoLR histories (hypothesis).

Whatever sequence of directives (from the right or the wrong issuer), clock
jumps and requests:

* an SC user never gets a non-Credit payment mode admitted;
* no request is admitted for a device whose MPID the user's party neither
  holds nor (SC) was enabled for at that time, as judged by an oracle written
  here independently of gateway.policy.authorise.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.namespaces import SR
from gateway.policy import directives as d
from gateway.policy.authorise import Admissible, authorise
from gateway.policy.state import RegistryState
from gateway.verify.documents import VerifiedRequest
from gateway.world import init_world
from tests.scenario import Scenario, credit_body, make_scenario, prepayment_body

REQUESTERS = ("failed_supplier_is", "failed_supplier_gs", "solr_is", "srp_sc", "network_ed")
ISSUERS = ("authority", "pma", "dcc_operator", "solr_is", "srp_aro", "srp_sro", "srp_sc")


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("property-world")
    init_world(directory, devices=12, seed="property-tests")
    return directory


@pytest.fixture(scope="module")
def request_pool(world_dir: Path) -> dict[tuple[str, int, int, str], VerifiedRequest]:
    """Every (requester, device index, CV, body) combination, signed and verified once."""
    scenario = make_scenario(world_dir, use_real_matrix=False)
    pool = {}
    for actor in REQUESTERS:
        for index, device in enumerate(scenario.manifest.devices):
            for cv in (1, 4):
                for kind, body in (("credit", credit_body), ("prepayment", prepayment_body)):
                    pool[(actor, index, cv, kind)] = scenario.request(actor, device.device_id, cv=cv, body=body())
    return pool


def directive_steps(scenario: Scenario) -> st.SearchStrategy[tuple[str, d.Directive]]:
    """Directives mostly from their proper issuer (so histories get somewhere), sometimes from anyone."""
    now = scenario.clock.now()
    sc_user = scenario.actor("srp_sc").user_id
    until = st.integers(min_value=-2, max_value=120).map(lambda days: now + dt.timedelta(days=days))
    considered = "prepayment customers; SRP holds keys"
    proper = [
        ("authority", st.just(d.RevokeLicence("failed-supplier"))),
        ("authority", st.just(d.AppointSolr("failed-supplier", "solr-supplier"))),
        ("authority", until.map(lambda t: d.EnableContingency("failed-supplier", sc_user, t))),
        ("authority", st.just(d.WithdrawContingency("failed-supplier", sc_user))),
        ("pma", until.map(lambda t: d.DelayRevocation("failed-supplier", t, considered))),
        ("pma", until.map(lambda t: d.DelayMpidTransfer("failed-supplier", t, considered))),
        ("solr_is", st.just(d.ConfirmTakeover("failed-supplier", "estate", "staff", "srp", "risks", "weeks"))),
        ("dcc_operator", st.just(d.TransferMpids("failed-supplier", "solr-supplier"))),
        ("dcc_operator", st.just(d.RevokeCertificates("failed-supplier"))),
        ("srp_aro", st.just(d.SubmitAdt("failed-supplier", 3600, {"1.6": 5}))),
        ("dcc_operator", st.just(d.SuspendParty("other-user"))),
    ]
    return st.one_of(
        *(st.tuples(st.just(issuer), directive) for issuer, directive in proper),
        st.tuples(st.sampled_from(ISSUERS), st.one_of(*(directive for _, directive in proper))),
    )


def oracle_allows(state: RegistryState, request: VerifiedRequest, now: dt.datetime, max_days: int) -> bool:
    """Who may touch this device now, computed without gateway.policy.authorise."""
    user = state.users[request.originator]
    device = state.devices[request.target]
    holder = state.mpid_owner[device.mpid]
    if user.role in ("ED", "GT"):  # network operators hold the device's network operator MPID, if it has one
        return device.network_mpid is not None and state.mpid_owner.get(device.network_mpid) == user.party
    if user.role != "SC":
        return holder == user.party
    failed = next(name for name, party in state.parties.items() if device.mpid in party.mpids)
    enablement = state.enablements.get((failed, user.user_id))
    event = state.events.get(failed)
    return (
        holder == failed
        and enablement is not None
        and enablement.withdrawn_at is None
        and enablement.enabled_at <= now <= enablement.until
        and event is not None
        and event.appointed_at is not None
        and now <= event.appointed_at + dt.timedelta(days=max_days)
        and (failed, user.party) in state.adt_files
    )


def is_credit(request: VerifiedRequest) -> bool:
    body = request.body
    return body.tag == f"{{{SR}}}UpdatePaymentMode" and [c.tag for c in body] == [f"{{{SR}}}Credit"]


def check_every_request(scenario: Scenario, pool: dict[tuple[str, int, int, str], VerifiedRequest]) -> int:
    """Asserts both invariants for every pooled request in the current state; returns how many were admitted."""
    now = scenario.clock.now()
    admitted = 0
    for key, request in pool.items():
        verdict = authorise(scenario.state, request, scenario.config, now)
        if not isinstance(verdict, Admissible):
            continue
        admitted += 1
        if verdict.user.role == "SC":
            assert is_credit(request), f"SC request {key} that is not payment mode Credit was admitted"
        assert oracle_allows(scenario.state, request, now, scenario.config.contingency_max_days), (
            f"admitted {key} although the oracle refuses it"
        )
    return admitted


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_no_history_lets_the_sc_role_past_its_limits(
    world_dir: Path, request_pool: dict[tuple[str, int, int, str], VerifiedRequest], data: st.DataObject
) -> None:
    scenario = make_scenario(world_dir, use_real_matrix=False)
    start = data.draw(
        st.sampled_from(("nothing", "enabled without ADT file", "contingency ready", "takeover confirmed")), label="start"
    )
    if start != "nothing":
        scenario.fail_supplier()
        scenario.enable_contingency()
    if start in ("contingency ready", "takeover confirmed"):
        scenario.submit_adt()
    if start == "takeover confirmed":
        scenario.confirm_takeover()
    steps = data.draw(
        st.lists(
            st.one_of(
                directive_steps(scenario).map(lambda s: ("directive", s)),
                st.one_of(st.integers(0, 72), st.integers(0, 100 * 24)).map(lambda hours: ("advance", hours)),
            ),
            max_size=12,
        )
    )
    check_every_request(scenario, request_pool)
    for kind, step in steps:
        if kind == "directive":
            actor, directive = step
            scenario.direct(actor, directive)
        else:
            scenario.clock.advance(dt.timedelta(hours=step))
        check_every_request(scenario, request_pool)


def test_the_property_sees_sc_admissions(world_dir: Path, request_pool: dict[tuple[str, int, int, str], VerifiedRequest]) -> None:
    """Guards the property above against vacuity: a ready contingency admits SC credit requests."""
    scenario = make_scenario(world_dir, use_real_matrix=False)
    scenario.contingency_ready()
    sc_admitted = [
        key
        for key, request in request_pool.items()
        if key[0] == "srp_sc" and isinstance(authorise(scenario.state, request, scenario.config, scenario.clock.now()), Admissible)
    ]
    assert sc_admitted and all(key[3] == "credit" for key in sc_admitted)
