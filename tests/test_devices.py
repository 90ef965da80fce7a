"""The simulated meters: run-down in time, SR 1.6 execution, trust anchors, the fleet, persistence.

Times are checked one second either side of each event. SMETS2 commands are
real GBCS: built by ``build_update_payment_mode_precommand`` and signed with a
generated world's DS keys; the RTDS 1.6 COMMAND vectors (signed by DCC Boxed
with the ZAZ1 supplier key) are executed too, when ../shared is present.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree

from gateway.clock import FixedClock
from gateway.devices import (
    AlertKind,
    ContentError,
    ExecutionResult,
    MemoryMeterStore,
    MeterAlert,
    MeterDefaults,
    MeterFleet,
    MeterRefusal,
    MeterState,
    PaymentModeCommand,
    StoreMeterPersistence,
    TrustAnchor,
    TrustAnchorError,
    apply_payment_mode,
    execute_signed_precommand,
    execute_sr_body,
    new_meter,
    next_event_at,
    perform_payment_mode_command,
    read_payment_mode_content,
    run_down,
    supply_lost_at,
)
from gateway.devices.meter import (
    MICROS_PER_HOUR,
    consumption_rate,
    state_from_json,
    state_to_json,
)
from gateway.eui64 import Eui64
from gateway.gbcs import (
    CREDIT_MODE_CODES,
    DUIS_CANCELLATION_DATE_TIME,
    CraFlag,
    GeneralCipheringApdu,
    GeneralSigningApdu,
    PrepaymentSettings,
    build_update_payment_mode_precommand,
    sign_apdu,
)
from gateway.manifest import Device, Manifest
from gateway.store.sqlite import SqliteStore
from gateway.world import init_world
from tests.scenario import credit_body, prepayment_body
from tests.shared_data import shared_path
from tests.test_gbcs import (
    COMMANDS,
    PRECOMMANDS,
    code_of,
    device_type_of,
    duis_request_for,
    read_vector,
)

UTC = dt.UTC
T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SECOND = dt.timedelta(seconds=1)
METER = Eui64.parse("00-DB-12-34-56-78-90-A0")
FINGERPRINT = "00" * 32
PENNY_PER_100_S = 36
"""36 p/h: exactly one penny every 100 seconds, so event instants are easy to state."""


def meter(**changes: object) -> MeterState:
    """A SMETS2 prepayment ESME at T0 consuming a penny every 100 s, with ``changes`` applied."""
    state = new_meter(
        device_id=METER,
        device_type="ESME",
        smets=2,
        payment_mode="Prepayment",
        credit_pence=1000,
        trust_anchor_fingerprint=FINGERPRINT,
        at=T0,
    )
    return replace(state, **{"consumption_pence_per_hour": PENNY_PER_100_S, **changes})  # type: ignore[arg-type]


def kinds(alerts: Sequence[MeterAlert]) -> list[AlertKind]:
    return [alert.kind for alert in alerts]


# --- run-down -----------------------------------------------------------------------------


def test_supply_is_disabled_at_the_threshold_instant_and_not_a_second_before() -> None:
    state = meter(credit_pence=10, emergency_credit_pence=0)
    disabled_at = T0 + 1000 * SECOND

    before, early = run_down(state, disabled_at - SECOND)
    assert (before.supply, before.credit_pence, early) == ("Enabled", 1, ())

    at, alerts = run_down(before, disabled_at)
    assert (at.supply, at.credit_pence) == ("Disabled", 0)
    assert kinds(alerts) == [AlertKind.SUPPLY_DISABLED]
    assert alerts[0].at == disabled_at and alerts[0].alert_code == 0x8F0F

    after, late = run_down(at, disabled_at + SECOND)
    assert (after.supply, late) == ("Disabled", ())


def test_low_credit_is_raised_once_when_credit_falls_below_the_level() -> None:
    state = meter(credit_pence=102)  # below 100 p means 99 p: 3 pennies, 300 s
    crossing = T0 + 300 * SECOND
    quiet, none = run_down(state, crossing - SECOND)
    assert (quiet.credit_pence, none) == (100, ())
    crossed, alerts = run_down(quiet, crossing)
    assert kinds(alerts) == [AlertKind.LOW_CREDIT]
    assert (alerts[0].at, alerts[0].alert_code, crossed.credit_pence) == (crossing, 0x810D, 99)
    _later, again = run_down(crossed, crossing + 50 * 100 * SECOND)
    assert AlertKind.LOW_CREDIT not in kinds(again)


def test_emergency_credit_carries_supply_until_it_is_exhausted() -> None:
    state = meter(credit_pence=5, emergency_credit_pence=10)
    activated_at, exhausted_at = T0 + 500 * SECOND, T0 + 1500 * SECOND

    on_emergency, alerts = run_down(state, activated_at)
    assert kinds(alerts) == [AlertKind.EMERGENCY_CREDIT_ACTIVATED] and alerts[0].at == activated_at
    assert on_emergency.emergency_credit_active and on_emergency.supply == "Enabled"

    still_on, _ = run_down(on_emergency, exhausted_at - SECOND)
    assert (still_on.supply, still_on.emergency_credit_pence, still_on.debt_pence) == ("Enabled", 1, 9)

    off, alerts = run_down(still_on, exhausted_at)
    assert kinds(alerts) == [AlertKind.SUPPLY_DISABLED] and alerts[0].at == exhausted_at
    assert (off.supply, off.emergency_credit_pence, off.debt_pence, off.credit_pence) == ("Disabled", 0, 10, 0)


def test_one_long_run_down_equals_many_short_ones() -> None:
    state = meter(credit_pence=130, consumption_pence_per_hour=7)  # 7 p/h: fractions of a penny carry over
    end = T0 + dt.timedelta(hours=100)
    at_once, alerts_at_once = run_down(state, end)
    stepwise, stepwise_alerts = state, list[MeterAlert]()
    moment = T0
    while moment < end:
        moment = min(end, moment + dt.timedelta(seconds=997))
        stepwise, raised = run_down(stepwise, moment)
        stepwise_alerts.extend(raised)
    assert stepwise == at_once
    assert list(alerts_at_once) == stepwise_alerts
    assert kinds(stepwise_alerts) == [
        AlertKind.LOW_CREDIT,
        AlertKind.EMERGENCY_CREDIT_ACTIVATED,
        AlertKind.SUPPLY_DISABLED,
    ]


def test_disablement_instant_matches_the_closed_form() -> None:
    """Total consumption is floor(t·rate/1h): supply goes when credit + emergency credit are used up."""
    state = meter(credit_pence=77, consumption_pence_per_hour=13)
    micros = -(-(77 + state.emergency_credit_pence) * MICROS_PER_HOUR // 13)
    expected = T0 + dt.timedelta(microseconds=micros)
    _, alerts = run_down(state, expected + SECOND)
    assert [alert.at for alert in alerts if alert.kind is AlertKind.SUPPLY_DISABLED] == [expected]


def test_credit_and_disabled_meters_do_not_run_down() -> None:
    credit = meter(payment_mode="Credit", credit_pence=50)
    assert run_down(credit, T0 + dt.timedelta(days=365)) == (credit, ())
    assert next_event_at(credit) is None
    disabled = meter(supply="Disabled", credit_pence=0, emergency_credit_pence=0)
    assert run_down(disabled, T0 + dt.timedelta(days=365)) == (disabled, ())


def test_a_clock_behind_the_meter_changes_nothing() -> None:
    state = meter()
    assert run_down(state, T0 - dt.timedelta(hours=1)) == (state, ())


# --- switching payment mode ---------------------------------------------------------------


def test_credit_mode_enables_a_supply_disabled_for_lack_of_credit() -> None:
    disabled, _ = run_down(meter(credit_pence=1, emergency_credit_pence=0), T0 + dt.timedelta(hours=1))
    assert disabled.supply == "Disabled"
    now = T0 + dt.timedelta(hours=2)
    on_credit, alerts = apply_payment_mode(disabled, to_credit=True, prepayment_settings=None, now=now)
    assert (on_credit.payment_mode, on_credit.supply) == ("Credit", "Enabled")
    assert kinds(alerts) == [AlertKind.PAYMENT_MODE_CHANGED]
    assert (alerts[0].at, alerts[0].alert_code) == (now, 0x8154)
    assert "supply enabled again" in alerts[0].detail
    assert run_down(on_credit, now + dt.timedelta(days=30))[0] == on_credit


def test_prepayment_threshold_above_the_balance_takes_effect_at_once() -> None:
    credit = meter(payment_mode="Credit", credit_pence=300)
    settings = PrepaymentSettings(suspend_debt_disabled=False, suspend_debt_emergency=False, disablement_threshold=500)
    state, alerts = apply_payment_mode(credit, to_credit=False, prepayment_settings=settings, now=T0)
    assert kinds(alerts) == [AlertKind.PAYMENT_MODE_CHANGED, AlertKind.EMERGENCY_CREDIT_ACTIVATED]
    assert (state.payment_mode, state.disablement_threshold_pence, state.emergency_credit_active) == (
        "Prepayment",
        500,
        True,
    )


def test_same_mode_again_raises_no_alert() -> None:
    state, alerts = apply_payment_mode(meter(payment_mode="Credit"), to_credit=True, prepayment_settings=None, now=T0)
    assert alerts == () and state.payment_mode == "Credit"


def test_future_dated_change_executes_at_its_time_with_the_future_dated_alert() -> None:
    when = T0 + dt.timedelta(hours=1)
    scheduled, alerts, detail = perform_payment_mode_command(meter(), PaymentModeCommand(True, None, when), T0)
    assert scheduled.payment_mode == "Prepayment" and scheduled.pending is not None and alerts == ()
    assert "scheduled" in detail and next_event_at(scheduled) == when
    waiting, early = run_down(scheduled, when - SECOND)
    assert waiting.payment_mode == "Prepayment" and early == ()
    done, alerts = run_down(waiting, when)
    assert (done.payment_mode, done.pending) == ("Credit", None)
    assert [(a.kind, a.at, a.alert_code) for a in alerts] == [(AlertKind.PAYMENT_MODE_CHANGED, when, 0x8F66)]


@pytest.mark.parametrize(
    ("changes", "lost_after_seconds"),
    [
        pytest.param({"credit_pence": 10, "emergency_credit_pence": 0}, 1000, id="threshold-no-emergency-credit"),
        pytest.param({"credit_pence": 10, "emergency_credit_pence": 5}, 1500, id="then-emergency-credit"),
        pytest.param({"credit_pence": 0, "emergency_credit_pence": 3, "emergency_credit_active": True}, 300, id="in-emergency"),
        pytest.param({"payment_mode": "Credit"}, None, id="credit-meter"),
        pytest.param({"credit_pence": 100_000}, None, id="beyond-the-horizon"),
    ],
)
def test_supply_lost_at_is_the_instant_run_down_disables_supply(changes: dict[str, object], lost_after_seconds: int | None) -> None:
    state = meter(**changes)
    horizon = T0 + dt.timedelta(days=7)
    lost = supply_lost_at(state, horizon)
    if lost_after_seconds is None:
        assert lost is None and run_down(state, horizon)[0].supply == "Enabled"
        return
    assert lost == T0 + lost_after_seconds * SECOND
    assert run_down(state, lost - dt.timedelta(microseconds=1))[0].supply == "Enabled"
    assert run_down(state, lost)[0].supply == "Disabled"
    assert supply_lost_at(state, lost - SECOND) is None  # not within a shorter horizon


def test_supply_lost_at_sees_a_future_dated_switch_to_credit_first() -> None:
    state = meter(credit_pence=10, emergency_credit_pence=0)
    scheduled, _, _ = perform_payment_mode_command(state, PaymentModeCommand(True, None, T0 + 500 * SECOND), T0)
    assert supply_lost_at(scheduled, T0 + dt.timedelta(days=1)) is None
    off, _ = run_down(state, T0 + 2000 * SECOND)
    assert supply_lost_at(off, T0 + dt.timedelta(days=1)) == off.updated_at  # already off supply


def test_cancellation_removes_the_pending_change() -> None:
    when = T0 + dt.timedelta(hours=1)
    scheduled, _, _ = perform_payment_mode_command(meter(), PaymentModeCommand(True, None, when), T0)
    cancel = PaymentModeCommand(True, None, DUIS_CANCELLATION_DATE_TIME)
    cancelled, _, detail = perform_payment_mode_command(scheduled, cancel, T0 + SECOND)
    assert cancelled.pending is None and detail.startswith("cancelled")
    assert run_down(cancelled, when + SECOND)[0].payment_mode == "Prepayment"


def test_state_json_round_trip() -> None:
    settings = PrepaymentSettings(suspend_debt_disabled=True, suspend_debt_emergency=False, disablement_threshold=-5)
    state = meter(
        pending=PaymentModeCommand(False, settings, T0 + SECOND),
        executed_request_ids=("a", "b"),
        consumption_carry=12345,
    )
    assert state_from_json(state_to_json(state)) == state
    with pytest.raises(ValueError, match="credit_pence"):
        state_from_json({**state_to_json(state), "credit_pence": "ten"})


def test_consumption_rate_is_a_fixed_function_of_the_device_id() -> None:
    rates = {consumption_rate(Eui64(0x00DB12D000000000 + n)) for n in range(200)}
    assert rates <= set(range(5, 41)) and len(rates) > 20
    assert consumption_rate(METER) == consumption_rate(Eui64.parse(str(METER)))


# --- SMETS1: from the Service Request body ------------------------------------------------


def smets1(**changes: object) -> MeterState:
    return meter(smets=1, **changes)


def test_smets1_executes_the_body() -> None:
    disabled = smets1(supply="Disabled", credit_pence=0, emergency_credit_pence=0)
    state, alerts, response = execute_sr_body(disabled, credit_body(), T0)
    assert response.ok and (state.payment_mode, state.supply) == ("Credit", "Enabled")
    assert kinds(alerts) == [AlertKind.PAYMENT_MODE_CHANGED]
    back, _, response = execute_sr_body(state, prepayment_body(), T0 + SECOND)
    assert response.ok and back.payment_mode == "Prepayment"


def test_smets1_does_not_execute_a_redelivered_request_twice() -> None:
    request = "90-B3-D5-1F-30-13-00-01:00-DB-12-34-56-78-90-A0:1000"
    on_credit, _, _ = execute_sr_body(smets1(), credit_body(), T0, request_id=request)
    on_prepayment, _, _ = execute_sr_body(on_credit, prepayment_body(), T0 + SECOND, request_id=request[:-1] + "1")
    again, alerts, response = execute_sr_body(on_prepayment, credit_body(), T0 + 2 * SECOND, request_id=request)
    assert again is on_prepayment and alerts == ()
    assert response.ok and "already executed" in response.detail


def test_smets1_remembers_a_bounded_number_of_request_ids() -> None:
    state = smets1()
    for counter in range(40):
        state, _, _ = execute_sr_body(state, credit_body(), T0, request_id=f"r:{counter}")
    assert len(state.executed_request_ids) == 16 and state.executed_request_ids[-1] == "r:39"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(etree.Element("{urn:other}UpdatePaymentMode"), "executes sr:UpdatePaymentMode", id="foreign-ns"),
        pytest.param(etree.Element("{http://www.dccinterface.co.uk/ServiceUserGateway}UpdatePaymentMode"),
                     "exactly one", id="neither-credit-nor-prepayment"),
    ],
)  # fmt: skip
def test_smets1_refuses_what_is_not_sr_1_6(body: etree._Element, reason: str) -> None:
    with pytest.raises(MeterRefusal, match=reason):
        execute_sr_body(smets1(), body, T0)


def test_smets2_refuses_the_service_request_body() -> None:
    with pytest.raises(MeterRefusal, match="Signed Pre-Command"):
        execute_sr_body(meter(), credit_body(), T0)


# --- SMETS2: from a Signed Pre-Command, against the trust anchor --------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    root = tmp_path_factory.mktemp("devices")
    return init_world(root / "world", devices=8, seed="device-tests", shared_dir=root / "no-shared")


def ds_key(world: Manifest, actor: str) -> ec.EllipticCurvePrivateKey:
    pair = world.actor(actor).digital_signing
    assert pair is not None
    key = serialization.load_pem_private_key(pair.key.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def anchor_of(world: Manifest, actor: str) -> TrustAnchor:
    pair = world.actor(actor).digital_signing
    assert pair is not None
    return TrustAnchor.from_certificate(x509.load_pem_x509_certificate(pair.cert.read_bytes()), actor=actor)


def world_device(world: Manifest, *, smets: int, device_type: str, mpid: str) -> Device:
    return next(
        d for d in world.devices if (d.smets, d.type, d.supplier_mpid) == (smets, device_type, mpid)
    )  # fmt: skip


def installed(world: Manifest, device: Device, anchor_actor: str) -> MeterState:
    return new_meter(
        device_id=device.device_id,
        device_type=device.type,
        smets=device.smets,
        payment_mode=device.payment_mode,
        credit_pence=device.credit_pence,
        trust_anchor_fingerprint=anchor_of(world, anchor_actor).fingerprint,
        at=T0,
    )


def precommand(
    world: Manifest,
    device: Device,
    *,
    counter: int,
    signer: str | None = "failed_supplier_is",
    to_credit: bool = True,
    prepayment: PrepaymentSettings | None = None,
    recipient: Eui64 | None = None,
    device_type: str | None = None,
) -> bytes:
    """A Signed Pre-Command as the SRP would return it on CV5 (``signer`` None: left unsigned)."""
    apdu = build_update_payment_mode_precommand(
        counter=counter,
        originator=world.actor("srp_sc").user_id,
        recipient=recipient or device.device_id,
        device_type=device_type or device.type,  # type: ignore[arg-type]
        to_credit=to_credit,
        prepayment=prepayment,
    )
    return (apdu if signer is None else sign_apdu(apdu, ds_key(world, signer))).encode()


@pytest.fixture(scope="module")
def esme(world: Manifest) -> Device:
    return world_device(world, smets=2, device_type="ESME", mpid="FAIL")


@pytest.fixture(scope="module")
def esme_state(world: Manifest, esme: Device) -> MeterState:
    return installed(world, esme, "failed_supplier_is")


def execute(world: Manifest, state: MeterState, apdu: bytes, anchor: str = "failed_supplier_is") -> MeterState:
    changed, _alerts, response = execute_signed_precommand(state, apdu, anchor_of(world, anchor), T0)
    assert response.ok
    return changed


def test_smets2_executes_a_precommand_signed_with_the_failed_suppliers_ds_key(
    world: Manifest, esme: Device, esme_state: MeterState
) -> None:
    apdu = precommand(world, esme, counter=1001)
    state, alerts, response = execute_signed_precommand(esme_state, apdu, anchor_of(world, "failed_supplier_is"), T0)
    assert response.ok and "ECS02" in response.detail
    assert (state.payment_mode, state.last_gbcs_counter) == ("Credit", 1001)
    assert kinds(alerts) == [AlertKind.PAYMENT_MODE_CHANGED]


def test_smets2_gas_meter_trusts_the_gas_suppliers_key(world: Manifest) -> None:
    gsme = world_device(world, smets=2, device_type="GSME", mpid="FALG")
    state = installed(world, gsme, "failed_supplier_gs")
    settings = PrepaymentSettings(suspend_debt_disabled=True, suspend_debt_emergency=True, disablement_threshold=25)
    on_credit = execute(
        world, state, precommand(world, gsme, counter=5, signer="failed_supplier_gs"), "failed_supplier_gs"
    )
    assert on_credit.payment_mode == "Credit"
    apdu = precommand(world, gsme, counter=6, signer="failed_supplier_gs", to_credit=False, prepayment=settings)
    back = execute(world, on_credit, apdu, "failed_supplier_gs")
    assert (back.payment_mode, back.disablement_threshold_pence) == ("Prepayment", 25)


def test_smets2_prepayment_precommand_sets_the_threshold(world: Manifest, esme: Device, esme_state: MeterState) -> None:
    on_credit = execute(world, esme_state, precommand(world, esme, counter=10))
    settings = PrepaymentSettings(suspend_debt_disabled=False, suspend_debt_emergency=True, disablement_threshold=-20)
    back = execute(world, on_credit, precommand(world, esme, counter=11, to_credit=False, prepayment=settings))
    assert (back.payment_mode, back.disablement_threshold_pence, back.last_gbcs_counter) == ("Prepayment", -20, 11)


def _refusal(world: Manifest, state: MeterState, apdu: bytes, match: str) -> None:
    anchor = anchor_of(world, "failed_supplier_is")
    with pytest.raises(MeterRefusal, match=match):
        execute_signed_precommand(state, apdu, anchor, T0)


def test_smets2_refuses_a_precommand_signed_by_the_solr(world: Manifest, esme: Device, esme_state: MeterState) -> None:
    """The SoLR has DS keys of its own, but they are not this meter's trust anchor."""
    _refusal(world, esme_state, precommand(world, esme, counter=1001, signer="solr_is"), "does not verify")


def test_smets2_refuses_replayed_and_older_counters(world: Manifest, esme: Device, esme_state: MeterState) -> None:
    apdu = precommand(world, esme, counter=2000)
    accepted = execute(world, esme_state, apdu)
    _refusal(world, accepted, apdu, "not greater than 2000")
    _refusal(world, accepted, precommand(world, esme, counter=1999), "replay")


def test_smets2_refuses_another_meters_command(world: Manifest, esme: Device, esme_state: MeterState) -> None:
    other = world_device(world, smets=2, device_type="ESME", mpid="SOLR").device_id
    _refusal(world, esme_state, precommand(world, esme, counter=3000, recipient=other), "not to this meter")


def test_smets2_refuses_a_gas_message_code_on_an_electricity_meter(
    world: Manifest, esme: Device, esme_state: MeterState
) -> None:
    _refusal(world, esme_state, precommand(world, esme, counter=3001, device_type="GSME"), "0x006c is not SR 1.6")


def test_smets2_refuses_unsigned_and_null_signed_precommands(
    world: Manifest, esme: Device, esme_state: MeterState
) -> None:
    unsigned = precommand(world, esme, counter=3002, signer=None)
    _refusal(world, esme_state, unsigned, "not signed")
    _refusal(world, esme_state, unsigned + b"\x00", "not signed")


def test_smets2_refuses_content_that_contradicts_the_message_code(
    world: Manifest, esme: Device, esme_state: MeterState
) -> None:
    """Signed, addressed and counted right, but ECS02 ("credit") over ECS03 content."""
    settings = PrepaymentSettings(suspend_debt_disabled=False, suspend_debt_emergency=False, disablement_threshold=0)
    prepayment = GeneralSigningApdu.parse(
        precommand(world, esme, counter=3003, signer=None, to_credit=False, prepayment=settings)
    )
    credit_code = replace(prepayment, message_code=0x001A, other_information=bytes.fromhex("001A"))
    apdu = sign_apdu(credit_code, ds_key(world, "failed_supplier_is")).encode()
    _refusal(world, esme_state, apdu, "content refused")


def test_smets2_refuses_responses_and_garbage(world: Manifest, esme: Device, esme_state: MeterState) -> None:
    apdu = GeneralSigningApdu.parse(precommand(world, esme, counter=3004))
    response = sign_apdu(replace(apdu, cra_flag=CraFlag.RESPONSE), ds_key(world, "failed_supplier_is")).encode()
    _refusal(world, esme_state, response, "not a response")
    _refusal(world, esme_state, b"\xdf\x09", "not a General-Signing APDU")


def test_smets1_refuses_a_precommand(world: Manifest, esme: Device, esme_state: MeterState) -> None:
    _refusal(world, replace(esme_state, smets=1), precommand(world, esme, counter=4000), "SMETS1")


def test_smets2_trusts_only_the_certificate_it_holds(world: Manifest, esme: Device, esme_state: MeterState) -> None:
    """Handing the meter the SoLR's certificate with a SoLR-signed command does not make it trusted."""
    apdu = precommand(world, esme, counter=1, signer="solr_is")
    with pytest.raises(MeterRefusal, match="not this meter's trust anchor"):
        execute_signed_precommand(esme_state, apdu, anchor_of(world, "solr_is"), T0)


# --- the fleet ----------------------------------------------------------------------------


def test_fleet_trust_anchors_are_the_install_time_suppliers_ds_certificates(world: Manifest) -> None:
    fleet = MeterFleet.from_manifest(world, FixedClock(T0))
    expected = {
        ("ESME", "FAIL"): "failed_supplier_is",
        ("GSME", "FALG"): "failed_supplier_gs",
        ("ESME", "SOLR"): "solr_is",
        ("GSME", "SOLG"): "solr_is",  # the SoLR has one IS user holding both MPIDs
    }
    for device in world.devices:
        anchor = fleet.trust_anchor(device.device_id)
        assert anchor is not None and anchor.actor == expected[(device.type, device.supplier_mpid)]
        assert anchor.eui64 == world.actor(anchor.actor).user_id and anchor.role == 0x02


def test_fleet_refuses_a_world_whose_supplier_has_no_ds_key(world: Manifest) -> None:
    orphan = replace(world.devices[0], supplier_mpid="NETW")
    with pytest.raises(TrustAnchorError, match="NETW"):
        MeterFleet.from_manifest(replace(world, devices=(orphan,)), FixedClock(T0))


def test_trust_anchor_must_be_a_supplier_ds_certificate(world: Manifest) -> None:
    xml_sign = x509.load_pem_x509_certificate(world.actor("failed_supplier_is").xml_sign.cert.read_bytes())
    with pytest.raises(TrustAnchorError, match="not a Supplier"):
        TrustAnchor.from_certificate(xml_sign)


async def test_fleet_as_json_shows_the_meter_now(world: Manifest, esme: Device) -> None:
    clock = FixedClock(T0)
    fleet = MeterFleet.from_manifest(world, clock)
    await fleet.load()
    view = fleet.as_json(str(esme.device_id))
    assert view is not None
    assert (view["device_id"], view["device_type"], view["smets"], view["supply"]) == (
        str(esme.device_id), "ESME", 2, "Enabled",
    )  # fmt: skip
    assert view["trust_anchor"] == {
        **anchor_of(world, "failed_supplier_is").to_json(),
        "party": "failed-supplier",
    }
    assert anchor_of(world, "failed_supplier_is").to_json()["role"] == "02"
    assert json.loads(json.dumps(view)) == view
    clock.advance(dt.timedelta(days=30))
    later = fleet.as_json(esme.device_id)
    assert later is not None and later["supply"] == "Disabled"
    assert fleet.as_json("00-00-00-00-00-00-00-00") is None and fleet.as_json("nonsense") is None


def disablement_instant(fleet: MeterFleet, device: Device) -> dt.datetime:
    """Credit plus emergency credit used up: ceil((credit + EC)·1h / rate), from the epoch."""
    rate = consumption_rate(device.device_id)
    micros = -(-(device.credit_pence + MeterDefaults().emergency_credit_pence) * MICROS_PER_HOUR // rate)
    return fleet.epoch + dt.timedelta(microseconds=micros)


async def test_fleet_advance_disables_prepayment_meters_on_time(world: Manifest, esme: Device) -> None:
    clock = FixedClock(T0)
    store = MemoryMeterStore()
    fleet = MeterFleet.from_manifest(world, clock, store=store)
    await fleet.load()
    disabled_at = disablement_instant(fleet, esme)

    clock.set(disabled_at - SECOND)
    alerts = await fleet.advance()
    mine = [a for a in alerts if a.device_id == esme.device_id]
    assert AlertKind.SUPPLY_DISABLED not in kinds(mine)
    assert AlertKind.EMERGENCY_CREDIT_ACTIVATED in kinds(mine)
    assert fleet.state(esme.device_id).supply == "Enabled"  # type: ignore[union-attr]

    clock.set(disabled_at)
    alerts = await fleet.advance()
    assert [(a.kind, a.at) for a in alerts if a.device_id == esme.device_id] == [
        (AlertKind.SUPPLY_DISABLED, disabled_at)
    ]
    assert fleet.state(esme.device_id).supply == "Disabled"  # type: ignore[union-attr]
    clock.set(disabled_at + SECOND)
    assert [a for a in await fleet.advance() if a.device_id == esme.device_id] == []

    stored = {state.device_id: state for state in await store.load()}
    assert stored[esme.device_id] == fleet.state(esme.device_id)


async def test_fleet_advance_leaves_credit_meters_alone(world: Manifest) -> None:
    fleet = MeterFleet.from_manifest(world, FixedClock(T0))
    await fleet.load()
    alerts = await fleet.advance(T0 + dt.timedelta(days=365))
    credit_meters = {d.device_id for d in world.devices if d.payment_mode == "Credit"}
    assert credit_meters and not credit_meters & {a.device_id for a in alerts}
    for device_id in credit_meters:
        assert fleet.state(device_id).updated_at == T0  # type: ignore[union-attr]
    assert fleet.next_event_at() is None


async def test_fleet_executes_and_switching_to_credit_restores_supply(world: Manifest, esme: Device) -> None:
    clock = FixedClock(T0)
    fleet = MeterFleet.from_manifest(world, clock)
    await fleet.load()
    clock.set(disablement_instant(fleet, esme) + dt.timedelta(hours=1))
    await fleet.advance()
    assert fleet.state(esme.device_id).supply == "Disabled"  # type: ignore[union-attr]

    result = await fleet.execute(esme.device_id, precommand=precommand(world, esme, counter=7000))
    assert result.ok and result.state is not None
    assert (result.state.payment_mode, result.state.supply) == ("Credit", "Enabled")
    assert kinds(result.alerts) == [AlertKind.PAYMENT_MODE_CHANGED]

    replay = await fleet.execute(esme.device_id, precommand=precommand(world, esme, counter=7000))
    assert not replay.ok and "replay" in replay.detail and replay.state == result.state


async def test_fleet_executes_smets1_bodies_once(world: Manifest) -> None:
    device = world_device(world, smets=1, device_type="ESME", mpid="FAIL")
    fleet = MeterFleet.from_manifest(world, FixedClock(T0))
    await fleet.load()
    first = await fleet.execute(device.device_id, sr_body=credit_body(), request_id="x:y:1")
    again = await fleet.execute(device.device_id, sr_body=credit_body(), request_id="x:y:1")
    assert first.ok and again.ok and "already executed" in again.detail and again.alerts == ()
    refused = await fleet.execute(device.device_id, precommand=b"\xdf")
    assert not refused.ok and "SMETS1" in refused.detail


async def test_fleet_serialises_commands_to_one_meter(world: Manifest, esme: Device) -> None:
    fleet = MeterFleet.from_manifest(world, FixedClock(T0), store=MemoryMeterStore())
    await fleet.load()
    results = await asyncio.gather(
        fleet.execute(esme.device_id, precommand=precommand(world, esme, counter=11)),
        fleet.execute(esme.device_id, precommand=precommand(world, esme, counter=10)),
    )
    assert [r.ok for r in results] == [True, False]
    assert fleet.state(esme.device_id).last_gbcs_counter == 11  # type: ignore[union-attr]


async def test_a_refused_command_changes_and_stores_nothing(world: Manifest, esme: Device) -> None:
    store = MemoryMeterStore()
    fleet = MeterFleet.from_manifest(world, FixedClock(T0 + dt.timedelta(hours=2)), store=store)
    await fleet.load()
    before = fleet.state(esme.device_id)
    refused = await fleet.execute(esme.device_id, precommand=precommand(world, esme, counter=9, signer="solr_is"))
    assert not refused.ok and "does not verify" in refused.detail and refused.alerts == ()
    assert fleet.state(esme.device_id) == before and await store.load() == []


async def test_fleet_rejects_unknown_devices_and_ambiguous_calls(world: Manifest, esme: Device) -> None:
    fleet = MeterFleet.from_manifest(world, FixedClock(T0))
    result = await fleet.execute("00-00-00-00-00-00-00-01", sr_body=credit_body())
    assert (result.ok, result.state) == (False, None)
    with pytest.raises(ValueError, match="exactly one"):
        await fleet.execute(esme.device_id)


async def test_fleet_state_survives_a_restart(world: Manifest, esme: Device, tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    clock = FixedClock(T0)
    async with SqliteStore(path) as store:
        fleet = MeterFleet.from_manifest(world, clock, store=StoreMeterPersistence(store))
        await fleet.load()
        clock.advance(dt.timedelta(hours=3))
        await fleet.advance()
        executed = await fleet.execute(esme.device_id, precommand=precommand(world, esme, counter=42))
        assert executed.ok
        before = {d.device_id: fleet.state(d.device_id) for d in world.devices}

    clock.advance(dt.timedelta(hours=1))  # restarted an hour later
    async with SqliteStore(path) as store:
        restarted = MeterFleet.from_manifest(world, clock, store=StoreMeterPersistence(store))
        assert await restarted.load() >= 1
        assert restarted.epoch == T0
        assert {d.device_id: restarted.state(d.device_id) for d in world.devices} == before
        replay = await restarted.execute(esme.device_id, precommand=precommand(world, esme, counter=42))
        assert not replay.ok and "replay" in replay.detail


async def test_meter_states_in_the_store_replace_earlier_ones_and_keep_the_first_epoch(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "m.db") as store:
        meters = StoreMeterPersistence(store)
        state = meter()
        await meters.save([state])
        await meters.save([replace(state, credit_pence=1)])
        assert await meters.load() == [replace(state, credit_pence=1)]
        assert await meters.load_one(state.device_id) == replace(state, credit_pence=1)
        assert await meters.epoch(T0) == T0
        assert await meters.epoch(T0 + SECOND) == T0


async def test_a_failed_commit_leaves_the_meter_as_it_was(world: Manifest, esme: Device) -> None:
    """The executor stores a command's effect with the command; if that store fails, the meter forgets it."""
    fleet = MeterFleet.from_manifest(world, FixedClock(T0), store=MemoryMeterStore())
    await fleet.load()
    before = fleet.state(esme.device_id)

    async def refuse(result: ExecutionResult) -> None:
        assert result.changed and result.state != before
        raise RuntimeError("the store is down")

    with pytest.raises(RuntimeError, match="store is down"):
        await fleet.execute(esme.device_id, precommand=precommand(world, esme, counter=7), commit=refuse)
    assert fleet.state(esme.device_id) == before
    stored: list[ExecutionResult] = []

    async def keep(result: ExecutionResult) -> None:
        stored.append(result)

    again = await fleet.execute(esme.device_id, precommand=precommand(world, esme, counter=7), commit=keep)
    assert again.ok and stored == [again] and fleet.state(esme.device_id) == again.state


# --- real GBCS: the RTDS 1.6 vectors --------------------------------------------------------


def zaz1_anchor(name: str = "Z1-supplier-ds") -> TrustAnchor:
    pem = shared_path("zaz1", "pem", f"{name}.pem").read_bytes()
    return TrustAnchor.from_certificate(x509.load_pem_x509_certificate(pem))


def rtds_meter(name: str, apdu: GeneralSigningApdu, anchor: TrustAnchor) -> MeterState:
    """The meter the vector was made for, in the mode the command switches away from."""
    to_credit = code_of(name) in CREDIT_MODE_CODES
    return new_meter(
        device_id=apdu.recipient,
        device_type=device_type_of(name),
        smets=2,
        payment_mode="Prepayment" if to_credit else "Credit",
        credit_pence=1000,
        trust_anchor_fingerprint=anchor.fingerprint,
        at=T0,
    )


@pytest.mark.interop
@pytest.mark.parametrize("name", COMMANDS)
def test_real_rtds_command_is_executed_by_a_meter_trusting_the_zaz1_supplier(name: str) -> None:
    anchor = zaz1_anchor()
    signed = GeneralCipheringApdu.parse(read_vector(name)).payload  # unwrap the MAC header (DD)
    state = rtds_meter(name, signed, anchor)
    after, _alerts, response = execute_signed_precommand(state, signed.encode(), anchor, T0)
    assert response.ok and after.last_gbcs_counter == signed.counter
    target_mode = "Credit" if code_of(name) in CREDIT_MODE_CODES else "Prepayment"
    if "_IMMEDIATE_" in name:
        assert (after.payment_mode, after.pending) == (target_mode, None)
    elif "_FUTURE_DATED_" in name:
        assert after.payment_mode == state.payment_mode
        assert after.pending is not None and after.pending.mode == target_mode
    else:
        assert "_CANCELLATION_" in name and after.pending is None


@pytest.mark.interop
@pytest.mark.parametrize("name", COMMANDS)
def test_real_rtds_command_is_refused_by_a_meter_trusting_another_supplier(name: str) -> None:
    anchor = zaz1_anchor("Z1b-supplier-ds")
    signed = GeneralCipheringApdu.parse(read_vector(name)).payload
    with pytest.raises(MeterRefusal, match="does not verify"):
        execute_signed_precommand(rtds_meter(name, signed, anchor), signed.encode(), anchor, T0)


@pytest.mark.interop
@pytest.mark.parametrize("name", PRECOMMANDS)
def test_content_reads_back_what_the_duis_request_asked(name: str) -> None:
    """The meter's reading of the real content equals the DUIS template it was made from."""
    request = duis_request_for(name)
    apdu = GeneralSigningApdu.parse(read_vector(name))
    command = read_payment_mode_content(device_type_of(name), request.prepayment is None, apdu.content)
    assert (command.prepayment, command.execute_at) == (request.prepayment, request.execution_date_time)


def test_content_decoder_refuses_truncated_content() -> None:
    apdu = build_update_payment_mode_precommand(
        counter=1, originator=METER, recipient=METER, device_type="ESME", to_credit=True
    )
    with pytest.raises(ContentError, match="malformed ESME content"):
        read_payment_mode_content("ESME", True, apdu.content[:-1])
    gas = build_update_payment_mode_precommand(
        counter=1, originator=METER, recipient=METER, device_type="GSME", to_credit=True
    )
    with pytest.raises(ContentError):
        read_payment_mode_content("GSME", True, gas.content + b"\x00")
