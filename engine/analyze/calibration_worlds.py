"""Where a simulated study puts the truth of a claim (engine/analyze/calibration.py): per claim test,
the true mean of every unit of the claim's cells such that the claim's quantity equals a given value
(its boundary for the null, its stated effect for the power).

Each world moves only what the claim compares, around a centre (the metric's base rate or mean):
- difference a − b: the a units at centre + t/2, the b units at centre − t/2;
- trend: each model at centre + t (log2 size − the models' mean log2 size);
- interaction: the cell with every `present` level at centre + t, every other cell at the centre (the
  partial cells at the control's level: the non-inferiority parts hold, the contrast is t);
- reduction: the control arm at the centre, the treated arm at centre (1 − t);
- only_model: every other model's effect (at a, or a − b) beyond the named model's by t;
- family_not_size: no size effect; the families t apart (t = 0: every model equal).
A rate is kept in [0, 1] by moving the centre; when even that cannot hold it, the means are clipped
and the world's true value recomputed from them (`truth`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from engine.analyze.claim_units import matches

EDGE = 0.02  # a simulated rate stays this far from 0 and 1 where it can (a rate at 0 or 1 decides nothing)


def _offsets(test: str, options: Any, frame: pd.DataFrame, params: dict[str, float], families: dict[str, str],
             t: float) -> np.ndarray | None:
    cells, model = list(frame["cell"]), frame["model"].to_numpy()
    at = lambda levels: np.array([matches(c, levels) for c in cells], float)  # noqa: E731
    if test == "difference":
        return t / 2 * at(options.a) - t / 2 * at(options.b)
    if test == "trend":
        sizes = {m: math.log2(params[m]) for m in set(model) if m in params}
        centre = float(np.mean(list(sizes.values()))) if sizes else 0.0
        return np.array([t * (sizes[m] - centre) if m in sizes else 0.0 for m in model])
    if test == "interaction":
        return t * at(options.present)
    if test == "only_model":
        moved = (model != options.model) & (model != "") if options.direction == "negative" else model == options.model
        effect = at(options.a) * 1.0 if options.b is None else (at(options.a) - at(options.b)) / 2
        return t * moved * effect
    if test == "family_not_size":
        order = {f: i for i, f in enumerate(sorted(set(families.values())))}
        middle = (len(order) - 1) / 2
        return np.array([t * (order[families[m]] - middle) if m in families else 0.0 for m in model])
    return None


def means(test: str, options: Any, frame: pd.DataFrame, centre: float, t: float, proportion: bool,
          params: dict[str, float], families: dict[str, str]) -> tuple[np.ndarray, bool] | None:
    """Every unit's true mean in the world where the claim's quantity is `t`, and whether a rate had
    to be clipped into [0, 1]; None for a test without a world here."""
    if test == "reduction":
        treated = np.array([matches(c, options.treated) for c in frame["cell"]], bool)
        if proportion:
            room = 1 - EDGE if t >= 0 else (1 - EDGE) / (1 - t)
            centre = min(max(centre, EDGE), room)
        mu = np.where(treated, centre * (1 - t), centre)
    else:
        offsets = _offsets(test, options, frame, params, families, t)
        if offsets is None:
            return None
        if proportion and len(offsets):
            low, high = EDGE - offsets.min(), 1 - EDGE - offsets.max()
            centre = min(max(centre, low), high) if low <= high else (low + high) / 2
        mu = centre + offsets
    if not proportion:
        return mu, False
    clipped = bool(np.any((mu < 0) | (mu > 1)))
    return np.clip(mu, 0.0, 1.0), clipped


def truth(test: str, options: Any, frame: pd.DataFrame, mu: np.ndarray, params: dict[str, float],
          planted: float) -> float:
    """The claim's quantity in a world of unit means `mu` (the planted value where nothing was clipped,
    or for a test whose quantity is not a plain function of the means)."""
    cells = list(frame["cell"])
    at = lambda levels: np.array([matches(c, levels) for c in cells], float)  # noqa: E731
    if test == "difference":
        a, b = at(options.a) > 0, at(options.b) > 0
        return float(mu[a].mean() - mu[b].mean()) if a.any() and b.any() else planted
    if test == "reduction":
        c, t = at(options.control) > 0, at(options.treated) > 0
        return float(1 - mu[t].mean() / mu[c].mean()) if c.any() and t.any() and mu[c].mean() > 0 else planted
    if test == "trend":
        per_model = pd.Series(mu).groupby(frame["model"].to_numpy()).mean()
        per_model = per_model[[m in params for m in per_model.index]]
        if len(per_model) >= 2:
            x = np.log2([params[m] for m in per_model.index])
            return float(np.polyfit(x, per_model.to_numpy(), 1)[0]) if np.ptp(x) > 0 else planted
    return planted


def claim_truths(test: str, options: Any, null: float) -> tuple[list[float], float | None, str]:
    """The values of the claim's quantity a simulation puts it at: its boundaries (the null: a direction's
    no-effect value, an at-least/at-most boundary, both ends of a range) and the stated effect (None:
    the claim states none), with a note of how they were read."""
    effect = getattr(options, "effect", None)
    if test == "only_model":  # its parts claim every other model's effect beyond the named one's by `margin`
        margin = float(options.margin)
        return [margin], (margin + effect if effect is not None else None), "the other models' gap at the margin"
    kind = options.kind
    if kind == "range":
        low, high = options.range
        return [low, high], (low + high) / 2, "range: both ends; power at its centre"
    if kind == "at_least":
        return [options.at_least], (options.at_least + effect if effect is not None else None), "at least: the boundary"
    if kind == "at_most":
        return [options.at_most], (options.at_most - effect if effect is not None else None), "at most: the boundary"
    sign = 1.0 if options.direction == "positive" else -1.0
    return [null], (null + sign * effect if effect is not None else None), "direction: no effect"

