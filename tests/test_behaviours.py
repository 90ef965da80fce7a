"""The device behaviour seam: which behaviour runs an SRV on a device, and what reaches the fleet's result."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest

from gateway.clock import FixedClock
from gateway.devices import MeterFleet
from gateway.devices.behaviours import (
    Instruction,
    answer_with_vector,
    behaviour_for,
    update_payment_mode,
)
from gateway.devices.execute import MeterRefusal
from gateway.eui64 import Eui64
from gateway.manifest import Device, Manifest
from gateway.world import init_world
from tests.scenario import credit_body

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
REQUESTER = Eui64.parse("90-B3-D5-1F-30-01-00-00")


class RecordingVectors:
    """A ResponseVectors that answers a recognisable response and remembers what it was asked."""

    def __init__(self) -> None:
        self.asked: list[dict[str, object]] = []

    def response(self, **question: object) -> bytes | None:
        self.asked.append(question)
        return b"response-of-" + str(question["srv"]).encode()

    def message_codes(self, srv: str, device_type: str) -> frozenset[int]:
        return frozenset({0x0027})


HUB = Device(Eui64.parse("00-DB-12-34-56-78-90-A2"), "CHF", 2, None, "FAIL", None, None)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    """A generated world with a comms hub beside its meters (as a boxed world has)."""
    root = tmp_path_factory.mktemp("behaviours")
    generated = init_world(root / "world", devices=8, seed="behaviour-tests", shared_dir=root / "no-shared")
    return replace(generated, devices=(*generated.devices, HUB))


def test_sr_1_6_on_meters_has_its_own_behaviour_and_everything_else_the_default() -> None:
    assert behaviour_for("1.6", "ESME") is update_payment_mode
    assert behaviour_for("1.6", "GSME") is update_payment_mode
    assert behaviour_for("1.6", "PPMID") is answer_with_vector
    assert behaviour_for("4.1.1", "ESME") is answer_with_vector


def test_the_default_answers_the_vector_and_changes_nothing() -> None:
    instruction = Instruction(
        srv="4.1.1", device_id=Eui64.parse("00-DB-12-34-56-78-90-A0"), device_type="ESME", requester=REQUESTER,
        request_id="90-B3-D5-1F-30-01-00-00:00-DB-12-34-56-78-90-A0:7", now=T0, rtds_response=b"\xdd\x01",
    )  # fmt: skip
    outcome = answer_with_vector(instruction)
    assert (outcome.state, outcome.gbcs_response, outcome.alerts) == (None, b"\xdd\x01", ())
    assert instruction.counter == 7


def test_update_payment_mode_needs_a_meter() -> None:
    instruction = Instruction(
        srv="1.6", device_id=Eui64.parse("00-DB-12-34-56-78-90-A4"), device_type="PPMID", requester=REQUESTER,
        request_id=None, now=T0, sr_body=credit_body(),
    )  # fmt: skip
    with pytest.raises(MeterRefusal, match="needs a simulated meter"):
        update_payment_mode(instruction)


async def test_a_device_without_state_answers_through_its_behaviour(world: Manifest) -> None:
    vectors = RecordingVectors()
    fleet = MeterFleet.from_manifest(world, FixedClock(T0), vectors=vectors)
    await fleet.load()
    hub = world.device(HUB.device_id)
    request_id = f"{REQUESTER}:{hub.device_id}:42"
    result_body = credit_body()
    result = await fleet.execute(hub.device_id, sr_body=result_body, srv="6.2.1", request_id=request_id)
    assert result.ok and not result.changed and result.state is None
    assert result.gbcs_response == b"response-of-6.2.1"
    assert vectors.asked == [
        {"srv": "6.2.1", "device_type": hub.type, "device_id": hub.device_id, "requester": REQUESTER,
         "request_id": request_id, "now": T0, "body": result_body, "command": None},
    ]  # fmt: skip


async def test_a_meter_answers_sr_1_6_with_the_vector_and_its_new_state(world: Manifest) -> None:
    device = next(d for d in world.devices if (d.smets, d.type, d.payment_mode) == (1, "ESME", "Prepayment"))
    fleet = MeterFleet.from_manifest(world, FixedClock(T0), vectors=RecordingVectors())
    await fleet.load()
    result = await fleet.execute(device.device_id, sr_body=credit_body(), request_id=f"{REQUESTER}:{device.device_id}:1")
    assert result.ok and result.changed and result.state is not None and result.state.payment_mode == "Credit"
    assert result.gbcs_response == b"response-of-1.6"


async def test_an_unknown_device_is_not_simulated(world: Manifest) -> None:
    fleet = MeterFleet.from_manifest(world, FixedClock(T0))
    await fleet.load()
    result = await fleet.execute(Eui64.parse("00-00-00-00-00-00-00-01"), sr_body=credit_body(), srv="4.1.1")
    assert not result.ok and "no simulated device" in result.detail
