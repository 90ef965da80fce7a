"""The demo's story, with its expected outcome asserted (issue #4)."""

from __future__ import annotations

from pathlib import Path

from gateway.demo import main
from gateway.world import init_world


def test_the_solr_story_keeps_every_prepayment_customer_on_supply(tmp_path: Path) -> None:
    world = tmp_path / "world"
    init_world(world, devices=20, seed="demo-test")
    lines: list[str] = []
    story = main(world, out=lines.append)

    assert story.refusals == {
        "before enablement": "E3",
        "Prepayment": "E41",
        "a read (SRV 4.1.1)": "E2",
        "over the ADT threshold": "E43",
        "after the MPID transfer": "E4",
    }
    assert story.with_role and set(story.with_role.values()) == {"Enabled"}
    assert any(day is not None for day in story.without_role.values()), "without the role some meter loses supply"
    # Every switch reached its meter and the SRP got the signed result (I0 in a ResponseMessage).
    results = [kind for actor, kind in story.deliveries if actor == "srp_sc" and kind == "ResponseMessage"]
    assert len(results) == len(story.with_role)
    assert ("srp_sc", "DCCAlertMessage") in story.deliveries  # AD1 for the request over the ADT
    assert any("Summary at day 28" in line for line in lines)


def test_the_demo_is_repeatable_in_the_same_directory(tmp_path: Path) -> None:
    world = tmp_path / "world"
    first = main(world, out=lambda _: None)
    second = main(world, out=lambda _: None)
    assert first.refusals == second.refusals and first.with_role == second.with_role
