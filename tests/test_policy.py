"""The static authorisation pipeline (E1-E41) and the SoLR state machine, on a generated world."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from gateway.codes import ResponseCode
from gateway.eui64 import Eui64
from gateway.policy import directives as d
from gateway.policy.authorise import Admissible, Refusal, authorise
from gateway.policy.state import SolrStage
from gateway.world import init_world
from tests.scenario import Scenario, make_scenario, prepayment_body

UNKNOWN_DEVICE = Eui64.parse("00-DB-12-FF-FF-FF-FF-FF")


@pytest.fixture(scope="session")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("policy-world")
    init_world(directory, devices=24, seed="policy-tests")
    return directory


@pytest.fixture
def scenario(world_dir: Path) -> Scenario:
    return make_scenario(world_dir, use_real_matrix=False)


def decide(scenario: Scenario, actor: str, target: Eui64, **fields: object) -> Refusal | Admissible:
    request = scenario.request(actor, target, **fields)
    return authorise(scenario.state, request, scenario.config, scenario.clock.now())


def refused(verdict: Refusal | Admissible, code: ResponseCode, *reason_words: str) -> None:
    assert isinstance(verdict, Refusal), f"expected {code.value}, got admissible"
    assert verdict.code is code, f"expected {code.value}, got {verdict.code.value}: {verdict.reason}"
    for word in reason_words:
        assert word in verdict.reason, f"{word!r} not in {verdict.reason!r}"


# --- ordinary suppliers ---------------------------------------------------------------


def test_supplier_may_switch_its_own_smets1_meter(scenario: Scenario) -> None:
    meter = scenario.device(smets=1)
    verdict = decide(scenario, "failed_supplier_is", meter.device_id)
    assert isinstance(verdict, Admissible)
    assert verdict.user.role == "IS" and verdict.device is not None and verdict.acting_for is None


def test_e1_unregistered_user(scenario: Scenario) -> None:
    # The authority holds an xmlSign certificate (it signs directives) but is no DUIS user.
    refused(decide(scenario, "authority", scenario.device().device_id), ResponseCode.E1, "not a registered DUIS user")


def test_e2_role_not_eligible(scenario: Scenario) -> None:
    refused(
        decide(scenario, "network_ed", scenario.device().device_id, srv="1.6"),
        ResponseCode.E2,
        "role ED may not send SRV 1.6",
    )


def test_e2_srv_missing_from_the_matrix(scenario: Scenario) -> None:
    # 2.2 is a real SRV (the official XSD accepts it) absent from the test's minimal matrix.
    refused(decide(scenario, "failed_supplier_is", scenario.device().device_id, srv="2.2"), ResponseCode.E2, "unknown")


def test_e3_suspended_party(scenario: Scenario) -> None:
    scenario.must("dcc_operator", d.SuspendParty("failed-supplier"))
    refused(decide(scenario, "failed_supplier_is", scenario.device().device_id), ResponseCode.E3, "suspended")


def test_e19_unknown_device(scenario: Scenario) -> None:
    refused(decide(scenario, "failed_supplier_is", UNKNOWN_DEVICE), ResponseCode.E19, "does not exist")


def test_e11_srv_for_the_other_fuel(scenario: Scenario) -> None:
    gas_meter = scenario.device(device_type="GSME", smets=1)
    refused(
        decide(scenario, "failed_supplier_is", gas_meter.device_id, srv="1.1.2"),
        ResponseCode.E11,
        "does not apply to a GSME",
    )


@pytest.mark.parametrize("cv", [1, 2, 3])
def test_e12_critical_srv_to_smets2_needs_a_pre_command(scenario: Scenario, cv: int) -> None:
    meter = scenario.device(smets=2)
    refused(decide(scenario, "failed_supplier_is", meter.device_id, cv=cv), ResponseCode.E12, "Pre-Command")


@pytest.mark.parametrize("cv", [4, 5])
def test_e12_smets1_takes_the_request_itself(scenario: Scenario, cv: int) -> None:
    refused(decide(scenario, "failed_supplier_is", scenario.device(smets=1).device_id, cv=cv), ResponseCode.E12, "SMETS1")


def test_e12_non_device_request_needs_cv8(scenario: Scenario) -> None:
    refused(
        decide(scenario, "failed_supplier_is", scenario.manifest.gateway.dsp_user_id, srv="8.2", cv=1),
        ResponseCode.E12,
        "command variant 8",
    )


def test_cv4_is_the_way_for_a_critical_srv_to_smets2(scenario: Scenario) -> None:
    assert isinstance(decide(scenario, "failed_supplier_is", scenario.device(smets=2).device_id, cv=4), Admissible)


def test_e4_device_of_another_supplier(scenario: Scenario) -> None:
    theirs = scenario.device(mpid_of="solr-supplier", device_type="ESME", smets=1) if scenario.devices(
        mpid_of="solr-supplier", device_type="ESME", smets=1
    ) else scenario.devices(mpid_of="solr-supplier", device_type="ESME")[0]
    cv = 1 if theirs.smets == 1 else 4
    refused(decide(scenario, "failed_supplier_is", theirs.device_id, cv=cv), ResponseCode.E4, "not held by failed-supplier")


def test_e4_import_supplier_is_not_the_gas_supplier(scenario: Scenario) -> None:
    gas_meter = scenario.device(device_type="GSME", smets=1)
    refused(decide(scenario, "failed_supplier_is", gas_meter.device_id), ResponseCode.E4, "IS user is not the supplier")


# --- the SoLR Contingency role ------------------------------------------------------------


def test_sc_before_any_supplier_failure_is_e3(scenario: Scenario) -> None:
    refused(decide(scenario, "srp_sc", scenario.device().device_id), ResponseCode.E3, "not been enabled by the Authority")


def test_sc_after_enablement_with_adt_may_switch_to_credit(scenario: Scenario) -> None:
    scenario.contingency_ready()
    verdict = decide(scenario, "srp_sc", scenario.device(smets=1).device_id)
    assert isinstance(verdict, Admissible)
    assert verdict.acting_for == "failed-supplier"
    assert (verdict.adt_window_seconds, verdict.adt_threshold) == (3600, 50)


def test_sc_gas_smets2_through_cv4(scenario: Scenario) -> None:
    scenario.contingency_ready()
    meter = scenario.device(device_type="GSME", smets=2)
    assert isinstance(decide(scenario, "srp_sc", meter.device_id, cv=4), Admissible)


def test_sc_read_is_e2(scenario: Scenario) -> None:
    scenario.contingency_ready()
    refused(
        decide(scenario, "srp_sc", scenario.device().device_id, srv="4.1.1"),
        ResponseCode.E2,
        "may only send SRV 1.6",
    )


def test_sc_prepayment_is_e41(scenario: Scenario) -> None:
    scenario.contingency_ready()
    refused(
        decide(scenario, "srp_sc", scenario.device().device_id, body=prepayment_body()),
        ResponseCode.E41,
        "only set payment mode to Credit, not Prepayment",
    )


def test_sc_prepayment_pre_command_is_e41(scenario: Scenario) -> None:
    scenario.contingency_ready()
    meter = scenario.device(smets=2)
    refused(decide(scenario, "srp_sc", meter.device_id, cv=4, body=prepayment_body()), ResponseCode.E41, "Credit")


def test_sc_without_adt_file_is_e4(scenario: Scenario) -> None:
    scenario.fail_supplier()
    scenario.enable_contingency()
    refused(decide(scenario, "srp_sc", scenario.device().device_id), ResponseCode.E4, "no ADT file", "MP134B R4")


def test_sc_device_of_a_healthy_supplier_is_e4(scenario: Scenario) -> None:
    scenario.contingency_ready()
    healthy = scenario.devices(mpid_of="solr-supplier", device_type="ESME")[0]
    cv = 1 if healthy.smets == 1 else 4
    refused(decide(scenario, "srp_sc", healthy.device_id, cv=cv), ResponseCode.E4, "does not belong to a failed supplier")


def test_sc_after_withdrawal_is_e3(scenario: Scenario) -> None:
    scenario.contingency_ready()
    scenario.must("authority", d.WithdrawContingency("failed-supplier", scenario.actor("srp_sc").user_id))
    refused(decide(scenario, "srp_sc", scenario.device().device_id), ResponseCode.E3, "withdrew")


def test_sc_enablement_expiry_one_second_either_side(scenario: Scenario) -> None:
    scenario.fail_supplier()
    until = scenario.clock.now() + dt.timedelta(days=10)
    scenario.must("authority", d.EnableContingency("failed-supplier", scenario.actor("srp_sc").user_id, until))
    scenario.submit_adt()
    meter = scenario.device().device_id
    scenario.clock.set(until - dt.timedelta(seconds=1))
    assert isinstance(decide(scenario, "srp_sc", meter), Admissible)
    scenario.clock.set(until)
    assert isinstance(decide(scenario, "srp_sc", meter), Admissible)
    scenario.clock.set(until + dt.timedelta(seconds=1))
    refused(decide(scenario, "srp_sc", meter), ResponseCode.E3, "expired")


def test_enablement_longer_than_90_days_after_appointment_is_refused(scenario: Scenario) -> None:
    scenario.fail_supplier()
    appointed = scenario.clock.now()
    sc_user = scenario.actor("srp_sc").user_id
    too_late = appointed + dt.timedelta(days=90, seconds=1)
    outcome = scenario.direct("authority", d.EnableContingency("failed-supplier", sc_user, too_late))
    assert not outcome.accepted and "within 90 days" in outcome.reason
    scenario.must("authority", d.EnableContingency("failed-supplier", sc_user, appointed + dt.timedelta(days=90)))


def test_after_mpid_transfer_both_failed_supplier_and_sc_get_e4(scenario: Scenario) -> None:
    scenario.contingency_ready()
    scenario.confirm_takeover()
    scenario.must("dcc_operator", d.TransferMpids("failed-supplier", "solr-supplier"))
    meter = scenario.device().device_id
    refused(decide(scenario, "srp_sc", meter), ResponseCode.E4, "transferred")
    refused(decide(scenario, "failed_supplier_is", meter), ResponseCode.E4, "not held by failed-supplier")
    assert isinstance(decide(scenario, "solr_is", meter), Admissible)


# --- the SoLR state machine ------------------------------------------------------------------


def test_directive_issuers_are_checked(scenario: Scenario) -> None:
    outcome = scenario.direct("pma", d.RevokeLicence("failed-supplier"))
    assert not outcome.accepted and "only be issued by the authority" in outcome.reason
    outcome = scenario.direct("srp_sc", d.SubmitAdt("failed-supplier", 60, {"1.6": 1}))
    assert not outcome.accepted and "officer ARO" in outcome.reason


def test_full_life_cycle_with_pma_delays(scenario: Scenario) -> None:
    scenario.fail_supplier()
    event = scenario.state.events["failed-supplier"]
    assert event.stage is SolrStage.SOLR_APPOINTED
    until = scenario.clock.now() + dt.timedelta(days=14)
    considered = "prepayment customers present; SRP holds keys; disorderly exit"
    scenario.must("pma", d.DelayRevocation("failed-supplier", until, considered))
    scenario.must("pma", d.DelayMpidTransfer("failed-supplier", until, considered))

    early = scenario.direct("dcc_operator", d.TransferMpids("failed-supplier", "solr-supplier"))
    assert not early.accepted and "delayed the transfer" in early.reason
    revoke = scenario.direct("dcc_operator", d.RevokeCertificates("failed-supplier"))
    assert not revoke.accepted and "delayed revocation" in revoke.reason

    scenario.clock.set(until)
    unconfirmed = scenario.direct("dcc_operator", d.TransferMpids("failed-supplier", "solr-supplier"))
    assert not unconfirmed.accepted and "not yet confirmed" in unconfirmed.reason

    wrong = scenario.direct("solr_is", d.ConfirmTakeover("other-user", "a", "b", "c", "d", "e"))
    assert not wrong.accepted
    scenario.confirm_takeover()
    assert scenario.state.events["failed-supplier"].stage is SolrStage.CONFIRMED
    scenario.must("dcc_operator", d.TransferMpids("failed-supplier", "solr-supplier"))
    revoked = scenario.must("dcc_operator", d.RevokeCertificates("failed-supplier"))
    failed_users = {scenario.actor(n).user_id for n in ("failed_supplier_is", "failed_supplier_gs")}
    assert failed_users <= set(revoked.revoke_users)
    assert scenario.actor("srp_sc").user_id not in revoked.revoke_users
    assert scenario.state.events["failed-supplier"].stage is SolrStage.CLOSED
    assert scenario.state.mpids_of("solr-supplier") >= {"FAIL", "FALG"}


def test_pma_delay_must_record_what_was_considered(scenario: Scenario) -> None:
    scenario.fail_supplier()
    until = scenario.clock.now() + dt.timedelta(days=1)
    outcome = scenario.direct("pma", d.DelayRevocation("failed-supplier", until, "ok"))
    assert not outcome.accepted and "considered" in outcome.reason


def test_nothing_to_act_on_before_licence_revocation(scenario: Scenario) -> None:
    outcome = scenario.direct("authority", d.AppointSolr("failed-supplier", "solr-supplier"))
    assert not outcome.accepted and "licence has not been revoked" in outcome.reason


def test_directives_survive_the_xml_round_trip(scenario: Scenario) -> None:
    until = dt.datetime(2026, 4, 1, tzinfo=dt.timezone.utc)
    directive = d.EnableContingency("failed-supplier", scenario.actor("srp_sc").user_id, until)
    verified = scenario.verified_directive("authority", directive)
    assert d.parse_directive(verified) == directive
    assert verified.signer.eui64 == scenario.actor("authority").user_id
