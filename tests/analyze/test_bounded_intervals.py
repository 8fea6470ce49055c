"""Intervals of few clusters and of bounded quantities (issue 21):
- a mean's studentized cluster bootstrap at exactly 10 clusters covers at least 94% (nominal 95%) on
  skewed and discrete metrics: each end at least as far out as Student's t with clusters - 1 df (the
  bare bootstrap-t covered 92.7-93.6% there; 1,500 seeded studies per shape);
- a mean of units that cannot be negative (e.g. a divergence) never gets an interval below 0, and
  keeps its coverage (clipping to the bounds cannot lose it: the truth lies inside them)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from coverage_check import SHAPES, assert_covers

from engine.analyze.metrics import aggregate, cell_estimate
from engine.analyze.stats import inverted_p
from engine.kernel.contracts import Metric
from engine.scenarios.escalation.metrics import METRICS

MEAN = Metric("score", "Score", "mean", "SELECT 1", "a mean")
NON_NEGATIVE = Metric("score", "Score", "mean", "SELECT 1", "never negative", bounds=(0, None))  # same seeds


@pytest.mark.slow
@pytest.mark.parametrize("shape", ["gamma2", "beta(0.5,3)x4", "30% zeros", "0-4 skewed", "turns 1-8"])
def test_a_mean_over_exactly_10_clusters_covers_94_percent(shape):
    draw, truth = SHAPES[shape]
    rng, covered, printed = np.random.default_rng(10), 0, 0
    for rep in range(1500):
        values = draw(rng, 20).astype(float)  # 10 clusters of 2 units each
        est = cell_estimate(MEAN, values, rep, "cell", np.repeat(np.arange(10), 2))
        if math.isfinite(est.low):
            printed += 1
            covered += est.low <= truth <= est.high
    assert printed >= 1400
    assert_covers(covered, printed, f"mean over 10 clusters, {shape}", target=0.94)


def test_the_t_floor_widens_a_short_bootstrap_interval():
    """10 units of a skewed metric: the 95% interval reaches at least the t interval's ends (9 df)."""
    from scipy import stats

    values = np.array([0.1, 0.2, 0.2, 0.3, 0.3, 0.4, 0.5, 0.8, 1.9, 3.5])
    est = aggregate(MEAN, pd.Series(values), 4, "cell")
    se = values.std(ddof=1) / math.sqrt(10)
    half = stats.t.ppf(0.975, 9) * se
    assert est.low <= values.mean() - half + 1e-12 and est.high >= values.mean() + half - 1e-12


def _near_zero(rng: np.random.Generator, n: int) -> np.ndarray:
    """Half zeros, half exponential (mean 0.5): the shape whose interval, unclipped, dips below 0."""
    return (rng.random(n) < 0.5) * rng.exponential(1.0, n)


def test_a_non_negative_mean_never_gets_an_interval_below_0_and_still_covers():
    rng, truth = np.random.default_rng(3), 0.5
    below, covered, printed = 0, 0, 0
    for rep in range(400):
        values = pd.Series(_near_zero(rng, 12))
        free, kept = aggregate(MEAN, values, rep, "cell"), aggregate(NON_NEGATIVE, values, rep, "cell")
        if not math.isfinite(free.low):
            continue
        printed += 1
        below += free.low < 0
        assert kept.low >= 0 and kept.high == free.high and kept.value == free.value
        assert kept.interval_at(0.001)[0] >= 0  # at every level, so any p-value inverted from it
        covered += kept.low <= truth <= kept.high
        assert (free.low <= truth <= free.high) == (kept.low <= truth <= kept.high)
    assert below > 0.05 * printed  # the unbounded interval does go below 0 on this shape
    assert_covers(covered, printed, "a non-negative mean over 12 units, clipped at 0")


def test_a_p_value_against_a_value_inside_the_bounds_is_the_same_after_clipping():
    values = pd.Series(_near_zero(np.random.default_rng(8), 12))
    free, kept = aggregate(MEAN, values, 1, "cell"), aggregate(NON_NEGATIVE, values, 1, "cell")
    assert inverted_p(kept.interval_at, 0.5) == pytest.approx(inverted_p(free.interval_at, 0.5), rel=1e-6)


def test_escalation_metrics_state_their_bounds():
    by_name = {m.name: m for m in METRICS}
    assert by_name["divergence"].value_bounds == (0.0, 9.0)
    assert by_name["model_divergence"].value_bounds == (0.0, 9.0)
    assert by_name["velocity"].value_bounds == (-9.0, 9.0)  # a side may step down: velocity is signed
    assert by_name["overshoot_share"].value_bounds == (0.0, 1.0)  # a share
    assert by_name["turns_to_nuclear"].value_bounds == (1.0, math.inf)
