"""AccessControl with the real SQLite store: replay, anomaly detection, directives, restarts, audit."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.checks import Check, VerificationError
from gateway.codes import ResponseCode
from gateway.policy import directives as d
from gateway.policy.access import AccessControl, RegistryContention
from gateway.policy.state import initial_state
from gateway.smki.repository import SmkiRepository
from gateway.store.audit import verify_chain
from gateway.store.base import AdmissionRequest, AdmissionResult, QuarantineStatus
from gateway.store.sqlite import SqliteStore
from gateway.verify.verifier import Verifier
from gateway.world import init_world
from tests.scenario import Scenario, make_scenario
from tests.test_store import audit_entry, directive


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("access-world")
    init_world(directory, devices=16, seed="access-tests")
    return directory


class Gateway:
    """What the service wires together: scenario (world, clock, verifier) + store + AccessControl."""

    def __init__(self, scenario: Scenario, store: SqliteStore, access: AccessControl) -> None:
        self.scenario = scenario
        self.store = store
        self.access = access

    async def send(self, actor: str, target: object, **fields: object) -> tuple[ResponseCode, str]:
        raw = self.scenario.signed_request(actor, target, **fields)  # type: ignore[arg-type]
        verified = self.scenario.verifier.verify_request(raw)
        decision = await self.access.decide_request(verified, raw)
        return decision.code, decision.reason

    async def direct(self, actor: str, directive: d.Directive) -> tuple[bool, str]:
        raw = self.scenario.signed_directive(actor, directive)
        verified = self.scenario.verifier.verify_directive(raw)
        decision = await self.access.decide_directive(verified, d.parse_directive(verified))
        return decision.accepted, decision.reason

    async def must(self, actor: str, directive: d.Directive) -> None:
        accepted, reason = await self.direct(actor, directive)
        assert accepted, reason


async def start(world_dir: Path, db: Path, scenario: Scenario | None = None) -> Gateway:
    """Opens (or reopens) the gateway on ``db``: state rebuilt from the stored directives."""
    scenario = scenario or make_scenario(world_dir, use_real_matrix=False)
    repository = SmkiRepository.load_world(world_dir)  # a restart reloads the SMKI repository too
    store = SqliteStore(db)
    await store.open()
    access = await AccessControl.restore(
        initial=initial_state(scenario.manifest), store=store, config=scenario.config, clock=scenario.clock, repository=repository
    )
    world = scenario.world
    scenario.verifier = Verifier(
        repository,
        scenario.clock,
        schemas=world.schemas,
        limits=world.limits(),
        dsp_user_id=world.manifest.gateway.dsp_user_id,
        revocation_delay=access.revocation_delayed,
    )
    return Gateway(scenario, store, access)


@pytest.fixture
async def gateway(world_dir: Path, tmp_path: Path) -> AsyncIterator[Gateway]:
    gw = await start(world_dir, tmp_path / "store.db")
    yield gw
    await gw.store.close()


async def contingency_ready(gw: Gateway, thresholds: dict[str, int] | None = None) -> None:
    sc_user = gw.scenario.actor("srp_sc").user_id
    now = gw.scenario.clock.now()
    await gw.must("authority", d.RevokeLicence("failed-supplier"))
    await gw.must("authority", d.AppointSolr("failed-supplier", "solr-supplier"))
    await gw.must("authority", d.EnableContingency("failed-supplier", sc_user, now + dt.timedelta(days=30)))
    await gw.must("srp_aro", d.SubmitAdt("failed-supplier", 3600, thresholds or {"1.6": 3}))


async def test_a_registry_that_never_settles_leaves_the_request_undecided(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another worker storing a directive just before each admission: every try is decided on a
    registry the store knows to be old (STALE_REGISTRY, which changes nothing). The tries are
    bounded, then the request is not decided at all (the service answers 503 to retry)."""
    meter = gateway.scenario.device(smets=1).device_id
    admit = gateway.store.admit
    stored_elsewhere = itertools.count(1)

    async def admit_after_another_worker_stored_a_directive(request: AdmissionRequest) -> AdmissionResult:
        await gateway.store.append_directive(directive(f"elsewhere-{next(stored_elsewhere)}", accepted=False), audit_entry())
        return await admit(request)

    monkeypatch.setattr(gateway.store, "admit", admit_after_another_worker_stored_a_directive)
    with pytest.raises(RegistryContention, match="registry changed under"):
        await gateway.send("failed_supplier_is", meter, counter=1)
    tries = next(stored_elsewhere) - 1
    assert 1 < tries < 10
    assert await gateway.store.last_counter(gateway.scenario.actor("failed_supplier_is").user_id, meter) is None
    monkeypatch.undo()
    assert (await gateway.send("failed_supplier_is", meter, counter=1))[0] is ResponseCode.I99


async def test_e40_counter_must_grow_per_originator_and_target(gateway: Gateway) -> None:
    meter = gateway.scenario.device(smets=1).device_id
    assert (await gateway.send("failed_supplier_is", meter, counter=5000))[0] is ResponseCode.I99
    code, reason = await gateway.send("failed_supplier_is", meter, counter=5000)
    assert code is ResponseCode.E40 and "not greater than 5000" in reason
    assert (await gateway.send("failed_supplier_is", meter, counter=4999))[0] is ResponseCode.E40
    assert (await gateway.send("failed_supplier_is", meter, counter=5001))[0] is ResponseCode.I99


async def test_e43_adt_threshold_quarantines_and_the_user_settles(gateway: Gateway) -> None:
    await contingency_ready(gateway, {"1.6": 2})
    meter = gateway.scenario.device(smets=1).device_id
    codes = [(await gateway.send("srp_sc", meter))[0] for _ in range(3)]
    assert codes == [ResponseCode.I99, ResponseCode.I99, ResponseCode.E43]
    sc_user = gateway.scenario.actor("srp_sc").user_id
    held = await gateway.store.quarantined(sc_user)
    assert len(held) == 1 and held[0].status is QuarantineStatus.HELD
    # An hour later the window has moved on: admitted again.
    gateway.scenario.clock.advance(dt.timedelta(seconds=3601))
    assert (await gateway.send("srp_sc", meter))[0] is ResponseCode.I99


async def test_sc_story_codes_end_to_end(gateway: Gateway) -> None:
    scenario = gateway.scenario
    meter = scenario.device(smets=1).device_id
    assert (await gateway.send("srp_sc", meter))[0] is ResponseCode.E3  # before enablement
    await contingency_ready(gateway)
    assert (await gateway.send("srp_sc", meter))[0] is ResponseCode.I99
    assert (await gateway.send("srp_sc", meter, srv="4.1.1"))[0] is ResponseCode.E2  # a read


async def test_state_and_decisions_survive_a_restart(world_dir: Path, tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    first = await start(world_dir, db)
    await contingency_ready(first)
    meter = first.scenario.device(smets=1).device_id
    assert (await first.send("srp_sc", meter, counter=7000))[0] is ResponseCode.I99
    state_before = first.access.state
    await first.store.close()

    second = await start(world_dir, db, scenario=first.scenario)
    try:
        assert second.access.state.enablements == state_before.enablements
        assert second.access.state.events == state_before.events
        assert second.access.state.adt_files.keys() == state_before.adt_files.keys()
        assert (await second.send("srp_sc", meter, counter=7000))[0] is ResponseCode.E40
        assert (await second.send("srp_sc", meter, counter=7001))[0] is ResponseCode.I99
    finally:
        await second.store.close()


async def test_directives_are_idempotent_by_directive_id(gateway: Gateway) -> None:
    scenario = gateway.scenario
    raw = scenario.signed_directive("authority", d.RevokeLicence("failed-supplier"))
    answers = []
    for _ in range(2):
        verified = scenario.verifier.verify_directive(raw)
        decision = await gateway.access.decide_directive(verified, d.parse_directive(verified))
        answers.append((decision.accepted, decision.reason))
    assert answers[0] == answers[1] and answers[0][0]
    # The same directive under a new DirectiveID is a new decision: refused, already revoked.
    accepted, reason = await gateway.direct("authority", d.RevokeLicence("failed-supplier"))
    assert not accepted and "already revoked" in reason


async def test_revocation_fails_the_failed_suppliers_signatures_but_not_the_srps(gateway: Gateway) -> None:
    scenario = gateway.scenario
    await contingency_ready(gateway)
    await gateway.must(
        "solr_is", d.ConfirmTakeover("failed-supplier", "estate", "staff", "srp", "risks", "four weeks")
    )
    meter = scenario.device(smets=1).device_id
    accepted, reason = await gateway.direct("dcc_operator", d.RevokeCertificates("failed-supplier"))
    assert accepted, reason
    scenario.clock.advance(dt.timedelta(seconds=1))
    with pytest.raises(VerificationError) as refused:
        scenario.verifier.verify_request(scenario.signed_request("failed_supplier_is", meter))
    assert refused.value.check is Check.CERTIFICATE_REVOKED and refused.value.http_status == 401
    # The SRP acting as the failed supplier's agent used its keys: those are revoked too.
    with pytest.raises(VerificationError):
        scenario.verifier.verify_request(scenario.signed_request("failed_supplier_is", meter, key_of="failed_supplier_is"))
    # The SRP's own SoLR Contingency certificate is unaffected.
    assert (await gateway.send("srp_sc", meter))[0] is ResponseCode.I99


async def test_pma_revocation_delay_blocks_revocation(gateway: Gateway) -> None:
    await contingency_ready(gateway)
    until = gateway.scenario.clock.now() + dt.timedelta(days=7)
    await gateway.must("pma", d.DelayRevocation("failed-supplier", until, "prepayment customers; SRP holds the keys"))
    accepted, reason = await gateway.direct("dcc_operator", d.RevokeCertificates("failed-supplier"))
    assert not accepted and "delayed revocation" in reason


async def test_every_decision_is_audited_and_the_chain_verifies(gateway: Gateway) -> None:
    await contingency_ready(gateway)
    meter = gateway.scenario.device(smets=1).device_id
    await gateway.send("srp_sc", meter)
    await gateway.send("srp_sc", meter, srv="4.1.1")
    await gateway.direct("pma", d.RevokeLicence("failed-supplier"))
    records = [record async for record in gateway.store.audit_records()]
    outcomes = [(r.entry.kind, r.entry.outcome) for r in records]
    assert outcomes.count(("directive", "accepted")) == 4
    assert ("directive", "refused") in outcomes
    assert ("request", "I99") in outcomes and ("request", "E2") in outcomes
    report = await verify_chain(gateway.store.audit_records())
    assert report.ok and report.records == len(records)


async def test_quarantined_request_is_released_or_deleted_only_by_its_user(gateway: Gateway) -> None:
    await contingency_ready(gateway, {"1.6": 1})
    meter = gateway.scenario.device(smets=1).device_id
    assert (await gateway.send("srp_sc", meter))[0] is ResponseCode.I99
    raw = gateway.scenario.signed_request("srp_sc", meter)
    decision = await gateway.access.decide_request(gateway.scenario.verifier.verify_request(raw), raw)
    assert decision.code is ResponseCode.E43 and decision.quarantine_event_ref is not None
    ref = decision.quarantine_event_ref

    accepted, reason = await gateway.direct("failed_supplier_is", d.ReleaseQuarantine(ref))
    assert not accepted and "no held quarantined request" in reason  # another user's
    accepted, reason = await gateway.direct("srp_aro", d.ReleaseQuarantine(ref))
    assert not accepted and "may only be issued by" in reason  # an officer is no DUIS user

    signed = gateway.scenario.signed_directive("srp_sc", d.ReleaseQuarantine(ref))
    verified = gateway.scenario.verifier.verify_directive(signed)
    released = await gateway.access.decide_directive(verified, d.parse_directive(verified))
    assert released.accepted and released.released is not None and released.released.raw_request == raw
    accepted, reason = await gateway.direct("srp_sc", d.DeleteQuarantine(ref))
    assert not accepted and "no held quarantined request" in reason  # settled once only


async def test_quarantine_directives_do_not_disturb_a_restart(world_dir: Path, tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    first = await start(world_dir, db)
    await contingency_ready(first, {"1.6": 0})
    meter = first.scenario.device(smets=1).device_id
    code, _ = await first.send("srp_sc", meter)
    assert code is ResponseCode.E43
    held = await first.store.quarantined(first.scenario.actor("srp_sc").user_id)
    await first.must("srp_sc", d.DeleteQuarantine(held[0].event_ref))
    await first.store.close()
    second = await start(world_dir, db, scenario=first.scenario)
    try:
        assert second.access.state.adt_files == first.access.state.adt_files
    finally:
        await second.store.close()


async def test_pma_delay_ends_exactly_at_its_until(gateway: Gateway) -> None:
    """One second either side of a PMA delay's end: refused while in force, accepted from ``until``."""
    await contingency_ready(gateway)
    await gateway.must("solr_is", d.ConfirmTakeover("failed-supplier", "estate", "staff", "srp", "risks", "weeks"))
    until = gateway.scenario.clock.now() + dt.timedelta(days=3)
    await gateway.must("pma", d.DelayMpidTransfer("failed-supplier", until, "prepayment customers; SRP holds the keys"))
    gateway.scenario.clock.set(until - dt.timedelta(seconds=1))
    accepted, reason = await gateway.direct("dcc_operator", d.TransferMpids("failed-supplier", "solr-supplier"))
    assert not accepted and "delayed the transfer" in reason
    gateway.scenario.clock.set(until)
    accepted, reason = await gateway.direct("dcc_operator", d.TransferMpids("failed-supplier", "solr-supplier"))
    assert accepted, reason
