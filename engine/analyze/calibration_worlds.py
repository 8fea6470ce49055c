"""Where a simulated study puts the truth of a claim (engine/analyze/calibration.py): per claim test,
the true mean of every unit of the claim's cells such that the claim's quantity equals a given value
(its boundary for the null, its stated effect for the power).

Each world moves only what the claim compares, around a centre (the metric's base rate or mean):
- difference a − b: the a units at centre + t/2, the b units at centre − t/2;
- trend: each model at centre + t (log2 size − the models' mean log2 size);
- interaction: the cell with every `present` level at centre + t, every other cell at the centre (the
  partial cells at the control's level: the non-inferiority parts hold, the contrast is t); and for
  each partial cell a world at its non-inferiority boundary: that cell at the control + margin, the
  full cell moved with it so the contrast stays t, t far beyond the contrast's own boundary (the
  least favourable case of an intersection-union test: every other part clearly holds);
- reduction: the control arm at the centre, the treated arm at centre (1 − t);
- only_model: every other model's effect (at a, or a − b) beyond the named model's by t;
- family_not_size: no size effect; the families t apart (t = 0: every model equal).
A rate is kept in [0, 1] by moving the centre; when even that cannot hold it, the means are clipped
and the world's true value recomputed from them (`truth`)."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from engine.analyze.claim_units import matches

EDGE = 0.02  # a simulated rate stays this far from 0 and 1 where it can (a rate at 0 or 1 decides nothing)
FAR_SDS = 4.0  # a mean's contrast "far beyond its boundary" (interaction margin worlds), in SDs


@dataclass(frozen=True)
class Planted:
    """Where a world puts the claim's quantity (`value`), and for an interaction's margin world the
    partial cell put at the control + margin (`partial`); `how` in words."""

    value: float
    how: str
    partial: dict[str, Any] | None = None


def _offsets(test: str, options: Any, frame: pd.DataFrame, params: dict[str, float], families: dict[str, str],
             planted: Planted) -> np.ndarray | None:
    t = planted.value
    cells, model = list(frame["cell"]), frame["model"].to_numpy()
    at = lambda levels: np.array([matches(c, levels) for c in cells], float)  # noqa: E731
    if test == "difference":
        return t / 2 * at(options.a) - t / 2 * at(options.b)
    if test == "trend":
        sizes = {m: math.log2(params[m]) for m in set(model) if m in params}
        centre = float(np.mean(list(sizes.values()))) if sizes else 0.0
        return np.array([t * (sizes[m] - centre) if m in sizes else 0.0 for m in model])
    if test == "interaction":
        if planted.partial is None:
            return t * at(options.present)
        margin = interaction_margin(options)
        return (t + margin) * at(options.present) + margin * at(planted.partial)
    if test == "only_model":
        moved = (model != options.model) & (model != "") if options.direction == "negative" else model == options.model
        effect = at(options.a) * 1.0 if options.b is None else (at(options.a) - at(options.b)) / 2
        return t * moved * effect
    if test == "family_not_size":
        order = {f: i for i, f in enumerate(sorted(set(families.values())))}
        middle = (len(order) - 1) / 2
        return np.array([t * (order[families[m]] - middle) if m in families else 0.0 for m in model])
    return None


def means(test: str, options: Any, frame: pd.DataFrame, centre: float, planted: Planted, proportion: bool,
          params: dict[str, float], families: dict[str, str]) -> tuple[np.ndarray, bool] | None:
    """Every unit's true mean in the world `planted` (the claim's quantity at its value), and whether a
    rate had to be clipped into [0, 1]; None for a test without a world here."""
    t = planted.value
    if test == "reduction":
        treated = np.array([matches(c, options.treated) for c in frame["cell"]], bool)
        if proportion:
            room = 1 - EDGE if t >= 0 else (1 - EDGE) / (1 - t)
            centre = min(max(centre, EDGE), room)
        mu = np.where(treated, centre * (1 - t), centre)
    else:
        offsets = _offsets(test, options, frame, params, families, planted)
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


def interaction_margin(options: Any) -> float:
    """The interaction claim's non-inferiority margin (engine/report/claim_tests.py's default for a rate)."""
    return 0.05 if options.margin is None else float(options.margin)


def _partial_cells(options: Any) -> list[dict[str, Any]]:
    factors = list(options.present)
    cells = [dict(zip(factors, combo)) for combo in itertools.product(*[(options.present[f], options.absent[f])
                                                                         for f in factors])]
    return [c for c in cells if c != dict(options.present) and c != dict(options.absent)]


def _far_contrast(options: Any, proportion: bool, centre: float, sd: float) -> tuple[float, str]:
    """An interaction contrast far beyond its boundary, for the margin worlds: the stated effect beyond
    it, else as much as a rate's room allows above the control (a mean: FAR_SDS SDs)."""
    boundary = options.at_least if options.kind == "at_least" else 0.0
    if options.effect is not None:
        return boundary + options.effect, "the contrast at its stated effect"
    if proportion:
        room = 1 - EDGE - max(centre, EDGE) - interaction_margin(options)
        return max(room, boundary + EDGE), "the full cell at 98% (the contrast as large as the rate allows)"
    return boundary + FAR_SDS * sd, f"the contrast {FAR_SDS:g} SDs beyond its boundary"


def claim_truths(test: str, options: Any, null: float, frame: pd.DataFrame | None = None, *, proportion: bool = True,
                 centre: float = 0.5, sd: float = 1.0) -> tuple[list[Planted], Planted | None, str]:
    """The worlds a simulation puts the claim in: its boundaries (the null: a direction's no-effect value,
    an at-least/at-most boundary, both ends of a range; an interaction's partial cells at their margin)
    and the stated effect (None: the claim states none), with a note of how they were read."""
    effect = getattr(options, "effect", None)
    if test == "only_model":  # its parts claim every other model's effect beyond the named one's by `margin`
        margin = float(options.margin)
        how = "the other models' gap at the margin"
        return [Planted(margin, how)], (Planted(margin + effect, "the stated effect") if effect is not None
                                        else None), how
    kind = options.kind
    if kind == "range":
        low, high = options.range
        how = "range: both ends; power at its centre"
        return ([Planted(low, "range: its lower end"), Planted(high, "range: its upper end")],
                Planted((low + high) / 2, "the range's centre"), how)
    if kind == "at_least":
        nulls, how = [Planted(options.at_least, "at least: the boundary")], "at least: the boundary"
        power = Planted(options.at_least + effect, "the stated effect") if effect is not None else None
    elif kind == "at_most":
        nulls, how = [Planted(options.at_most, "at most: the boundary")], "at most: the boundary"
        power = Planted(options.at_most - effect, "the stated effect") if effect is not None else None
    else:
        sign = 1.0 if options.direction == "positive" else -1.0
        nulls, how = [Planted(null, "direction: no effect")], "direction: no effect"
        power = Planted(null + sign * effect, "the stated effect") if effect is not None else None
    if test == "interaction":
        far, far_how = _far_contrast(options, proportion, centre, sd)
        margin = interaction_margin(options)
        nulls += [Planted(far, f"{', '.join(f'{k}={v}' for k, v in cell.items())} at the control + its margin "
                               f"{margin:g}; {far_how}", cell) for cell in _partial_cells(options)]
        how += "; each partial cell at its margin"
    return nulls, power, how
