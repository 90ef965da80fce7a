"""Reopening the store yields the same decisions (hypothesis, real SQLite store).

A random history of directives, clock jumps and requests is decided by one
AccessControl; a second one, restored from the same store file, must hold
the same registry state and decide every pooled request the same way.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.checks import VerificationError
from gateway.policy import directives as d
from gateway.policy.authorise import authorise
from gateway.policy.state import RegistryState
from gateway.world import init_world
from tests.scenario import make_scenario
from tests.test_access import Gateway, start
from tests.test_policy_properties import directive_steps

REQUESTERS = ("srp_sc", "failed_supplier_is", "solr_is")


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("reopen-world")
    init_world(directory, devices=8, seed="reopen-tests")
    return directory


def verdicts(gw: Gateway) -> list[tuple[str, str]]:
    """How the static policy decides every (requester, device) pair now."""
    scenario = gw.scenario
    out = []
    for actor in REQUESTERS:
        for device in scenario.manifest.devices:
            cv = 1 if device.smets == 1 else 4
            try:
                request = scenario.request(actor, device.device_id, cv=cv)
            except VerificationError as error:  # e.g. the failed supplier's certificates were revoked
                out.append((actor, error.check_id))
                continue
            verdict = authorise(gw.access.state, request, scenario.config, scenario.clock.now())
            out.append((actor, getattr(verdict, "code", "admissible").__str__()))
    return out


async def run_history(world_dir: Path, db: Path, steps: list[tuple[str, object]]) -> None:
    first = await start(world_dir, db)
    try:
        before, state = await _play(first, steps)
    finally:
        await first.store.close()
    scenario = first.scenario
    second = await start(world_dir, db, scenario=scenario)
    try:
        assert second.access.state.events == state.events
        assert second.access.state.enablements == state.enablements
        assert second.access.state.mpid_owner == state.mpid_owner
        assert second.access.state.adt_files.keys() == state.adt_files.keys()
        assert verdicts(second) == before
    finally:
        await second.store.close()


async def _play(first: Gateway, steps: list[tuple[str, object]]) -> tuple[list[tuple[str, str]], RegistryState]:
    scenario = first.scenario
    for kind, step in steps:
        if kind == "directive":
            actor, directive = step  # type: ignore[misc]
            await first.direct(actor, directive)
        elif kind == "advance":
            scenario.clock.advance(dt.timedelta(hours=step))  # type: ignore[arg-type]
        else:
            device = scenario.manifest.devices[step]  # type: ignore[index]
            await first.send("srp_sc", device.device_id, cv=1 if device.smets == 1 else 4)
    return verdicts(first), first.access.state


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_reopening_the_store_yields_the_same_decisions(world_dir: Path, data: st.DataObject) -> None:
    scenario = make_scenario(world_dir, use_real_matrix=False)
    devices = len(scenario.manifest.devices)
    steps = data.draw(
        st.lists(
            st.one_of(
                directive_steps(scenario).map(lambda s: ("directive", s)),
                st.integers(0, 96).map(lambda hours: ("advance", hours)),
                st.integers(0, devices - 1).map(lambda index: ("request", index)),
            ),
            max_size=12,
        )
    )
    prefix = [("directive", ("authority", d.RevokeLicence("failed-supplier")))] if data.draw(st.booleans()) else []
    with tempfile.TemporaryDirectory() as scratch:
        asyncio.run(run_history(world_dir, Path(scratch) / "store.db", prefix + steps))
