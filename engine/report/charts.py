"""Altair charts for the report: points with 95% error bars, colour-blind-safe, sized for print."""

from __future__ import annotations

from typing import Any

import pandas as pd

# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
# Six shapes against eight colours: every (colour, shape) pair differs for up to 24 groups.
SHAPES = ["circle", "square", "triangle-up", "diamond", "cross", "triangle-down"]
WIDTH, HEIGHT = 420, 240


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
    colour = (alt.Color(f"{color}:N", title=legend_title, scale=alt.Scale(range=OKABE_ITO))
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
    # One legend: the points carry colour and shape; the error bars reuse the colour without a legend.
    bar_colour = (alt.Color(f"{color}:N", legend=None, scale=alt.Scale(range=OKABE_ITO))
                  if color else alt.value(OKABE_ITO[0]))
    offset = {"xOffset": alt.XOffset(f"{color}:N")} if color and nominal_x else {}
    bars = base.mark_rule(strokeWidth=1.5).encode(y=alt.Y("low:Q", title=y_title, axis=alt.Axis(format=y_format)),
                                                   y2="high:Q", color=bar_colour, **offset)
    points = base.mark_point(filled=True, size=70).encode(
        y="value:Q", color=colour, shape=alt.Shape(f"{color}:N", title=legend_title, scale=alt.Scale(range=SHAPES))
        if color else alt.value("circle"), tooltip=tooltip, **offset)
    chart = (bars + points).properties(width=WIDTH, height=HEIGHT).configure_axis(
        labelFontSize=11, titleFontSize=12).configure_legend(labelFontSize=11, titleFontSize=12)
    return chart.to_dict()


def to_svg(vega_lite: dict[str, Any]) -> str:
    import vl_convert as vlc

    return vlc.vegalite_to_svg(vega_lite)


def forest_chart(data: pd.DataFrame, *, x_title: str, percent: bool) -> dict[str, Any]:
    """A forest plot: one row per comparison (data columns: label, value, low, high, n, pairing,
    p, holm_p), its difference and 95% interval, against a rule at no difference. Rows keep the
    order given; a row without an interval shows its point only."""
    import altair as alt

    x_format = ".0%" if percent else ".2f"
    order = list(data["label"])
    y = alt.Y("label:N", title=None, sort=order, axis=alt.Axis(labelLimit=360))
    colour = alt.Color("pairing:N", title="Pairing", scale=alt.Scale(range=OKABE_ITO))
    tooltip = [alt.Tooltip("label:N", title="comparison"), alt.Tooltip("value:Q", format=x_format, title="difference"),
               alt.Tooltip("low:Q", format=x_format, title="95% low"),
               alt.Tooltip("high:Q", format=x_format, title="95% high"), alt.Tooltip("n:N", title="n"),
               alt.Tooltip("p:N", title="p"), alt.Tooltip("holm_p:N", title="Holm p")]
    base = alt.Chart(data).encode(y=y)
    bars = base.mark_rule(strokeWidth=1.5).encode(
        x=alt.X("low:Q", title=x_title, axis=alt.Axis(format=x_format)), x2="high:Q",
        color=alt.Color("pairing:N", legend=None, scale=alt.Scale(range=OKABE_ITO)))
    points = base.mark_point(filled=True, size=60).encode(
        x="value:Q", color=colour, shape=alt.Shape("pairing:N", title="Pairing", scale=alt.Scale(range=SHAPES)),
        tooltip=tooltip)
    zero = alt.Chart(pd.DataFrame({"zero": [0.0]})).mark_rule(strokeDash=[4, 3], color="#666666").encode(x="zero:Q")
    height = max(60, 22 * len(order))
    chart = (zero + bars + points).properties(width=WIDTH, height=height).configure_axis(
        labelFontSize=11, titleFontSize=12).configure_legend(labelFontSize=11, titleFontSize=12)
    return chart.to_dict()
