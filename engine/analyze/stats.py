"""Interval estimates. Wilson for proportions; a seeded percentile bootstrap over units for means."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats
from statsmodels.stats.proportion import proportion_confint


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float
    n: int


def wilson(successes: int, n: int, alpha: float = 0.05) -> Estimate:
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    low, high = proportion_confint(successes, n, alpha=alpha, method="wilson")
    return Estimate(successes / n, float(low), float(high), n)


def relative_reduction(baseline: np.ndarray, treated: np.ndarray, seed: int, n_resamples: int = 4000,
                       alpha: float = 0.05) -> Estimate | None:
    """1 - mean(treated) / mean(baseline) of two independent arms of 0/1 outcomes, with a seeded
    percentile bootstrap resampling each arm; None when the baseline has no events (undefined).
    N is the number of units in both arms."""
    base, treat = np.asarray(baseline, float), np.asarray(treated, float)
    if len(base) == 0 or len(treat) == 0 or base.mean() == 0:
        return None
    rng = np.random.default_rng(seed)
    boot_base = rng.choice(base, size=(n_resamples, len(base))).mean(axis=1)
    boot_treat = rng.choice(treat, size=(n_resamples, len(treat))).mean(axis=1)
    kept = boot_base > 0  # resamples whose baseline has no event leave the ratio undefined
    low, high = np.percentile(1 - boot_treat[kept] / boot_base[kept], [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return Estimate(float(1 - treat.mean() / base.mean()), float(low), float(high), len(base) + len(treat))


def bootstrap_mean(values: np.ndarray | list[float], seed: int, n_resamples: int = 2000,
                   alpha: float = 0.05) -> Estimate:
    """Mean with a percentile bootstrap interval, resampling the units given (e.g. trials)."""
    data = np.asarray(values, dtype=float)
    n = len(data)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    mean = float(data.mean())
    if n == 1 or np.all(data == data[0]):
        # No variation to resample: the interval is the point (shown with its N).
        return Estimate(mean, mean, mean, n) if n > 1 else Estimate(mean, math.nan, math.nan, 1)
    result = stats.bootstrap((data,), np.mean, n_resamples=n_resamples, confidence_level=1 - alpha,
                             method="percentile", rng=np.random.default_rng(seed))
    ci = result.confidence_interval
    return Estimate(mean, float(ci.low), float(ci.high), n)
