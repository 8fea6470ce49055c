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
