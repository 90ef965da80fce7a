"""The demo's story, with its expected outcome asserted (issue #4)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from lxml import etree

from gateway.cli import main as cli_main
from gateway.demo import HORIZON_DAYS, main
from gateway.demo_plot import balance_pounds, plot_format, write_consumer_impact
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
    # Every switch reached its meter and the SRP got the signed result (I0 in a ResponseMessage): one result
    # per RequestID (delivery is at least once, so a result may arrive twice; it is still one result).
    assert len(story.results["srp_sc"]) == len(story.with_role)
    assert ("srp_sc", "DCCAlertMessage") in story.deliveries  # AD1 for the request over the ADT

    # MP134A: the SRP, with the failed supplier's keys, read, topped up (and where due granted emergency
    # credit to) every meter; each of those requests has exactly one result, and the replayed UTRN was refused.
    assert set(story.prepayment) == set(story.with_role)
    for steps in story.prepayment.values():
        assert any(step.startswith("4.18 Read Meter Balance: I99; the meter reports") for step in steps)
        assert any(step.startswith("2.2 Top Up") and ": I99; credit now" in step for step in steps)
    assert any("refused by the meter (replay)" in step for steps in story.prepayment.values() for step in steps)
    as_agent = len(story.results.get("failed_supplier_is", ())) + len(story.results.get("failed_supplier_gs", ()))
    assert as_agent == sum(len(steps) for steps in story.prepayment.values())
    assert any("MP134A: the SRP" in line for line in lines)
    assert any("Summary at day 28" in line for line in lines)


def test_the_demo_is_repeatable_in_the_same_directory(tmp_path: Path) -> None:
    world = tmp_path / "world"
    first = main(world, out=lambda _: None)
    second = main(world, out=lambda _: None)
    assert first.refusals == second.refusals and first.with_role == second.with_role


def test_the_plot_is_drawn_from_the_demos_series_and_written_as_png_or_svg(tmp_path: Path) -> None:
    world = tmp_path / "world"
    init_world(world, devices=20, seed="demo-test")
    picture = tmp_path / "impact.png"
    story = main(world, out=lambda _: None, plot=picture)

    # The file: a PNG of a picture's size.
    data = picture.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 1000 and height >= 200 * len(story.series) and len(data) > 50_000

    # The data it was drawn from: every meter of the story, with and without the role, over the horizon.
    assert set(story.series) == set(story.with_role)
    names = {mark.name for mark in story.directives if mark.accepted}
    assert {"revoke-licence", "appoint-solr", "enable-contingency", "submit-adt", "transfer-mpids"} <= names
    enabled_on = next(mark.day for mark in story.directives if mark.name == "enable-contingency")
    for device_id, series in story.series.items():
        assert series.with_role[-1].supply == "Enabled" and series.with_role[-1].payment_mode == "Credit"
        assert series.with_role[0].day == 0 and series.without_role[-1].day == HORIZON_DAYS
        lost = next((s.day for s in series.without_role if s.supply == "Disabled"), None)
        assert lost == story.without_role[device_id]  # the report's "without the role" is what is drawn
        assert all(s.payment_mode == "Prepayment" for s in series.without_role)
        # With the role, the meter is on Credit from the day it was switched (after the enablement) on.
        switched = next(s.day for s in series.with_role if s.payment_mode == "Credit")
        assert switched >= enabled_on

    # What is on the figure is that data: each meter's two lines, in the story's order.
    figure = write_consumer_impact(tmp_path / "impact.svg", list(story.series.values()), story.directives, HORIZON_DAYS)
    for ax, series in zip(figure.axes[1:], story.series.values(), strict=True):
        without, with_role = ax.lines[0], ax.lines[1]
        assert list(with_role.get_xdata()) == [s.day for s in series.with_role]
        assert list(with_role.get_ydata()) == [balance_pounds(s) for s in series.with_role]
        assert list(without.get_ydata()) == [balance_pounds(s) for s in series.without_role]
        assert str(series.device_id) in ax.get_title(loc="left")
    svg = etree.parse(str(tmp_path / "impact.svg")).getroot()
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"


def test_the_plot_takes_png_or_svg_only() -> None:
    assert plot_format(Path("x.PNG")) == "png" and plot_format(Path("a/b.svg")) == "svg"
    with pytest.raises(ValueError, match="PNG or SVG"):
        plot_format(Path("impact.pdf"))
    with pytest.raises(SystemExit):
        cli_main(["demo", "--plot", "impact.jpg"])
