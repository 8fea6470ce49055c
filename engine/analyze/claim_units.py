"""The engine's claim tests as pure functions of a units frame (issue 21, rule 4): no database, so a
simulation of a design can call the exact code the report uses.

A units frame has one row per unit of the claim's metric in the cells the claim looks at: `value`,
`cell` (a dict of factor levels), `seed`, `item` ('' without one), `cluster` (what a resampling
interval draws), `model` (the cell's one model, '' otherwise) and `trial_id`. `ClaimUnits` carries
it with the metric, the seed of any resampling and the facts about the models (size, family).

Every estimate carries its interval family; its p-values are that family's inversions
(engine/analyze/inference.py). Differences use the paired machinery of engine/analyze/paired.py
(its `Difference.interval_at`)."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from engine.analyze import paired_stats
from engine.analyze.claim_stats import from_family, trend_across_models, unusable
from engine.analyze.inference import IntervalAt, mapped_family, share_family, t_family
from engine.analyze.paired import compare, shared_units
from engine.analyze.paired_ratio import paired_ratio_interval
from engine.analyze.stats import ratio_score_interval
from engine.kernel.contracts import ClaimEstimate, Claimed, ClaimPart, Metric
from engine.kernel.hashing import derived_seed

Levels = dict[str, Any]


@dataclass(frozen=True)
class ModelFacts:
    params_b: float
    family: str


@dataclass
class _Layout:
    """What a units frame's rows are, apart from their values: its `level_table`, pair keys per set of
    compared factors, and each arm's rows. Made once per frame and shared by `ClaimUnits.with_values`
    (a simulated study of the same design)."""

    table: pd.DataFrame | None = None
    keys: dict[frozenset[str], pd.Series] = field(default_factory=dict)
    arms: dict[tuple[frozenset[tuple[str, str]], frozenset[str]], tuple[np.ndarray, pd.DataFrame]] = \
        field(default_factory=dict)


@dataclass(frozen=True)
class ClaimUnits:
    frame: pd.DataFrame
    metric: Metric
    seed: int = 0
    models: dict[str, ModelFacts] = field(default_factory=dict)
    counted: str = "units"  # what a unit is called in the report ("trials", "games")
    reason: str | None = None  # why the design cannot decide the claim, found before any statistics

    @property
    def percent(self) -> bool:
        return self.metric.percent

    _layout: _Layout = field(default_factory=_Layout, init=False, repr=False, compare=False)

    @property
    def table(self) -> pd.DataFrame:
        """The frame's `level_table`, made once."""
        if self._layout.table is None:
            self._layout.table = level_table(self.frame)
        return self._layout.table

    def with_values(self, values: np.ndarray, seed: int) -> "ClaimUnits":
        """The same units with other values (`frame.assign(value=values)`) and resampling seed: a simulated
        study of the same design, sharing this frame's layout."""
        other = replace(self, frame=self.frame.assign(value=values), seed=seed)
        object.__setattr__(other, "_layout", self._layout)  # frozen: set once, as __init__ would
        return other

    def arm(self, levels: Levels, compared: set[str]) -> pd.DataFrame:
        """`arm` of the frame: its rows and pair keys found once per levels and compared factors, the
        values taken from this frame."""
        known = frozenset(compared)
        chosen = (frozenset((factor, str(level)) for factor, level in levels.items()), known)
        if chosen not in self._layout.arms:
            if known not in self._layout.keys:
                self._layout.keys[known] = pair_keys(self.frame, self.table, compared)
            keep = arm_rows(self.table, levels)
            self._layout.arms[chosen] = keep, arm(self.frame, levels, compared, self.table, self._layout.keys[known])
        keep, rows = self._layout.arms[chosen]
        return rows.assign(value=self.frame["value"][keep])

    def as_mean(self) -> "ClaimUnits":
        """The same units read as a mean (sums and differences of 0/1 outcomes are not 0/1)."""
        return replace(self, metric=replace(self.metric, kind="mean"))


def describe(levels: Levels) -> str:
    return ", ".join(f"{k}={v}" for k, v in levels.items())


def matches(cell: dict, levels: Levels) -> bool:
    return all(str(cell.get(k)) == str(v) for k, v in levels.items())


def rows(frame: pd.DataFrame, keep) -> pd.DataFrame:
    """The rows whose cell `keep` accepts. A boolean array, not a list: on an empty frame an empty
    list would select no columns rather than no rows."""
    return frame[np.array([keep(c) for c in frame["cell"]], bool)].copy()


def level_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Each unit's factor levels as text, one column per factor."""
    return pd.DataFrame(list(frame["cell"]), index=frame.index).astype(str)


def pair_keys(frame: pd.DataFrame, table: pd.DataFrame, compared: set[str]) -> pd.Series:
    """What a unit shares with its partners in other conditions: the levels of the factors not
    `compared`, the seed and the item."""
    parts = [factor + "=" + table[factor] for factor in sorted(set(table.columns) - compared)]
    parts += [frame["seed"].astype(str), frame["item"].astype(str)]
    return parts[0].str.cat(parts[1:], sep="\x1f")


def arm_rows(table: pd.DataFrame, levels: Levels) -> np.ndarray:
    """Which rows of a `level_table` are at `levels`."""
    keep = np.ones(len(table), bool)
    for factor, level in levels.items():
        keep &= (table[factor] == str(level)).to_numpy() if factor in table else False
    return keep


def arm(frame: pd.DataFrame, levels: Levels, compared: set[str], table: pd.DataFrame | None = None,
        keys: pd.Series | None = None) -> pd.DataFrame:
    """The units at `levels`, with `key` (`pair_keys`). `table`, `keys`: the frame's, when the caller
    has them."""
    table = level_table(frame) if table is None else table
    keep = arm_rows(table, levels)
    out = frame[keep].copy()
    out["key"] = (pair_keys(frame, table, compared) if keys is None else keys)[keep]
    return out


# ------------------------------------------------------------------------------------ differences

def _difference_family(diff: paired_stats.Difference) -> IntervalAt | None:
    """The difference's interval family: its own `interval_at` (engine/analyze/paired_stats.py, rule 1),
    the one the paired-contrast table prints; None when it has no interval."""
    return diff.interval_at


def cluster_mean(values: np.ndarray, clusters: np.ndarray) -> tuple[float, IntervalAt | None, int]:
    """The mean of `values` (sum over count, every unit weighted equally) with a t family on clusters - 1
    df, its standard error from the clusters' totals (the linearised ratio estimator, the usual
    cluster-robust SE); no family below 2 clusters or without variation between them."""
    sums, counts = paired_stats.cluster_totals(values, clusters)
    k, mean = len(sums), float(sums.sum() / counts.sum())
    residual = sums - mean * counts
    if k < 2 or not np.any(residual != 0):
        return mean, None, k
    se = math.sqrt(k / (k - 1) * float(np.sum(residual ** 2))) / float(counts.sum())
    return mean, t_family(mean, se, k - 1), k


def compared(a: pd.DataFrame, b: pd.DataFrame, units: ClaimUnits, quantity: str, salt: str) -> ClaimEstimate:
    """A minus B (keyed arms): paired on the keys they share, else unpaired (engine.analyze.paired.compare)."""
    if a.empty or b.empty:
        return unusable(quantity, "—", units.percent, "no finished units in one of the compared conditions",
                        len(a) + len(b))
    seed = derived_seed(units.seed, "claim", salt)
    diff, counts = compare(a, b, units.metric, seed)
    n = counts["n_pairs"] if counts["paired"] else counts["n_a"] + counts["n_b"]
    what = "pairs" if counts["paired"] else "units, unpaired"
    family = _difference_family(diff)
    if family is None:
        return unusable(quantity, diff.interval, units.percent, diff.note or "no interval", n, what)
    return from_family(diff.value, family, n, f"{quantity}; {n} {what}; {diff.interval}", diff.interval,
                       units.percent, units=what)


def difference(units: ClaimUnits, a: Levels, b: Levels, label: str | None = None) -> ClaimEstimate:
    """The metric at levels `a` minus at levels `b`, paired on the rest of the cell, seed and item."""
    kind = "rates" if units.metric.kind == "proportion" else "means"
    quantity = f"difference of {kind} ({label or f'{describe(a)} − {describe(b)}'})"
    if units.reason:
        return unusable(quantity, "—", units.percent, units.reason)
    keys = set(a) | set(b)
    return compared(units.arm(a, keys), units.arm(b, keys), units, quantity, json.dumps([a, b]))


# -------------------------------------------------------------------------------------- model level

def model_means(units: ClaimUnits) -> pd.Series:
    """Each model's mean over its units (cells of one model only)."""
    frame = units.frame[units.frame["model"] != ""]
    return frame.groupby("model")["value"].mean()


def trend(units: ClaimUnits) -> ClaimEstimate:
    """Slope per doubling of parameters across the models' rates (engine.analyze.claim_stats)."""
    if units.reason:
        return unusable("slope per doubling of parameters", "—", units.percent, units.reason)
    per_model = model_means(units)
    params = np.array([units.models[m].params_b for m in per_model.index])
    counted = int((units.frame["model"] != "").sum())
    return trend_across_models(per_model.to_numpy(), params, counted, units.percent, units.counted)


# ------------------------------------------------------------------------------------- interaction

def _contrast_values(units: ClaimUnits, cells: list[tuple[Levels, int]], factors: set[str]) -> pd.DataFrame:
    """Per key present in every cell (the rest of the cell, seed and item): the signed sum of the cells'
    values, and the key's cluster (the first cell's)."""
    arms = [(units.arm(levels, factors), sign) for levels, sign in cells]
    if not all(a["key"].is_unique for a, _ in arms):
        keyed = [(a.set_index("key"), sign) for a, sign in arms]
        shared = sorted(set.intersection(*(set(a.index) for a, _ in keyed)))
        total = sum(sign * a.loc[shared, "value"].astype(float) for a, sign in keyed)
        return pd.DataFrame({"value": total, "cluster": keyed[0][0].loc[shared, "cluster"]})
    # Distinct keys in every cell (a unit's key names it): the same rows by position, without pandas' lookups.
    rows = [dict(zip(a["key"].to_numpy(), range(len(a)))) for a, _ in arms]
    shared = sorted(set.intersection(*(set(r) for r in rows)))
    total = sum(sign * a["value"].to_numpy(float)[[r[k] for k in shared]] for (a, sign), r in zip(arms, rows))
    return pd.DataFrame({"value": total, "cluster": arms[0][0]["cluster"].to_numpy()[[rows[0][k] for k in shared]]},
                        index=pd.Index(shared, name="key"))


def interaction_parts(units: ClaimUnits, present: Levels, absent: Levels, interaction: Claimed,
                      margin: float) -> ClaimEstimate:
    """"The outcome needs every `present` level together; no proper subset suffices": an
    intersection-union of (1) every cell with some but not all levels present no higher than the
    cell with none of them (the control) by more than `margin` (non-inferiority), and (2) the
    highest-order interaction contrast (sum over the 2^k cells of (-1)^(levels absent) times the
    metric: for two factors both - first only - second only + neither) on the claimed side
    (`interaction`). Paired on the rest of the cell, seed and item."""
    factors = list(present)
    quantity = "interaction contrast (" + " ".join(
        f"{'+' if (len(factors) - sum(lv == present[f] for f, lv in c.items())) % 2 == 0 else '−'} {describe(c)}"
        for c in _cells(present, absent)).lstrip("+ ") + ")"
    if units.reason:
        return unusable(quantity, "—", units.percent, units.reason)
    control = dict(absent)
    partial = [c for c in _cells(present, absent) if c != present and c != control]
    parts = [ClaimPart(f"{describe(c)} − {describe(control)} ≤ {margin:g}",
                       difference(units, c, control), Claimed("at_most", high=margin)) for c in partial]
    signed = [(c, 1 if sum(c[f] != present[f] for f in factors) % 2 == 0 else -1) for c in _cells(present, absent)]
    values = _contrast_values(units, signed, set(factors))
    value, family, k = cluster_mean(values["value"].to_numpy(), values["cluster"].to_numpy())
    test = f"t over {k} clusters (cluster-robust SE)"
    contrast = (unusable(quantity, test, units.percent, f"{k} cluster(s) of complete sets of cells, or no variation "
                         "between them: no interval", len(values), "sets of cells") if family is None else
                from_family(value, family, len(values), f"{quantity}; {len(values)} complete sets of cells", test,
                            units.percent, units="sets of cells"))
    parts.append(ClaimPart(f"interaction contrast {_claimed_text(interaction)}", contrast, interaction))
    broken = next((p.estimate.reason for p in parts if p.estimate.reason), None)
    return replace(contrast, parts=tuple(parts), reason=broken)


def _cells(present: Levels, absent: Levels) -> list[Levels]:
    factors = list(present)
    return [dict(zip(factors, combo)) for combo in itertools.product(*[(present[f], absent[f]) for f in factors])]


def _claimed_text(claimed: Claimed) -> str:
    if math.isfinite(claimed.low) and math.isfinite(claimed.high):
        return f"in [{claimed.low:g}, {claimed.high:g}]"
    return f"> {claimed.low:g}" if math.isfinite(claimed.low) else f"< {claimed.high:g}"


# -------------------------------------------------------------------------------------- reduction

def reduction(units: ClaimUnits, control: Levels, treated: Levels) -> ClaimEstimate:
    """Relative reduction 1 - RR, RR = rate(treated) / rate(control). Where the design pairs the arms
    (the rest of the cell, seed and item shared: e.g. a model and seed with and without safety
    instructions; at least half the smaller arm's units have a partner), the paired score interval
    for RR on the pairs (engine/analyze/paired_ratio.py); else the two arms' units as independent
    binomial samples with the Miettinen-Nurminen score interval."""
    quantity = f"relative reduction ({describe(treated)} vs {describe(control)})"
    if units.reason:
        return unusable(quantity, "—", True, units.reason)
    keys = set(control) | set(treated)
    c, t = units.arm(control, keys), units.arm(treated, keys)
    vc, vt, _ = shared_units(c, t)
    paired = len(vc) > 0 and 2 * len(vc) >= min(len(c), len(t))
    if paired:
        both, treated_only, control_only = (int(((vc == 1) & (vt == 1)).sum()), int(((vc == 0) & (vt == 1)).sum()),
                                            int(((vc == 1) & (vt == 0)).sum()))
        n, events = len(vc), both + control_only

        def ratio_at(alpha: float) -> tuple[float, float]:
            return paired_ratio_interval(both, treated_only, control_only, n, alpha)
        rr, test, what = (both + treated_only) / events if events else math.nan, "paired score (Tang)", "pairs"
    else:
        kc, nc, kt, nt = int(c["value"].sum()), len(c), int(t["value"].sum()), len(t)
        n, events = nc + nt, kc

        def ratio_at(alpha: float) -> tuple[float, float]:
            return ratio_score_interval(kt, nt, kc, nc, alpha)
        rr = (kt / nt) / (kc / nc) if kc and nt else math.nan
        test, what = "score, independent arms (Miettinen-Nurminen)", "units in two arms"
    if events == 0:
        return unusable(quantity, test, True, "not estimable: no events in the control arm" if n else
                        "no finished units in the control arm", n, what)
    family = mapped_family(ratio_at, lambda r: 1 - r, decreasing=True)
    return from_family(1 - rr, family, n, f"{quantity}; {n} {what}", test, True, units=what)


# ---------------------------------------------------------------------------------- one model alone

def _effects(units: ClaimUnits, model: str, a: Levels, b: Levels | None) -> pd.DataFrame:
    """One model's units keyed by what two models' units share (the cell without the levels compared and
    without the model, seed, item): the metric at `a`, or its paired difference a - b."""
    frame = units.frame[units.frame["model"] == model]
    frame = frame.assign(cell=[{k: v for k, v in c.items() if str(v) != model} for c in frame["cell"]])
    keys = set(a) | set(b or {})
    at_a = arm(frame, a, keys)
    if b is None:
        return at_a
    merged = at_a.merge(arm(frame, b, keys), on="key", suffixes=("", "_b"))
    return merged.assign(value=merged["value"] - merged["value_b"])[["key", "value", "cluster"]]


def only_model(units: ClaimUnits, model: str, a: Levels, b: Levels | None, below: bool, margin: float,
               others: float | None) -> ClaimEstimate:
    """"`model` alone responds differently": its effect (the metric at `a` minus at `b`, paired; or
    the metric at `a` when `b` is None) below (`below`; else above) every other model's by more
    than `margin`, and, with `others` (needs `b`), every other model's own effect above `others`
    (below it when not `below`): an intersection-union over the other models, each gap a paired
    difference of effects on the seeds and items the two models share."""
    what = f"effect of {describe(a)}" + (f" vs {describe(b)}" if b else "")
    quantity = f"{what}, other models against {model}"
    if units.reason:
        return unusable(quantity, "—", units.percent, units.reason)
    present = sorted(set(units.frame["model"]) - {""})
    if model not in present:
        return unusable(quantity, "—", units.percent, f"the study has no units of model '{model}' here (models: "
                        f"{', '.join(present) or 'none'})")
    rivals = [m for m in present if m != model]
    if not rivals:
        return unusable(quantity, "—", units.percent, "needs at least one other model")
    scale = units.as_mean() if b is not None else units
    mine = _effects(units, model, a, b)
    parts = []
    for rival in rivals:
        theirs = _effects(units, rival, a, b)
        first, second, name = (theirs, mine, f"{rival} − {model}") if below else (mine, theirs, f"{model} − {rival}")
        gap = compared(first, second, scale, f"{what}: {name}", json.dumps(["only", model, rival]))
        parts.append(ClaimPart(f"{what}: {name} > {margin:g}", gap, Claimed("at_least", low=margin)))
        if others is not None and b is not None:
            alone = replace(units, frame=units.frame[units.frame["model"] == rival])
            own = difference(alone, a, b, f"{rival}: {describe(a)} − {describe(b)}")
            claimed = Claimed("at_least", low=others) if below else Claimed("at_most", high=others)
            parts.append(ClaimPart(f"{what} for {rival} {'>' if below else '<'} {others:g}", own, claimed))
    broken = next((p.estimate.reason for p in parts if p.estimate.reason), None)
    return replace(parts[0].estimate, quantity=quantity, parts=tuple(parts), reason=broken)


# ------------------------------------------------------------------------------ family, not size

def _fit(y: np.ndarray, design: np.ndarray) -> tuple[np.ndarray, float]:
    coef = np.linalg.lstsq(design, y, rcond=None)[0]
    return coef, float(np.sum((y - design @ coef) ** 2))


def family_beyond_size(units: ClaimUnits, size_range: tuple[float, float]) -> ClaimEstimate:
    """"The metric varies by model family, not size", on the models' rates: an intersection-union of
    (1) family explains variance beyond log2(parameters): the partial F test of the family dummies in
    rate ~ log2 size + family, with the partial eta^2's noncentral-F interval (its inversion against
    0 is that F test), and (2) the size slope per doubling in the same model (within families), t
    interval on models - families - 1 df, inside `size_range`."""
    quantity = "family's share of the model-level variance beyond log2 size (partial eta²)"
    test = "noncentral F interval (Steiger), inverting the partial F test"
    if units.reason:
        return unusable(quantity, "—", False, units.reason)
    per_model = model_means(units)
    y = per_model.to_numpy(float)
    x = np.log2([units.models[m].params_b for m in per_model.index])
    labels, codes = np.unique([units.models[m].family for m in per_model.index], return_inverse=True)
    k, n = len(labels), len(y)
    counted = f"{int((units.frame['model'] != '').sum())} {units.counted}"
    if k < 2:
        return unusable(quantity, test, False, f"needs models of at least 2 families; have {k}", n, "models")
    if n < k + 2:
        return unusable(quantity, test, False, f"needs at least {k + 2} models for {k} families and a size "
                        f"slope (an error degree of freedom); have {n}", n, "models")
    size_only = np.column_stack([np.ones(n), x])
    full = np.column_stack([size_only, (codes[:, None] == np.arange(1, k)).astype(float)])
    if np.linalg.matrix_rank(full) < k + 1:
        return unusable(quantity, test, False, "size is confounded with family (no size variation within a "
                        "family to separate them)", n, "models")
    _, sse_size = _fit(y, size_only)
    coef, sse_full = _fit(y, full)
    df_effect, df_error = k - 1, n - k - 1
    if sse_full <= 1e-15 * max(sse_size, 1e-300):
        return unusable(quantity, test, False, "the rates fit size and family exactly: no error left to test", n,
                        "models")
    f = ((sse_size - sse_full) / df_effect) / (sse_full / df_error)
    family_share = from_family((sse_size - sse_full) / sse_size, share_family(f, df_effect, df_error, n), n,
                               f"{quantity}; {k} families, {n} models", test, False, units="models",
                               detail=counted)
    se = math.sqrt(sse_full / df_error * np.linalg.inv(full.T @ full)[1, 1])
    slope = from_family(float(coef[1]), t_family(float(coef[1]), se, df_error), n,
                        f"slope per doubling of parameters within families; {n} models", f"t, {df_error} df",
                        units.percent, units="models", detail=counted)
    low, high = size_range
    parts = (ClaimPart("family explains variance beyond size (partial eta² > 0)", family_share,
                       Claimed("direction", low=0.0)),
             ClaimPart(f"size slope per doubling within families in [{low:g}, {high:g}]", slope,
                       Claimed("range", low, high)))
    return replace(family_share, parts=parts)
