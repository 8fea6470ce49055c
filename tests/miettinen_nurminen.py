"""An independent Miettinen-Nurminen score interval for the ratio of two independent proportions,
written out from the paper, to check engine.analyze.stats.ratio_score_interval against."""

import math

from scipy import optimize, stats

Z2 = stats.chi2.ppf(0.95, 1)


def mn_statistic(x1: int, n1: int, x2: int, n2: int, rr0: float) -> float:
    """Miettinen & Nurminen (1985) chi-square score statistic for H0: p1 / p2 = rr0, written out from
    the paper (restricted MLE of p2 from their quadratic; variance times N / (N - 1))."""
    n = n1 + n2
    a = n * rr0
    b = -(n1 * rr0 + x1 + n2 + x2 * rr0)
    c = x1 + x2
    p2 = (-b - math.sqrt(max(b * b - 4 * a * c, 0.0))) / (2 * a)
    p1 = p2 * rr0
    var = (p1 * (1 - p1) / n1 + rr0 ** 2 * p2 * (1 - p2) / n2) * n / (n - 1)
    diff = x1 / n1 - rr0 * x2 / n2
    if var <= 0:
        return 0.0 if diff == 0 else math.inf
    return diff * diff / var


def mn_interval(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float]:
    """All rr0 not rejected at 5%, found by bisection on log rr0 from the estimate outwards."""
    rr = (x1 / n1) / (x2 / n2)
    g = lambda t: mn_statistic(x1, n1, x2, n2, math.exp(t)) - Z2  # noqa: E731
    centre = math.log(rr) if rr > 0 else -30.0
    high = optimize.brentq(g, centre + 1e-6, centre + 60, xtol=1e-13)
    low = 0.0 if x1 == 0 else math.exp(optimize.brentq(g, centre - 60, centre - 1e-6, xtol=1e-13))
    return low, math.exp(high)
