"""Rates corrected for judge error. A judge with sensitivity Se and specificity Sp on a rate's
decision turns a true rate pi into an expected judged rate p = Se pi + (1 - Sp)(1 - pi); solving for
pi gives the Rogan-Gladen estimator (Rogan & Gladen 1978, Am J Epidemiol 107:71-76),
pi = (p + Sp - 1) / (Se + Sp - 1), which means something only when Youden's J = Se + Sp - 1 > 0.
Se and Sp are estimated on the judge's gold set, so the corrected rate carries two sampling errors,
the traces' and the gold set's: its interval is a seeded percentile bootstrap over both, drawn
independently (Greenland 1988, Stat Med 7:745-757, gives the delta-method variance it approximates)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engine.analyze.agreement import BinaryValidity
from engine.analyze.stats import Estimate, wilson

NOT_CORRECTABLE = "not correctable"


def rogan_gladen(p, sensitivity, specificity):
    """(p + Sp - 1) / (Se + Sp - 1) clipped to [0, 1]; NaN where Youden's J <= 0 (no inversion).
    Works elementwise on arrays; a float for scalars."""
    p, se, sp = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (p, sensitivity, specificity)))
    j = se + sp - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.where(j > 0, np.clip((p + sp - 1) / j, 0.0, 1.0), np.nan)
    return float(value) if value.ndim == 0 else value


@dataclass(frozen=True)
class CorrectedRate:
    raw: Estimate               # the judged rate, Wilson 95% interval, N = traces
    corrected: Estimate | None  # Rogan-Gladen, clipped, bootstrap 95% interval (NaN: none); None: not correctable
    youden: Estimate            # the judge's J on the gold set (Newcombe interval), N = gold items
    reason: str                 # why there is no corrected rate ("" when there is one)
    clipped: bool               # the uncorrected formula fell outside [0, 1]
    degenerate: float           # share of resamples with J <= 0 (the interval counts them as 0 low, 1 high)
    n_resamples: int


def _proportion_draws(k: int, n: int, rng: np.random.Generator, size: int) -> np.ndarray:
    """Bootstrap draws of a proportion k / n of n independent 0/1 units: resampling the units is
    drawing Binomial(n, k / n). At k = 0 or k = n that has no spread at all (every resample is the
    sample), which would print an interval of width 0 over an unseen error; there the draws come from
    the Jeffreys posterior Beta(k + 1/2, n - k + 1/2), whose quantiles are the Jeffreys interval."""
    if 0 < k < n:
        return rng.binomial(n, k / n, size) / n
    return rng.beta(k + 0.5, n - k + 0.5, size)


def _trace_draws(values: np.ndarray, clusters: np.ndarray | None, rng: np.random.Generator,
                 size: int) -> np.ndarray:
    """Bootstrap draws of the judged rate: over clusters (e.g. a prompt repeated across seeds) when
    a cluster holds several traces, else over traces."""
    k, n = int(values.sum()), len(values)
    if clusters is None or 0 in (k, n - k):
        return _proportion_draws(k, n, rng, size)
    _, index = np.unique(clusters, return_inverse=True)
    totals, sizes = np.bincount(index, weights=values), np.bincount(index)
    if sizes.max() == 1:
        return _proportion_draws(k, n, rng, size)
    picks = rng.integers(0, len(sizes), size=(size, len(sizes)))
    return totals[picks].sum(axis=1) / sizes[picks].sum(axis=1)


def not_correctable_reason(validity: BinaryValidity | None, min_youden: float = 0.0) -> str:
    """Why the judge's errors cannot be corrected for ("" when they can): no gold measurement, or
    Youden's J or the lower end of its 95% interval at or below `min_youden` (0: a judge that may be
    no better than chance carries no information to invert)."""
    if validity is None:
        return "no graded gold item"
    j = validity.youden
    if math.isnan(j.value):
        side = "positive" if validity.n_positive == 0 else "negative"
        return f"the gold set has no {side} item for this decision"
    if j.value <= min_youden or j.low <= min_youden:
        return (f"Youden's J {j.value:.2f} [{j.low:.2f}, {j.high:.2f}] on {j.n} gold items "
                f"{'is' if j.value <= min_youden else 'reaches'} {min_youden:g} or below")
    return ""


def corrected_rate(values: Sequence[float] | np.ndarray, validity: BinaryValidity | None, seed: int,
                   clusters: Sequence | np.ndarray | None = None, n_resamples: int = 4000,
                   alpha: float = 0.05, min_youden: float = 0.0) -> CorrectedRate:
    """The judged rate of 0/1 `values` (one per trace), and its Rogan-Gladen correction for the
    judge whose gold-set validity on the rate's decision is `validity`.

    Interval: `n_resamples` draws of the judged rate (bootstrap over traces, or over `clusters`), and,
    independently, of Se and Sp (bootstrap over the gold set's positive and negative items, each class
    kept at its size, as it was labelled); the corrected rate of each draw, clipped to [0, 1]; its
    alpha/2 and 1 - alpha/2 quantiles. A draw whose J is <= 0 has no corrected rate: it counts as 0 for
    the lower end and as 1 for the upper end, never dropped. When both ends are the same clipped value
    (the judged rate is outside [1 - Sp, Se] in nearly every draw) there is no interval (NaN ends)."""
    data = np.asarray(values, dtype=float)
    if not np.all((data == 0) | (data == 1)):
        raise ValueError("corrected_rate needs 0/1 values")
    raw = wilson(int(data.sum()), len(data))
    youden = validity.youden if validity is not None else Estimate(math.nan, math.nan, math.nan, 0)
    reason = "no traces" if raw.n == 0 else not_correctable_reason(validity, min_youden)
    if reason:
        return CorrectedRate(raw, None, youden, reason, False, math.nan, 0)
    se, sp = validity.sensitivity.value, validity.specificity.value
    unclipped = (raw.value + sp - 1) / (se + sp - 1)
    rng = np.random.default_rng(seed)
    keys = None if clusters is None else np.asarray(clusters)
    p = _trace_draws(data, keys, rng, n_resamples)
    se_draws = _proportion_draws(validity.true_positive, validity.n_positive, rng, n_resamples)
    sp_draws = _proportion_draws(validity.n_negative - validity.false_positive, validity.n_negative, rng,
                                 n_resamples)
    draws = rogan_gladen(p, se_draws, sp_draws)
    degenerate = np.isnan(draws)
    low = float(np.quantile(np.where(degenerate, 0.0, draws), alpha / 2))
    high = float(np.quantile(np.where(degenerate, 1.0, draws), 1 - alpha / 2))
    value = float(np.clip(unclipped, 0.0, 1.0))
    if low == high:
        # At least 97.5% of the draws were clipped to one end: the judged rate lies outside what the
        # judge's Se and Sp can produce ([1 - Sp, Se]); a zero-width interval would claim certainty.
        low = high = math.nan
    return CorrectedRate(raw, Estimate(value, low, high, raw.n), youden, "",
                         not 0.0 <= unclipped <= 1.0, float(degenerate.mean()), n_resamples)
