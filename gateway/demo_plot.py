"""``dcc-gateway demo --plot FILE``: the consumer impact of the SoLR story as one picture (PNG or SVG).

One panel per meter: its balance over the demo's weeks with the SoLR Contingency
role (what the gateway did) and without it (the same meter left alone), the
time it is off supply shaded, and the day of each directive marked across all
panels. What is plotted is what the meter has left before it goes off supply:
credit plus the emergency credit not yet used. The demo (:mod:`gateway.demo`)
produces the series; this module only
draws them, with matplotlib's object-oriented API (a ``Figure`` of its own, no
pyplot and so no global figure state).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from matplotlib.axes import Axes
from matplotlib.figure import Figure

PLOT_FORMATS: Final = {".png": "png", ".svg": "svg"}
_WITH: Final = "#1f5fa8"
_WITHOUT: Final = "#8a8f98"
_OFF_SUPPLY: Final = "#c0392b"


@dataclass(frozen=True, slots=True)
class Sample:
    """A meter as the simulation has it at one moment."""

    day: float
    """Days since the demo's start."""
    credit_pence: int
    emergency_credit_pence: int
    supply: str
    payment_mode: str


@dataclass(frozen=True, slots=True)
class MeterSeries:
    """One meter's weeks, with the SoLR Contingency role and without it."""

    device_id: str
    label: str
    """E.g. ``ESME SMETS2``."""
    with_role: tuple[Sample, ...]
    without_role: tuple[Sample, ...]


@dataclass(frozen=True, slots=True)
class DirectiveMark:
    day: float
    name: str
    accepted: bool


def plot_format(path: Path) -> str:
    """``png`` or ``svg`` from the file name; anything else is a ValueError naming both."""
    suffix = path.suffix.lower()
    if suffix not in PLOT_FORMATS:
        raise ValueError(f"the plot is PNG or SVG: name it FILE.png or FILE.svg, not {path.name!r}")
    return PLOT_FORMATS[suffix]


def consumer_impact_figure(series: Sequence[MeterSeries], marks: Sequence[DirectiveMark], horizon_days: float) -> Figure:
    """The picture, not yet written: one panel per meter, in ``series`` order."""
    if not series:
        raise ValueError("no meter to plot")
    figure = Figure(figsize=(11, 1.9 * len(series) + 2.2), layout="constrained")
    timeline, *axes = figure.subplots(len(series) + 1, 1, sharex=True, height_ratios=[1.1] + [1.0] * len(series))
    _timeline(timeline, marks, horizon_days)
    for ax, meter in zip(axes, series, strict=True):
        _panel(ax, meter, marks, horizon_days)
    axes[-1].set_xlabel("day of the SoLR event")
    axes[0].legend(loc="upper right", fontsize=8, ncols=3)
    figure.suptitle("Consumer impact: the failed supplier's prepayment meters, with and without the SoLR Contingency role")
    return figure


def write_consumer_impact(
    path: Path, series: Sequence[MeterSeries], marks: Sequence[DirectiveMark], horizon_days: float
) -> Figure:
    """Draws and writes the picture (its format from the file name); returns the figure drawn."""
    file_format = plot_format(path)
    figure = consumer_impact_figure(series, marks, horizon_days)
    figure.savefig(path, format=file_format, dpi=110)
    return figure


def _timeline(ax: Axes, marks: Sequence[DirectiveMark], horizon_days: float) -> None:
    """The directives, one label per day, above the meters' panels."""
    for level, (day, names) in enumerate(_labels(marks).items()):
        ax.axvline(day, color="#444", linewidth=0.7, linestyle=":")
        ax.annotate(f"day {day:g}: {names}", (day, 0.85 - 0.28 * (level % 3)), xycoords=("data", "axes fraction"),
                    fontsize=8, xytext=(3, 0), textcoords="offset points", ha="left", va="center")
    ax.set_xlim(0, horizon_days)
    ax.set_yticks([])
    ax.set_title("directives", fontsize=9, loc="left")


def _panel(ax: Axes, meter: MeterSeries, marks: Sequence[DirectiveMark], horizon_days: float) -> None:
    for samples, colour, style, label in (
        (meter.without_role, _WITHOUT, "--", "without the role"),
        (meter.with_role, _WITH, "-", "with the SC role"),
    ):
        ax.plot([s.day for s in samples], [balance_pounds(s) for s in samples], style, color=colour, label=label,
                drawstyle="steps-post")
        for number, (start, end) in enumerate(_off_supply(samples, horizon_days)):
            ax.axvspan(start, end, color=_OFF_SUPPLY, alpha=0.12 if samples is meter.without_role else 0.35,
                       label=f"off supply, {label}" if number == 0 else None)
    for mark in marks:
        ax.axvline(mark.day, color="#444" if mark.accepted else "#d08c00", linewidth=0.7, linestyle=":")
    ax.set_xlim(0, horizon_days)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("£ left")
    ax.set_title(f"{meter.device_id} {meter.label}: {_verdict(meter, horizon_days)}", fontsize=9, loc="left")


def balance_pounds(sample: Sample) -> float:
    """What the meter has left before it goes off supply: credit plus unused emergency credit, in £."""
    return (sample.credit_pence + sample.emergency_credit_pence) / 100


def _labels(marks: Sequence[DirectiveMark]) -> dict[float, str]:
    """One label per day, naming each directive of that day (refused ones marked so)."""
    by_day: dict[float, list[str]] = {}
    for mark in marks:
        by_day.setdefault(mark.day, []).append(mark.name if mark.accepted else f"{mark.name} (refused)")
    return {day: ", ".join(names) for day, names in by_day.items()}


def _off_supply(samples: Sequence[Sample], horizon_days: float) -> list[tuple[float, float]]:
    """The spans of days a meter is off supply."""
    spans: list[tuple[float, float]] = []
    start: float | None = None
    for sample in samples:
        if sample.supply == "Disabled" and start is None:
            start = sample.day
        elif sample.supply != "Disabled" and start is not None:
            spans.append((start, sample.day))
            start = None
    if start is not None:
        spans.append((start, horizon_days))
    return spans


def _verdict(meter: MeterSeries, horizon_days: float) -> str:
    return f"{_spans_text(meter.with_role, horizon_days)} with the role; {_spans_text(meter.without_role, horizon_days)} without it"


def _spans_text(samples: Sequence[Sample], horizon_days: float) -> str:
    spans = _off_supply(samples, horizon_days)
    if not spans:
        return "on supply throughout"
    return "off supply " + ", ".join(
        f"from day {start:g}" if end >= horizon_days else f"briefly on day {start:g}" if end == start
        else f"days {start:g}–{end:g}"
        for start, end in spans
    )
