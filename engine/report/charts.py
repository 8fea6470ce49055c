"""Altair charts for the report: points with 95% error bars, colour-blind-safe, sized for print;
and the guard in front of the chart converter (vl-convert), which aborts the whole process on some
characters and overflows its stack on charts of very many rows: every string of a chart is made one
safe line (`chart_safe`), and `to_svg` draws a chart or says why it cannot (`ChartNotDrawn`)."""

from __future__ import annotations

import unicodedata
from typing import Any

import pandas as pd

from engine.report.markdown import one_line, visible

# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
# Six shapes against eight colours: every (colour, shape) pair differs for up to 24 groups.
SHAPES = ["circle", "square", "triangle-up", "diamond", "cross", "triangle-down"]
WIDTH, HEIGHT = 420, 240
# The one legend of a chart whose points carry colour and shape: the shape legend, each symbol filled
# from the colour scale (Vega-Lite does not merge a layered chart's colour and shape legends, and a
# shape legend alone is grey).
COLOURED_SHAPES = {"symbolFillColor": {"expr": "scale('color', datum.value)"}, "symbolOpacity": 1}


def estimate_chart(data: pd.DataFrame, *, x: str, x_title: str, y_title: str, color: str | None,
                   log_x: bool, percent: bool, nominal_x: bool = False) -> dict[str, Any]:
    """data columns: x, value, low, high, label, and `color` if given. Returns a Vega-Lite spec."""
    import altair as alt

    y_format = ".0%" if percent else ".2f"
    if nominal_x:
        x_enc = alt.X(f"{x}:N", title=x_title, sort=None, axis=alt.Axis(labelAngle=-30))
    else:
        x_enc = alt.X(f"{x}:Q", title=x_title,
                      scale=alt.Scale(type="log" if log_x else "linear", nice=False, padding=20))
    legend_title = color.replace("_", " ").capitalize() if color else None
    colour = (alt.Color(f"{color}:N", legend=None, scale=alt.Scale(range=OKABE_ITO))
              if color else alt.value(OKABE_ITO[0]))
    if color and not nominal_x:
        # Dodge groups that share an x value so their error bars do not overlap.
        levels = list(dict.fromkeys(data[color]))
        shift = {lvl: (i - (len(levels) - 1) / 2) for i, lvl in enumerate(levels)}
        if log_x:
            data = data.assign(**{x: [v * (1 + 0.04 * shift[g]) for v, g in zip(data[x], data[color])]})
        else:
            xs = sorted(set(data[x]))
            gap = min((b - a for a, b in zip(xs, xs[1:])), default=1.0)
            step = gap * 0.3 / max(len(levels), 1)
            data = data.assign(**{x: [v + step * shift[g] for v, g in zip(data[x], data[color])]})
    tooltip = [alt.Tooltip("label:N", title="cell"), alt.Tooltip("value:Q", format=y_format, title=y_title),
               alt.Tooltip("low:Q", format=y_format, title="95% low"),
               alt.Tooltip("high:Q", format=y_format, title="95% high"), alt.Tooltip("n:Q", title="N")]
    base = alt.Chart(data).encode(x=x_enc)
    bar_colour = colour
    offset = {"xOffset": alt.XOffset(f"{color}:N")} if color and nominal_x else {}
    bars = base.mark_rule(strokeWidth=1.5).encode(y=alt.Y("low:Q", title=y_title, axis=alt.Axis(format=y_format)),
                                                   y2="high:Q", color=bar_colour, **offset)
    points = base.mark_point(filled=True, size=70).encode(
        y="value:Q", color=colour, shape=alt.Shape(f"{color}:N", title=legend_title, scale=alt.Scale(range=SHAPES),
                                                   legend=alt.Legend(**COLOURED_SHAPES))
        if color else alt.value("circle"), tooltip=tooltip, **offset)
    chart = (bars + points).properties(width=WIDTH, height=HEIGHT).configure_axis(
        labelFontSize=11, titleFontSize=12).configure_legend(labelFontSize=11, titleFontSize=12)
    return chart.to_dict()


# The most data rows a chart draws: far more than a reader can tell apart, and well below the
# ~1,500 labelled rows at which vl-convert's JavaScript overflows its stack.
MAX_CHART_ROWS = 500
# Characters a chart shows as they are: letters, marks, numbers, punctuation, symbols and spaces.
# Controls, format characters, surrogates, private-use and unassigned code points and line or
# paragraph separators are shown as escapes: vl-convert aborts the process on some of them
# (NUL and the other C0 controls, U+FFFE) and fails to parse a title that holds a line break.
_DRAWN_CATEGORIES = ("L", "M", "N", "P", "S", "Zs")


class ChartNotDrawn(Exception):
    """Why a chart was not drawn (the report shows this in its place)."""


def chart_text(text: str) -> str:
    """A string as a chart shows it: one line, every character outside _DRAWN_CATEGORIES an escape."""
    line = one_line(text)
    if line.isascii():
        return line
    return "".join(c if unicodedata.category(c).startswith(_DRAWN_CATEGORIES) else visible(c) for c in line)


def chart_safe(value: Any) -> Any:
    """A Vega-Lite spec (or any part of one) with every string, keys included, through `chart_text`:
    the same text becomes the same string everywhere, so fields still match their data."""
    if isinstance(value, str):
        return chart_text(value)
    if isinstance(value, dict):
        return {chart_text(k) if isinstance(k, str) else k: chart_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [chart_safe(v) for v in value]
    return value


def chart_rows(vega_lite: dict[str, Any]) -> int:
    """The data rows a spec carries: its named datasets and every inline `data.values`."""
    rows = sum(len(v) for v in (vega_lite.get("datasets") or {}).values() if isinstance(v, list))

    def inline(node: Any) -> int:
        if isinstance(node, dict):
            data = node.get("data")
            own = len(data["values"]) if isinstance(data, dict) and isinstance(data.get("values"), list) else 0
            return own + sum(inline(v) for k, v in node.items() if k not in ("data", "datasets"))
        if isinstance(node, list):
            return sum(inline(v) for v in node)
        return 0

    return rows + inline(vega_lite)


def to_svg(vega_lite: dict[str, Any]) -> str:
    """The chart as SVG, or ChartNotDrawn saying why not: too many rows to draw, or the converter's
    own error. Pass a `chart_safe` spec: the converter aborts the process on some characters."""
    import vl_convert as vlc

    rows = chart_rows(vega_lite)
    if rows > MAX_CHART_ROWS:
        raise ChartNotDrawn(f"it has {rows:,} data rows, more than the {MAX_CHART_ROWS:,} a chart draws")
    try:
        return vlc.vegalite_to_svg(vega_lite)
    except ValueError as exc:  # vl-convert's error for a spec it cannot draw (a JavaScript error inside)
        said = next((line.strip() for line in str(exc).splitlines()[1:] if line.strip()), str(exc).strip())
        raise ChartNotDrawn(f"the chart converter failed ({said[:200]})") from None


def forest_chart(data: pd.DataFrame, *, x_title: str, percent: bool) -> dict[str, Any]:
    """A forest plot: one row per comparison (data columns: label, value, low, high, n, pairing,
    p, holm_p), its difference and 95% interval, against a rule at no difference. Rows keep the
    order given; a row without an interval shows its point only."""
    import altair as alt

    x_format = ".0%" if percent else ".2f"
    order = list(data["label"])
    y = alt.Y("label:N", title=None, sort=order, axis=alt.Axis(labelLimit=360))
    colour = alt.Color("pairing:N", legend=None, scale=alt.Scale(range=OKABE_ITO))
    tooltip = [alt.Tooltip("label:N", title="comparison"), alt.Tooltip("value:Q", format=x_format, title="difference"),
               alt.Tooltip("low:Q", format=x_format, title="95% low"),
               alt.Tooltip("high:Q", format=x_format, title="95% high"), alt.Tooltip("n:N", title="n"),
               alt.Tooltip("p:N", title="p"), alt.Tooltip("holm_p:N", title="Holm p")]
    base = alt.Chart(data).encode(y=y)
    bars = base.mark_rule(strokeWidth=1.5).encode(
        x=alt.X("low:Q", title=x_title, axis=alt.Axis(format=x_format)), x2="high:Q",
        color=colour)
    points = base.mark_point(filled=True, size=60).encode(
        x="value:Q", color=colour, shape=alt.Shape("pairing:N", title="Pairing", scale=alt.Scale(range=SHAPES),
                                                   legend=alt.Legend(**COLOURED_SHAPES)),
        tooltip=tooltip)
    zero = alt.Chart(pd.DataFrame({"zero": [0.0]})).mark_rule(strokeDash=[4, 3], color="#666666").encode(x="zero:Q")
    height = max(60, 22 * len(order))
    chart = (zero + bars + points).properties(width=WIDTH, height=height).configure_axis(
        labelFontSize=11, titleFontSize=12).configure_legend(labelFontSize=11, titleFontSize=12)
    return chart.to_dict()


HISTOGRAM_BINS = 30


def histogram_chart(values: list[float], flagged: list[bool], *, x_title: str, flag_title: str,
                    percent: bool) -> dict[str, Any]:
    """How many values (e.g. sizes of differences) fall in each of HISTOGRAM_BINS bins of equal width
    from 0 to the largest, stacked by `flagged` (e.g. a corrected p below 0.05). Binned here, so the
    chart carries at most 2 x HISTOGRAM_BINS rows however many values there are; non-finite values
    are left out."""
    import altair as alt
    import numpy as np

    x = np.asarray(values, dtype=float)
    flags = np.asarray(flagged, dtype=bool)
    keep = np.isfinite(x)
    x, flags = x[keep], flags[keep]
    low = min(float(x.min()), 0.0) if len(x) else 0.0
    high = max(float(x.max()), 0.0) if len(x) else 1.0
    if high - low < 1e-12:
        high = low + 1.0
    edges = np.linspace(low, high, HISTOGRAM_BINS + 1)
    flagged_counts, _ = np.histogram(x[flags], bins=edges)
    other_counts, _ = np.histogram(x[~flags], bins=edges)
    rows = []  # stacked here: the flagged part of a bin from 0, the rest on top of it
    for a, b, yes, no in zip(edges, edges[1:], flagged_counts, other_counts):
        for label, bottom, count in (("yes", 0, yes), ("no", yes, no)):
            if count:
                rows.append({"start": float(a), "end": float(b), "bottom": int(bottom), "top": int(bottom + count),
                             "count": int(count), "flag": label})
    x_format = ".0%" if percent else ".2f"
    colour = alt.Color("flag:N", title=flag_title, scale=alt.Scale(domain=["yes", "no"],
                                                                   range=[OKABE_ITO[3], "#9E9E9E"]))
    data = pd.DataFrame(rows, columns=["start", "end", "bottom", "top", "count", "flag"])
    chart = alt.Chart(data).mark_bar().encode(
        x=alt.X("start:Q", title=x_title, axis=alt.Axis(format=x_format), scale=alt.Scale(domain=[low, high])),
        x2="end:Q", y=alt.Y("bottom:Q", title="comparisons"), y2="top:Q", color=colour,
        tooltip=[alt.Tooltip("start:Q", format=x_format, title="from"),
                 alt.Tooltip("end:Q", format=x_format, title="to"),
                 alt.Tooltip("count:Q", title="comparisons"), alt.Tooltip("flag:N", title=flag_title)])
    return chart.properties(width=WIDTH, height=HEIGHT).configure_axis(
        labelFontSize=11, titleFontSize=12).configure_legend(labelFontSize=11, titleFontSize=12).to_dict()
