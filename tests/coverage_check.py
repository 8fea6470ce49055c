"""Seeded coverage simulations shared by the interval tests (tests/analyze/test_coverage.py and the
scenarios' own): study-like designs with clusters, and the check that an interval's simulated
coverage is not below 93% by more than its Monte Carlo error."""

from __future__ import annotations

import math

import numpy as np
from scipy.special import expit

TARGET = 0.93  # issue 21: wherever an interval is printed (nominal 95%)
Z = 2.0  # a coverage this many Monte Carlo standard errors below TARGET fails


def assert_covers(covered: int, printed: int, what: str, target: float = TARGET) -> None:
    """Fail when the share of printed intervals that covered the truth lies more than Z Monte Carlo
    standard errors (at the target) below the target."""
    assert printed > 0, f"{what}: no interval printed"
    se = math.sqrt(target * (1 - target) / printed)
    coverage = covered / printed
    print(f"coverage {what}: {coverage:.3f} over {printed} printed (MC SE {se:.3f})")  # shown with pytest -s
    assert coverage >= target - Z * se, (f"{what}: coverage {coverage:.3f} over {printed} printed intervals, below "
                                         f"{target:.2f} by more than {Z:g} Monte Carlo SE ({se:.3f})")


def beta_binomial(rng: np.random.Generator, clusters: int, size: int, rate: float,
                  icc: float) -> tuple[np.ndarray, np.ndarray]:
    """0/1 outcomes of `clusters` clusters of `size` units whose cluster rates are Beta with mean `rate`
    and intraclass correlation `icc` (0: independent units); and each unit's cluster."""
    if icc == 0:
        rates = np.full(clusters, rate)
    else:
        rates = rng.beta(rate * (1 - icc) / icc, (1 - rate) * (1 - icc) / icc, clusters)
    values = (rng.random((clusters, size)) < rates[:, None]).astype(float)
    return values.ravel(), np.repeat(np.arange(clusters), size)


def paired_binary(rng: np.random.Generator, clusters: int, size: int, logit_a: float, logit_b: float,
                  cluster_sd: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of 0/1 outcomes (a, b) in clusters: a cluster effect shared by both arms (SD cluster_sd on the
    logit scale), a cluster-specific effect of A (SD 0.5) and a pair effect shared by the pair (SD 1)."""
    shared = rng.normal(0, cluster_sd, clusters)[:, None]
    effect = rng.normal(0, 0.5, clusters)[:, None]
    pair = rng.normal(0, 1, (clusters, size))
    a = (rng.random((clusters, size)) < expit(logit_a + shared + effect + pair)).astype(float)
    b = (rng.random((clusters, size)) < expit(logit_b + shared + pair)).astype(float)
    return a.ravel(), b.ravel(), np.repeat(np.arange(clusters), size)


def paired_binary_truth(logit_a: float, logit_b: float, cluster_sd: float) -> float:
    """The population difference of `paired_binary`'s two rates (Monte Carlo over 400,000 draws, fixed seed)."""
    z = np.random.default_rng(0).normal(size=(400_000, 3))
    return float(np.mean(expit(logit_a + cluster_sd * z[:, 0] + 0.5 * z[:, 1] + z[:, 2])
                         - expit(logit_b + cluster_sd * z[:, 0] + z[:, 2])))


# Skewed, bounded or discrete per-unit values like the studies' means (divergence, welfare, turns):
# name -> (draw(rng, size), population mean).
SHAPES = {
    "gamma2": (lambda rng, size: rng.gamma(2, 1, size), 2.0),
    "beta(0.5,3)x4": (lambda rng, size: 4 * rng.beta(0.5, 3, size), 4 * 0.5 / 3.5),
    "30% zeros": (lambda rng, size: (rng.random(size) < 0.7) * rng.exponential(1, size), 0.7),
    "0-4 skewed": (lambda rng, size: rng.choice(5, size, p=[0.5, 0.25, 0.12, 0.08, 0.05]), 0.93),
    "turns 1-8": (lambda rng, size: 1 + rng.binomial(7, 0.15, size), 1 + 7 * 0.15),
    "mostly 1": (lambda rng, size: 1 + rng.binomial(7, 0.05, size), 1 + 7 * 0.05),
}
