"""One User ID, more than one role (a DCC Boxed world): the policy decides in the role that fits.

DCC Boxed's supplier ``90-B3-D5-1F-30-01-00-00`` sends electricity and gas requests, its network
operator ``90-B3-D5-1F-30-02-00-00`` distributor and transporter ones. The request is decided in the
first of the user's roles that is eligible for the SRV and, for a device, serves the device's fuel
through an MPID the user's party holds; the audit names that role. In the default world every
User ID keeps exactly one role (SPEC §1).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from gateway.boxed import init_boxed_world
from gateway.codes import ResponseCode
from gateway.eui64 import Eui64
from gateway.policy import authorise as policy
from gateway.policy.access import AccessControl
from gateway.policy.authorise import Admissible, Refusal, authorise
from gateway.policy.state import Device, RegistryState, User, initial_state
from gateway.smki.repository import SmkiRepository
from gateway.store.sqlite import SqliteStore
from tests.scenario import Scenario, make_scenario, prepayment_body
from tests.shared_data import shared_path

A0_ESME = Eui64.parse("00-DB-12-34-56-78-90-A0")
A1_GSME = Eui64.parse("00-DB-12-34-56-78-90-A1")
NOW = dt.datetime(2026, 6, 1, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("boxed-policy-world")
    init_boxed_world(directory, shared_path("zaz1", "keystore.json"), now=NOW, devices=12, seed="boxed-policy")
    return directory


@pytest.fixture
def scenario(world_dir: Path) -> Scenario:
    shared_path("duis", "srv-eligibility-matrix.json")
    return make_scenario(world_dir)


def decide(scenario: Scenario, actor: str, target: Eui64, **fields: object) -> Refusal | Admissible:
    request = scenario.request(actor, target, **fields)
    return authorise(scenario.state, request, scenario.config, scenario.clock.now())


def acted_as(verdict: Refusal | Admissible) -> str:
    assert isinstance(verdict, Admissible), f"refused {verdict.code.value}: {verdict.reason}"  # type: ignore[union-attr]
    return verdict.role


def refused(verdict: Refusal | Admissible, code: ResponseCode) -> str:
    assert isinstance(verdict, Refusal), f"expected {code.value}, admitted as {verdict.role}"  # type: ignore[union-attr]
    assert verdict.code is code, f"expected {code.value}, got {verdict.code.value}: {verdict.reason}"
    return verdict.reason


# --- the supplier: IS and GS ------------------------------------------------------------------


def test_the_boxed_supplier_reads_its_electricity_meter_as_is_and_its_gas_meter_as_gs(scenario: Scenario) -> None:
    assert acted_as(decide(scenario, "failed_supplier_is", A0_ESME, srv="4.1.1")) == "IS"
    assert acted_as(decide(scenario, "failed_supplier_is", A1_GSME, srv="4.1.1")) == "GS"


def test_update_payment_mode_goes_to_either_meter_in_the_role_of_its_fuel(scenario: Scenario) -> None:
    assert acted_as(decide(scenario, "failed_supplier_is", A0_ESME, cv=4, body=prepayment_body())) == "IS"
    assert acted_as(decide(scenario, "failed_supplier_is", A1_GSME, cv=4, body=prepayment_body())) == "GS"


def test_an_srv_only_one_role_may_send_is_decided_in_that_role_or_refused(scenario: Scenario) -> None:
    # 4.1.4 Read Instantaneous Import Block Counters: GS only (the real matrix).
    assert acted_as(decide(scenario, "failed_supplier_is", A1_GSME, srv="4.1.4")) == "GS"
    # To the ESME the device-type step (E11) refuses it first; the role step alone says why too.
    assert _reach(scenario.state, scenario.actor("failed_supplier_is").user_id, ("GS",), scenario.state.devices[A0_ESME]) == (
        "a GS user is not the supplier of a ESME"
    )


def test_no_role_eligible_is_e2_naming_every_role(scenario: Scenario) -> None:
    # 9.1 Request Customer Identification Number: neither IS nor GS may send it (the real matrix).
    reason = refused(decide(scenario, "failed_supplier_is", A0_ESME, srv="9.1"), ResponseCode.E2)
    assert reason.startswith("roles IS, GS may not send SRV 9.1")


def test_a_device_of_another_supplier_is_e4_with_each_roles_reason(scenario: Scenario) -> None:
    solr_meter = scenario.device(mpid_of="solr-supplier", device_type="GSME", smets=2)
    reason = refused(decide(scenario, "failed_supplier_is", solr_meter.device_id, srv="4.1.1"), ResponseCode.E4)
    assert reason.startswith("as IS: ") and "; as GS: " in reason and "not held by failed-supplier" in reason


# --- the network operator: ED and GT, through the device's network operator MPID ----------------------


def test_the_network_operator_reaches_its_meters_as_distributor_and_transporter(scenario: Scenario) -> None:
    assert acted_as(decide(scenario, "network_ed", A0_ESME, srv="4.1.1")) == "ED"
    assert acted_as(decide(scenario, "network_ed", A1_GSME, srv="4.1.1")) == "GT"
    # 14.1 Record Network Data (Gas): GT only.
    assert acted_as(decide(scenario, "network_ed", A1_GSME, srv="14.1")) == "GT"


def test_a_network_operator_cannot_reach_a_device_without_its_network_mpid(scenario: Scenario) -> None:
    # The mixed fleet records no network operator: nobody reaches it as ED or GT.
    mixed = next(d for d in scenario.devices(mpid_of="failed-supplier", device_type="ESME") if d.network_mpid is None)
    reason = refused(decide(scenario, "network_ed", mixed.device_id, srv="4.1.1"), ResponseCode.E4)
    assert "has no registered network operator" in reason


def test_the_network_operator_may_not_switch_payment_mode(scenario: Scenario) -> None:
    reason = refused(decide(scenario, "network_ed", A0_ESME, cv=4), ResponseCode.E2)
    assert reason.startswith("roles ED, GT may not send SRV 1.6")


# --- devices that are not meters: the fuel they serve --------------------------------------------------


def _reach(state: RegistryState, user_id: Eui64, roles: tuple[str, ...], device: Device) -> tuple[str, str | None] | str:
    """The device-authorisation step alone (the device-type step before it belongs to E11)."""
    context = policy._Context(state, None, None, NOW)  # type: ignore[arg-type]
    user = state.users[user_id]
    try:
        return policy.device_authorised(context, user, roles, device)
    except policy._Refused as refusal:
        return refusal.reason


@pytest.mark.parametrize(
    ("device", "roles", "expected"),
    [
        pytest.param("00-DB-12-34-56-78-90-A2", ("GS", "IS"), "GS", id="comms-hub-serves-both-fuels"),
        pytest.param("00-DB-12-34-56-78-90-A4", ("IS", "GS"), "IS", id="ppmid-serves-both-fuels"),
        pytest.param("00-DB-12-34-56-78-90-A3", ("IS", "GS"), "GS", id="gas-proxy-serves-gas"),
        pytest.param("00-DB-12-34-56-78-90-A5", ("GS", "IS"), "IS", id="load-switch-serves-electricity"),
    ],
)
def test_non_meter_devices_are_reached_in_a_role_of_a_fuel_they_serve(
    scenario: Scenario, device: str, roles: tuple[str, ...], expected: str
) -> None:
    state = scenario.state
    supplier = scenario.actor("failed_supplier_is").user_id
    assert _reach(state, supplier, roles, state.devices[Eui64.parse(device)]) == (expected, None)


def test_a_gas_proxy_is_not_reached_as_is_alone(scenario: Scenario) -> None:
    state = scenario.state
    supplier = scenario.actor("failed_supplier_is").user_id
    reason = _reach(state, supplier, ("IS",), state.devices[Eui64.parse("00-DB-12-34-56-78-90-A3")])
    assert reason == "a IS user is not the supplier of a GPF"


# --- the audit names the role acted in ------------------------------------------------------------------


async def test_the_audit_record_names_the_role_acted_in(scenario: Scenario, world_dir: Path, tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store.db")
    await store.open()
    try:
        access = await AccessControl.restore(
            initial=initial_state(scenario.manifest), store=store, config=scenario.config, clock=scenario.clock,
            repository=SmkiRepository.load_world(world_dir),
        )
        for target in (A0_ESME, A1_GSME):
            raw = scenario.signed_request("failed_supplier_is", target, srv="4.1.1")
            decision = await access.decide_request(scenario.verifier.verify_request(raw), raw)
            assert decision.code is ResponseCode.I99, decision.reason
        records = [record.entry async for record in store.audit_records() if record.entry.kind == "request"]
        assert [(r.detail["target"], r.detail["role"]) for r in records] == [(str(A0_ESME), "IS"), (str(A1_GSME), "GS")]
    finally:
        await store.close()


# --- users as values ------------------------------------------------------------------------------------------


def test_a_user_is_given_its_one_role_unless_more_are_listed() -> None:
    user_id = Eui64.parse("90-B3-D5-1F-30-11-00-01")
    assert User(user_id, "a", "p", "IS").roles == ("IS",)
    assert User(user_id, "a", "p", None, "ARO").roles == ()
    assert User(user_id, "a", "p", "IS", roles=("IS", "GS")).roles == ("IS", "GS")
    with pytest.raises(ValueError, match="must start with its role"):
        User(user_id, "a", "p", "IS", roles=("GS", "IS"))
