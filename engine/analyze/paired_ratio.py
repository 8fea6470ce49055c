"""Score interval for the ratio of two paired proportions (each unit seen in both arms, e.g. a model
and seed with and without safety instructions): Tang, Tang and Chan (2003, Stat Med 22:1065),
the score test of p_treated = phi p_control with the restricted maximum-likelihood estimate of the
discordant cell, inverted numerically on the log scale.

Chosen by simulated coverage (tests/analyze/test_claim_units.py): at 2-7 models x 2-30 seeds, rates
1-90% and within-pair correlation 0-0.5 it covers 94.8-99.7% (nominal 95%), where the log-scale Wald
interval of the Mantel-Haenszel ratio over model x seed strata (Greenland-Robins variance) covers
83% at 2 models x 10 seeds; and it is 10-30% narrower than the unpaired score interval when the arms
are correlated."""

from __future__ import annotations

import math

from scipy import optimize, stats

from engine.analyze.stats import quantile

LOG_BOUND = 50.0  # |log ratio| searched; beyond it the end is taken as 0 or infinite


def score_statistic(phi: float, both: int, treated_only: int, control_only: int, n: int) -> float:
    """Tang et al.'s score statistic for H0: p_treated / p_control = phi; positive when the observed
    ratio exceeds phi."""
    a = n * (1 + phi)
    b = (both + control_only) * phi ** 2 - (both + treated_only + 2 * control_only)
    c = control_only * (1 - phi) * (both + treated_only + control_only) / n
    discordant = (-b + math.sqrt(max(b * b - 4 * a * c, 0.0))) / (2 * a)
    variance = n * (1 + phi) * discordant + (both + treated_only + control_only) * (phi - 1)
    difference = (both + treated_only) - (both + control_only) * phi
    if variance <= 0:  # only at phi -> 0 with no treated events, where the statistic tends to 0
        return 0.0 if abs(difference) <= 1e-9 * n else math.copysign(math.inf, difference)
    return difference / math.sqrt(variance)


def paired_ratio_interval(both: int, treated_only: int, control_only: int, n: int,
                          alpha: float = 0.05) -> tuple[float, float]:
    """Two-sided 1 - alpha interval for p_treated / p_control from n pairs: `both` with the event in
    both arms, `treated_only`, `control_only`. Needs an event in the control arm."""
    treated, control = both + treated_only, both + control_only
    if control == 0 or n <= 0:
        raise ValueError("the ratio needs events in the control arm")
    z = float(quantile(stats.norm, 1 - alpha / 2))
    centre = math.log(treated / control) if treated else -LOG_BOUND

    def excess(log_phi: float, target: float) -> float:
        return score_statistic(math.exp(log_phi), both, treated_only, control_only, n) - target

    def root(target: float, start: float, end: float) -> float:
        if excess(end, target) * excess(start, target) > 0:
            return end  # the statistic never reaches the bound within the searched range
        return optimize.brentq(excess, min(start, end), max(start, end), args=(target,), xtol=1e-12)

    low = 0.0 if treated == 0 else math.exp(root(z, centre, -LOG_BOUND))
    high = math.exp(root(-z, centre, LOG_BOUND))
    return low, high
