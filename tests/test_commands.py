"""The store's device command queue and meter states (issue #5), on every backend.

What makes execution exactly once is a contract of the store: a command is
queued with the decision that accepted it, claimed under a token, and
completed, with the meter state it produced, only while that claim is its
own. These tests hold both backends to it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from typing import Any

import pytest

from gateway.eui64 import Eui64
from gateway.store.audit import verify_chain
from gateway.store.base import (
    Admission,
    AdmissionRequest,
    CommandCompletion,
    CommandForm,
    CommandStatus,
    Delivery,
    DeliveryKind,
    DeviceCommand,
    QuarantineStatus,
    Shard,
    Store,
)
from tests.store_backends import StoreOpener
from tests.test_store import METER, OTHER_METER, SUPPLIER, T0, admission, audit_entry, directive

LEASE = dt.timedelta(minutes=5)


def command(counter: int, *, device: Eui64 = METER, form: CommandForm = CommandForm.SR_BODY) -> DeviceCommand:
    return DeviceCommand(
        request_id=f"{SUPPLIER}:{device}:{counter}",
        originator=SUPPLIER,
        device_id=device,
        service_reference="1.6",
        service_reference_variant="1.6",
        form=form,
        payload=b"<UpdatePaymentMode/>\x00\xff" if form is CommandForm.SR_BODY else b"",
        queued_at=T0,
    )


def admitted(counter: int, **options: Any) -> AdmissionRequest:
    request = admission(counter, **options)
    return dataclasses.replace(request, command=command(counter, device=request.target))


def completion(at: dt.datetime = T0, *, meters: dict[str, str] | None = None, deliveries: int = 1) -> CommandCompletion:
    return CommandCompletion(
        at=at,
        outcome="I0",
        meters=meters if meters is not None else {str(METER): '{"credit": 1}'},
        deliveries=tuple(
            Delivery(SUPPLIER, "http://127.0.0.1:9/results", b"<Response/>", DeliveryKind.RESPONSE, f"R{n}", at,
                     audit_entry(at, kind="device-result", subject=f"R{n}"))
            for n in range(deliveries)
        ),
        audits=(audit_entry(at, kind="device-alert"),),
    )


@pytest.fixture
async def store(store_factory: StoreOpener) -> Store:
    return await store_factory.open()


async def outcomes(store: Store) -> list[str]:
    return [record.entry.outcome async for record in store.audit_records()]


# --- queuing -------------------------------------------------------------------------------


async def test_an_accepted_admission_queues_its_command_in_the_same_transaction(store: Store) -> None:
    assert (await store.admit(admitted(1))).admission is Admission.ACCEPTED
    assert await store.command_status(command(1).request_id) is CommandStatus.QUEUED
    assert (await store.admit(admitted(1))).admission is Admission.REPLAY
    assert await store.queued_commands() == 1  # a replay queues nothing


async def test_a_quarantined_admission_queues_nothing_until_it_is_released(store: Store) -> None:
    assert (await store.admit(admitted(1, threshold=0))).admission is Admission.QUARANTINED
    assert await store.queued_commands() == 0
    [held] = await store.quarantined(SUPPLIER)
    released = await store.settle_quarantine(
        held.event_ref, SUPPLIER, QuarantineStatus.RELEASED, audit_entry(kind="quarantine-released"), command(1)
    )
    assert released is not None and released.status is QuarantineStatus.RELEASED
    assert await store.command_status(command(1).request_id) is CommandStatus.QUEUED


async def test_queue_command_is_idempotent_per_request_id(store: Store) -> None:
    first = await store.queue_command(command(5), audit_entry(subject="CV5"))
    again = await store.queue_command(command(5), audit_entry(subject="CV5 again"))
    assert first == again and await store.queued_commands() == 1
    assert [r.entry.subject async for r in store.audit_records()] == ["CV5"]  # the second recorded nothing


# --- registry versions (several workers) --------------------------------------------------------


async def test_an_admission_decided_on_an_old_registry_is_stale_and_changes_nothing(store: Store) -> None:
    assert await store.registry_version() == 0
    stored = await store.append_directive(directive("D1"), audit_entry(kind="directive"))
    assert await store.registry_version() == stored.sequence
    stale = dataclasses.replace(admitted(1), registry_version=0)
    assert (await store.admit(stale)).admission is Admission.STALE_REGISTRY
    assert await store.last_counter(SUPPLIER, METER) is None
    assert await store.queued_commands() == 0
    assert len(await outcomes(store)) == 1  # only the directive's record
    fresh = dataclasses.replace(stale, registry_version=stored.sequence)
    assert (await store.admit(fresh)).admission is Admission.ACCEPTED
    assert [d.directive_id async for d in store.directives(after_sequence=stored.sequence)] == []


# --- claims and completion -------------------------------------------------------------------


async def test_claims_are_oldest_first_exclusive_and_end_with_their_lease(store: Store) -> None:
    for counter in (1, 2, 3):
        await store.queue_command(command(counter), audit_entry())
    first = await store.claim_commands(T0, 2, LEASE)
    assert [c.command.request_id for c in first] == [command(1).request_id, command(2).request_id]
    assert [c.claims for c in first] == [1, 1]
    assert first[0].command == command(1)
    second = await store.claim_commands(T0, 10, LEASE)
    assert [c.command.request_id for c in second] == [command(3).request_id]  # the others are claimed
    assert await store.claim_commands(T0 + LEASE - dt.timedelta(microseconds=1), 10, LEASE) == []
    later = await store.claim_commands(T0 + LEASE, 10, LEASE)
    assert [c.claims for c in later] == [2, 2, 2]  # the lease ended: an executor that died lost them
    assert {c.claim_token for c in later}.isdisjoint({c.claim_token for c in first + second})


async def test_completion_stores_the_meter_with_the_command_and_only_once(store: Store) -> None:
    await store.queue_command(command(1), audit_entry())
    [claimed] = await store.claim_commands(T0, 1, LEASE)
    assert await store.complete_command(claimed, completion())
    assert await store.command_status(command(1).request_id) is CommandStatus.EXECUTED
    assert await store.load_meter(str(METER)) == '{"credit": 1}'
    due = await store.due_deliveries(T0, 10)
    assert [d.subject for d in due] == ["R0"]
    # a second completion of the same claim (a retry, a confused executor) changes nothing
    assert not await store.complete_command(claimed, completion(meters={str(METER): '{"credit": 2}'}, deliveries=2))
    assert await store.load_meter(str(METER)) == '{"credit": 1}'
    assert len(await store.due_deliveries(T0, 10)) == 1
    assert await store.claim_commands(T0 + 2 * LEASE, 10, LEASE) == []  # executed: never claimed again
    assert (await verify_chain(store.audit_records())).ok


async def test_a_claim_taken_over_cannot_complete(store: Store) -> None:
    """The executor that lost its claim (it stalled past the lease) must not store its execution."""
    await store.queue_command(command(1), audit_entry())
    [stalled] = await store.claim_commands(T0, 1, LEASE)
    [current] = await store.claim_commands(T0 + LEASE, 1, LEASE)
    assert not await store.complete_command(stalled, completion())
    assert await store.load_meter(str(METER)) is None
    assert await store.due_deliveries(T0, 10) == []
    assert await store.complete_command(current, completion())


async def test_each_shard_claims_and_releases_only_its_own_devices(store: Store) -> None:
    even, odd = Eui64(METER.value & ~1), Eui64(METER.value | 1)
    for counter, device in enumerate((even, odd, even, odd), start=1):
        await store.queue_command(command(counter, device=device), audit_entry())
    first, second = Shard(0, 2), Shard(1, 2)
    mine = await store.claim_commands(T0, 10, LEASE, first)
    assert [c.command.device_id for c in mine] == [even, even]
    theirs = await store.claim_commands(T0, 10, LEASE, second)
    assert [c.command.device_id for c in theirs] == [odd, odd]
    assert await store.release_claims(first) == 2  # the other shard's claims stand
    assert [c.command.device_id for c in await store.claim_commands(T0, 10, LEASE)] == [even, even]


async def test_release_claims_hands_claimed_commands_back_at_once(stores_and_store: tuple[StoreOpener, Store]) -> None:
    opener, store = stores_and_store
    await store.queue_command(command(1), audit_entry())
    await store.queue_command(command(2), audit_entry())
    [dead] = await store.claim_commands(T0, 1, LEASE)
    await store.close()  # the executor died holding a claim
    restarted = await opener.open()
    assert await restarted.release_claims() == 1
    again = await restarted.claim_commands(T0, 10, LEASE)
    assert [c.command_id for c in again] == [dead.command_id, dead.command_id + 1]
    assert not await restarted.complete_command(dead, completion())  # the old claim is void


async def test_a_queued_command_survives_a_restart(stores_and_store: tuple[StoreOpener, Store]) -> None:
    opener, store = stores_and_store
    assert (await store.admit(admitted(1))).admission is Admission.ACCEPTED
    await store.close()
    restarted = await opener.open()
    [claimed] = await restarted.claim_commands(T0, 10, LEASE)
    assert claimed.command == command(1)


# --- meter states --------------------------------------------------------------------------------


async def test_meter_states_deliveries_and_audits_are_stored_together(store: Store) -> None:
    await store.save_meters({str(METER): "a", str(OTHER_METER): "b"})
    await store.save_meters({str(METER): "c"}, completion().deliveries, (audit_entry(kind="device-alert"),))
    assert await store.load_meters() == {str(METER): "c", str(OTHER_METER): "b"}
    assert await store.load_meter(str(OTHER_METER)) == "b"
    assert await store.load_meter("00-00-00-00-00-00-00-00") is None
    assert len(await store.due_deliveries(T0, 10)) == 1
    assert (await verify_chain(store.audit_records())).ok


async def test_the_meter_epoch_is_the_first_one_proposed(stores_and_store: tuple[StoreOpener, Store]) -> None:
    opener, store = stores_and_store
    assert await store.meter_epoch(T0) == T0
    assert await store.meter_epoch(T0 + dt.timedelta(days=1)) == T0
    await store.close()
    assert await (await opener.open()).meter_epoch(T0 + dt.timedelta(days=2)) == T0


# --- grouped commits -----------------------------------------------------------------------------


async def test_concurrent_writes_share_commits_and_each_gets_its_own_answer(store: Store) -> None:
    before = store.groups_committed  # type: ignore[attr-defined]
    results = await asyncio.gather(*(store.admit(admitted(n, target=_meter(n))) for n in range(1, 201)))
    assert all(result.admission is Admission.ACCEPTED for result in results)
    assert sorted(result.audit_sequence for result in results) == list(range(1, 201))
    assert store.groups_committed - before < 100  # type: ignore[attr-defined]
    assert await store.queued_commands() == 200
    assert (await verify_chain(store.audit_records())).ok


async def test_a_failing_call_fails_alone_in_its_group(store: Store) -> None:
    good = [store.admit(admitted(n, target=_meter(n))) for n in range(1, 11)]
    bad = store.remember_precommand("X", SUPPLIER, METER, b"\x01", T0, T0 - dt.timedelta(seconds=1), audit_entry())
    results = await asyncio.gather(*good, bad, return_exceptions=True)
    assert isinstance(results[-1], ValueError)
    assert all(r.admission is Admission.ACCEPTED for r in results[:-1])  # type: ignore[union-attr]
    assert len(await outcomes(store)) == 10


def _meter(n: int) -> Eui64:
    return Eui64(METER.value + n)


@pytest.fixture
async def stores_and_store(store_factory: StoreOpener) -> tuple[StoreOpener, Store]:
    return store_factory, await store_factory.open()

