"""Small charts as SVG geometry (the templates draw them, escaping every label): pairs of
horizontal bars, stable against canary, one pair per metric or class; and a weight bar."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

LABEL_W = 150  # the labels' column
BAR_W = 260  # the longest bar
VALUE_W = 90  # the values' column
BAR_H = 14
GAP = 4  # between the two bars of a pair
PAIR_GAP = 14  # between pairs
TOP = 8
LABEL_CHARS = 20  # a longer label is cut (with "…") in its column


@dataclass(frozen=True)
class Bar:
    series: str  # "stable" or "canary"
    y: float
    width: float
    value: str


@dataclass(frozen=True)
class Pair:
    label: str  # the whole label (the bars' titles)
    short: str  # what fits in the labels' column
    label_y: float
    bars: tuple[Bar, Bar]


@dataclass(frozen=True)
class PairChart:
    width: int
    height: int
    label_w: int
    value_x: int
    bar_h: int
    pairs: tuple[Pair, ...]


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if math.isnan(value) or math.isinf(value) else float(value)


def fmt(value: float | None) -> str:
    if value is None:
        return "—"
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.3g}"
    return f"{value:.4g}"


def pairs(rows: Sequence[tuple[str, object, object]]) -> PairChart | None:
    """(label, stable, canary) rows -> bars scaled to the largest absolute value of the chart.

    Values that are not finite numbers draw no bar and read "—"; None when nothing can be drawn."""
    values = [(label, _number(s), _number(c)) for label, s, c in rows]
    biggest = max((abs(v) for _, s, c in values for v in (s, c) if v is not None), default=0.0)
    if not values or all(s is None and c is None for _, s, c in values):
        return None
    scale = BAR_W / biggest if biggest > 0 else 0.0
    out = []
    y = float(TOP)
    for label, stable, canary in values:
        first = Bar("stable", y, abs(stable or 0.0) * scale, fmt(stable))
        second = Bar("canary", y + BAR_H + GAP, abs(canary or 0.0) * scale, fmt(canary))
        short = label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"
        out.append(Pair(label, short, y + BAR_H + GAP / 2 + 4, (first, second)))
        y += 2 * BAR_H + GAP + PAIR_GAP
    height = int(y - PAIR_GAP + TOP)
    return PairChart(LABEL_W + BAR_W + VALUE_W, height, LABEL_W, LABEL_W + BAR_W + 6, BAR_H, tuple(out))


@dataclass(frozen=True)
class Span:
    x: float
    width: float
    kind: str
    title: str
    open: bool


@dataclass(frozen=True)
class Lane:
    label: str
    y: float
    spans: tuple[Span, ...]


@dataclass(frozen=True)
class Timeline:
    width: int
    height: int
    label_w: int
    plot_w: int
    lane_h: int
    lanes: tuple[Lane, ...]
    start: float
    end: float


TIMELINE_W = 560
LANE_H = 18


def timeline(
    start: float, end: float, lanes: Sequence[tuple[str, Sequence[tuple[float, float | None, str, str]]]]
) -> Timeline | None:
    """Lanes (a label and its (opened, resolved or None, kind, title) spans) over [start, end):
    a span still open runs to the end; every span is at least 2 px wide to stay visible."""
    if not lanes or end <= start:
        return None
    scale = TIMELINE_W / (end - start)
    out = []
    y = float(TOP)
    for label, spans in lanes:
        drawn = []
        for opened, resolved, kind, title in spans:
            left = max(opened, start)
            right = min(resolved if resolved is not None else end, end)
            if right < start or left > end:
                continue
            x = LABEL_W + (left - start) * scale
            drawn.append(Span(x, max(2.0, (right - left) * scale), kind, title, resolved is None))
        out.append(Lane(label, y, tuple(drawn)))
        y += LANE_H + 8
    return Timeline(
        LABEL_W + TIMELINE_W + 8, int(y + 16), LABEL_W, TIMELINE_W, LANE_H, tuple(out), start, end
    )
