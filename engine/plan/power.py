"""Precision and power of a planned design, before any call: the expected 95% interval half-width
of a rate at the planned N, the minimum detectable difference (MDD) of a comparison at 80% power
and alpha 0.05, and the N that reaches a target half-width.

Normal approximations, each with the design's dependence made explicit:
- clustering: n trials in clusters of m (an item repeated across seeds, the games of one seed
  under common random numbers) carry the information of n / deff trials, deff = 1 + (m - 1) ICC
  (Kish's design effect);
- pairing: two arms seen on the same items with outcome correlation rho have
  Var(p1 - p2) = (p1 q1 + p2 q2 - 2 rho sqrt(p1 q1 p2 q2)) / n.
The half-width is Wilson's at the effective N, the interval the reports print for a rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import optimize, stats

ALPHA = 0.05
POWER = 0.80


def design_effect(cluster_size: float, icc: float) -> float:
    """Kish's design effect 1 + (m - 1) ICC of clusters of m units (m <= 1: no clustering)."""
    if not 0 <= icc <= 1:
        raise ValueError(f"an intra-cluster correlation lies in [0, 1], not {icc}")
    return 1 + max(cluster_size - 1, 0) * icc


def rate_halfwidth(p: float, n: int, deff: float = 1.0, alpha: float = ALPHA) -> float:
    """Half-width of the Wilson interval at rate p and effective sample size n / deff."""
    if n <= 0:
        return math.nan
    n_eff = n / deff
    z = stats.norm.ppf(1 - alpha / 2)
    return z / (1 + z * z / n_eff) * math.sqrt(p * (1 - p) / n_eff + z * z / (4 * n_eff * n_eff))


def trials_for_halfwidth(p: float, target: float, deff: float = 1.0, alpha: float = ALPHA,
                         limit: int = 10**9) -> int:
    """The smallest N whose expected half-width at rate p is at most `target`."""
    if not 0 < target < 0.5:
        raise ValueError(f"a target half-width lies in (0, 0.5), not {target}")
    low, high = 1, 1
    while rate_halfwidth(p, high, deff, alpha) > target:
        low, high = high, high * 2
        if high > limit:
            raise ValueError(f"no N up to {limit} reaches a half-width of {target}")
    while low < high:  # the half-width falls as N grows
        mid = (low + high) // 2
        if rate_halfwidth(p, mid, deff, alpha) <= target:
            high = mid
        else:
            low = mid + 1
    return low


def _diff_sd(p1: float, p2: float, rho: float) -> float:
    v1, v2 = p1 * (1 - p1), p2 * (1 - p2)
    return math.sqrt(max(v1 + v2 - 2 * rho * math.sqrt(v1 * v2), 0.0))


def power_two_rates(p1: float, p2: float, n: float, *, deff: float = 1.0, rho: float = 0.0,
                    alpha: float = ALPHA) -> float:
    """Power of the two-sided z-test of p1 = p2 with n units per arm (paired with correlation rho
    when rho > 0; rho = 0 is two independent arms of n each). Under the null both arms have the
    mean rate; `deff` inflates both variances."""
    n_eff = n / deff
    null_sd = _diff_sd((p1 + p2) / 2, (p1 + p2) / 2, rho) / math.sqrt(n_eff)
    alt_sd = _diff_sd(p1, p2, rho) / math.sqrt(n_eff)
    if alt_sd == 0:
        return 1.0 if p1 != p2 else alpha
    z = stats.norm.ppf(1 - alpha / 2)
    delta = abs(p1 - p2)
    return float(stats.norm.cdf((delta - z * null_sd) / alt_sd) + stats.norm.cdf((-delta - z * null_sd) / alt_sd))


def mdd_rates(p: float, n: float, *, deff: float = 1.0, rho: float = 0.0, alpha: float = ALPHA,
              power: float = POWER) -> float | None:
    """The smallest difference from base rate p that a comparison of two arms of n units reaches
    with the given power, moving p towards 1/2 and beyond (the direction with the most room); None
    when no difference within [0, 1] does."""
    base = min(p, 1 - p)
    room = 1 - base

    def excess(d: float) -> float:
        return power_two_rates(base, base + d, n, deff=deff, rho=rho, alpha=alpha) - power

    if excess(room) < 0:
        return None
    # No arm of n units shows a difference below 1/n; with strongly correlated pairs even that one
    # may already be detected.
    smallest = min(1 / n, room)
    if excess(smallest) >= 0:
        return float(smallest)
    return float(optimize.brentq(excess, smallest, room, xtol=1e-7))


def mdd_means(sd: float, n: float, *, deff: float = 1.0, rho: float = 0.0, alpha: float = ALPHA,
              power: float = POWER) -> float:
    """Minimum detectable difference of two means with common SD, n units per arm (paired with
    correlation rho): (z_{1-alpha/2} + z_power) * SD * sqrt(2 (1 - rho) deff / n)."""
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return float(z * sd * math.sqrt(2 * (1 - rho) * deff / n))


@dataclass(frozen=True)
class Dependence:
    """What the precision of an arm depends on beyond its N: its clusters and their correlation,
    and (for a comparison) the correlation of paired outcomes. `source` says whether the figures
    were measured on a database or assumed."""

    cluster_size: float = 1.0
    icc: float = 0.0
    rho: float = 0.0
    source: str = "assumed"

    @property
    def deff(self) -> float:
        return design_effect(self.cluster_size, self.icc)
