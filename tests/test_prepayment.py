"""Top-ups, emergency credit and the balance: the meter model, and its GBCS answers against RTDS 4.5.0.

The GBCS builders are checked byte for byte against the real response vectors
(read in place from ../shared) when given the values the vectors carry; the
MAC of a non-critical answer is the one thing not reproduced (the simulator
does not compute it), so the comparison stops before it.
"""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.devices.meter import MeterState, new_meter, run_down, state_from_json, state_to_json
from gateway.devices.prepayment import (
    PrepaymentRefused,
    activate_emergency_credit,
    apply_top_up,
    meter_balance_pence,
)
from gateway.devices.utrn import AcceptedTopUp
from gateway.eui64 import Eui64
from gateway.gbcs import GeneralSigningApdu, verify_apdu_signature
from gateway.gbcs.ciphering import MAC_SIZE
from gateway.gbcs.ciphering import GeneralCipheringApdu
from gateway.gbcs.prepayment import (
    PrepaymentConfiguration,
    TopUpResult,
    emergency_credit_response,
    is_emergency_credit_content,
    meter_balance_response,
    prepayment_configuration_response,
    top_up_response,
)
from tests.shared_data import shared_path

SUPPLIER = Eui64.parse("90-B3-D5-1F-30-01-00-00")
ESME = Eui64.parse("00-DB-12-34-56-78-90-A0")
GSME = Eui64.parse("00-DB-12-34-56-78-90-A1")
T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
RTDS_DATE = dt.datetime(2015, 1, 1, tzinfo=dt.UTC)  # the date-time the CS01a/CS01b responses carry


def _vector(folder: str, name: str) -> bytes:
    return bytes.fromhex(shared_path("gbcs", "rtds-4.5.0", folder, name).read_text().strip())


# --- the GBCS answers, shaped like the vectors ------------------------------------------------


@pytest.mark.parametrize(
    ("folder", "name", "build"),
    [
        ("2.2_CS01a", "CS01a_2.2_SUCCESS_RESPONSE_GBCS.HEX",
         lambda: top_up_response("ESME", counter=3 << 32, meter=ESME, user=SUPPLIER, at=RTDS_DATE,
                                 result=TopUpResult.ACCEPTED, applied_pence=1000, credit_pence=1000)),
        ("2.2_CS01a", "CS01a_2.2_ERROR_RESPONSE_GBCS.HEX",
         lambda: top_up_response("ESME", counter=5 << 32, meter=ESME, user=SUPPLIER, at=RTDS_DATE,
                                 result=TopUpResult.REJECTED_INVALID, applied_pence=0, credit_pence=0)),
        ("2.2_CS01b", "CS01b_2.2_SUCCESS_RESPONSE_GBCS.HEX",
         lambda: top_up_response("GSME", counter=6 << 32, meter=GSME, user=SUPPLIER, at=RTDS_DATE,
                                 result=TopUpResult.ACCEPTED, applied_pence=1250, credit_pence=25144)),
        ("2.2_CS01b", "CS01b_2.2_ERROR_RESPONSE_GBCS.HEX",
         lambda: top_up_response("GSME", counter=7 << 32, meter=GSME, user=SUPPLIER, at=RTDS_DATE,
                                 result=TopUpResult.REJECTED_INVALID, applied_pence=0, credit_pence=0)),
        ("4.18_ECS82", "ECS82_4.18_SUCCESS_RESPONSE_GBCS.HEX",
         lambda: meter_balance_response("ESME", counter=1000, meter=ESME, user=SUPPLIER, balance_pence=250, debt_pence=0)),
        ("4.18_GCS60", "GCS60_4.18_SUCCESS_RESPONSE_GBCS.HEX",
         lambda: meter_balance_response("GSME", counter=1000, meter=GSME, user=SUPPLIER, balance_pence=2500, debt_pence=3500)),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_a_non_critical_answer_is_the_vector_with_the_meters_values(folder: str, name: str, build) -> None:  # type: ignore[no-untyped-def]
    assert build()[:-MAC_SIZE] == _vector(folder, name)[:-MAC_SIZE]


@pytest.mark.parametrize(
    ("device_type", "meter", "folder", "prefix"),
    [("ESME", ESME, "2.5_ECS09", "ECS09"), ("GSME", GSME, "2.5_GCS06", "GCS06")],
)
@pytest.mark.parametrize(("activated", "outcome", "counter"), [(True, "SUCCESS", 1000), (False, "ERROR", 1001)])
def test_the_emergency_credit_answer_is_the_vector_signed_by_the_meter(  # noqa: PLR0913
    device_type: str, meter: Eui64, folder: str, prefix: str, activated: bool, outcome: str, counter: int
) -> None:
    key = ec.derive_private_key(0xDE71CE, ec.SECP256R1())
    answer = GeneralSigningApdu.parse(
        emergency_credit_response(device_type, counter=counter, meter=meter, user=SUPPLIER, activated=activated, meter_key=key)  # type: ignore[arg-type]
    )
    expected = GeneralSigningApdu.parse(_vector(folder, f"{prefix}_2.5_{outcome}_RESPONSE_GBCS.HEX"))
    assert answer.signed_part() == expected.signed_part()
    verify_apdu_signature(answer, key.public_key())
    precommand = GeneralSigningApdu.parse(_vector(folder, f"{prefix}_2.5_{outcome}_PRECOMMAND_GBCS.HEX"))
    assert is_emergency_credit_content(device_type, precommand.content)  # type: ignore[arg-type]
    at = len(precommand.content) - 1 if device_type == "ESME" else 10  # the method's argument; the ZCL command
    altered = precommand.content[:at] + bytes([precommand.content[at] ^ 0x07]) + precommand.content[at + 1 :]
    assert not is_emergency_credit_content(device_type, altered)  # type: ignore[arg-type]


def test_the_balance_answer_carries_the_meters_balance_not_the_vectors() -> None:
    vector = _vector("4.18_ECS82", "ECS82_4.18_SUCCESS_RESPONSE_GBCS.HEX")
    mine = meter_balance_response("ESME", counter=1000, meter=ESME, user=SUPPLIER, balance_pence=-37, debt_pence=37)
    assert mine != vector and (-37 * 1000).to_bytes(4, "big", signed=True) in mine


# --- the model ------------------------------------------------------------------------------------


def _meter(**changes: object) -> MeterState:
    state = new_meter(
        device_id=ESME, device_type="ESME", smets=2, payment_mode="Prepayment", credit_pence=300,
        trust_anchor_fingerprint="00" * 32, at=T0,
    )  # fmt: skip
    return state.__class__(**{**{f: getattr(state, f) for f in state.__dataclass_fields__}, **changes})  # type: ignore[arg-type]


def _top_up(pence: int, counter: int = 1, cache: tuple[int, ...] = ()) -> AcceptedTopUp:
    return AcceptedTopUp(pence, counter, (*cache, counter))


def test_a_top_up_adds_credit_and_remembers_its_counter() -> None:
    state, alerts, detail = apply_top_up(_meter(), _top_up(1000, 3), T0)
    assert (state.credit_pence, state.utrn_counters, alerts) == (1300, (3,), ())
    assert "1000p" in detail and meter_balance_pence(state) == 1300


def test_a_top_up_repays_emergency_credit_first_and_restores_supply() -> None:
    off = _meter(credit_pence=0, emergency_credit_pence=0, debt_pence=500, supply="Disabled")
    state, _alerts, detail = apply_top_up(off, _top_up(800), T0)
    assert (state.credit_pence, state.debt_pence, state.emergency_credit_pence) == (300, 0, 500)
    assert state.supply == "Enabled" and not state.emergency_credit_active and "supply enabled again" in detail
    # Too little to repay it all: still in emergency, still off supply.
    partly = apply_top_up(off, _top_up(200), T0)[0]
    assert (partly.credit_pence, partly.debt_pence, partly.supply) == (0, 300, "Disabled")


def test_a_top_up_survives_the_store_round_trip() -> None:
    state = apply_top_up(_meter(), _top_up(100, 9, (4, 7)), T0)[0]
    assert state_from_json(state_to_json(state)) == state
    old = state_to_json(_meter())
    del old["utrn_counters"]  # a state stored before top-ups existed
    assert state_from_json(old).utrn_counters == ()


def test_emergency_credit_is_granted_below_its_threshold_and_used_after_the_credit() -> None:
    low = _meter(credit_pence=40)
    state, alerts, _ = activate_emergency_credit(low, T0)
    assert state.emergency_credit_active and [a.kind.value for a in alerts] == ["EmergencyCreditActivated"]
    # Credit is used first; then the emergency credit; supply lasts for both.
    hours = (40 + 500) / state.consumption_pence_per_hour
    later, _ = run_down(state, T0 + dt.timedelta(hours=hours - 0.01))
    assert later.supply == "Enabled" and later.credit_pence == 0 and later.debt_pence > 0
    gone, _ = run_down(state, T0 + dt.timedelta(hours=hours + 0.01))
    assert gone.supply == "Disabled"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"payment_mode": "Credit", "credit_pence": 0}, "Credit-mode"),
        ({"credit_pence": 0, "emergency_credit_active": True}, "active already"),
        ({"credit_pence": 0, "emergency_credit_pence": 0, "debt_pence": 500, "supply": "Disabled"}, "no emergency credit"),
        ({"credit_pence": 300}, "not below"),
    ],
)
def test_emergency_credit_is_refused_where_a_meter_refuses_it(changes: dict[str, object], reason: str) -> None:
    with pytest.raises(PrepaymentRefused, match=reason):
        activate_emergency_credit(_meter(**changes), T0)


@pytest.mark.parametrize(
    ("device_type", "folder", "name", "expected"),
    [
        # ECS26a: the low credit threshold (item 12) and the emergency credit's amount (15) and threshold (16)
        ("ESME", "4.13_ECS26a", "ECS26a_4.13_SINGLE_SUCCESS_RESPONSE_GBCS.HEX",
         [b"\x05" + (120_000).to_bytes(4, "big"), b"\x05" + (650_000).to_bytes(4, "big")]),
        # GCS21b: Emergency Credit Limit Allowance, Threshold, Low Credit Warning Level (uint32), Cut Off Value (int32)
        ("GSME", "4.13_GCS21b", "GCS21b_4.13_SUCCESS_RESPONSE_GBCS.HEX",
         [b"\x10\x00\x00\x23" + (650_000).to_bytes(4, "little"), b"\x11\x00\x00\x23" + (120_000).to_bytes(4, "little"),
          b"\x31\x00\x00\x23" + (120_000).to_bytes(4, "little"), b"\x40\x00\x00\x2b" + (-30_000).to_bytes(4, "little", signed=True)]),
    ],
)
def test_the_configuration_answer_is_the_vector_with_the_meters_settings(
    device_type: str, folder: str, name: str, expected: list[bytes]
) -> None:
    vector = _vector(folder, name)
    settings = PrepaymentConfiguration(
        low_credit_threshold=120, emergency_credit_limit=650, emergency_credit_threshold=120, disablement_threshold=-30
    )
    answer = prepayment_configuration_response(device_type, vector, settings)  # type: ignore[arg-type]
    assert len(answer) == len(vector) and answer != vector
    mine, theirs = (GeneralCipheringApdu.parse(x).payload.content for x in (answer, vector))
    for record in expected:
        assert record in mine and record not in theirs
    changed = sum(a != b for a, b in zip(mine, theirs, strict=True))
    assert changed <= 4 * len(expected) + 4  # only the modelled values moved (the ESME's threshold twice)
    other = _vector("4.18_ECS82", "ECS82_4.18_SUCCESS_RESPONSE_GBCS.HEX")  # laid out otherwise: answered unchanged
    assert prepayment_configuration_response(device_type, other, settings) == other  # type: ignore[arg-type]
