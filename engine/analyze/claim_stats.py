"""The statistics that decide a claim (issue 21, rule 2).

A claim says its estimate lies in (low, high) (engine.kernel.contracts.Claimed: a direction or a
one-sided boundary leaves one end infinite; a range gives both), or, for an intersection-union
claim, that each of its parts does. Its p-value is the inversion of the estimate's own interval
family against the claimed boundary (one-sided; for a range the larger of the two one-sided ones,
the interval-based TOST; for several parts the largest over the parts). Holm's procedure across a
report's claims, at a family-wise one-sided 2.5%, gives each claim the level alpha_j it is decided
at, and the decision interval is the family's two-sided (1 - 2 alpha_j) interval (of the binding
part, the one with the largest p):
- supported: the interval lies inside the claimed region (every part's does);
- contradicted: it lies entirely outside it;
- otherwise not resolvable with this design.
The verdict is read off the printed interval, and supported <=> Holm-adjusted p < 2.5%, by
construction."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import statsmodels.api as sm
from scipy import stats

from engine.analyze.inference import HolmStep, claim_p, holm_steps, t_family, two_sided_p
from engine.kernel.contracts import ClaimEstimate, Claimed, ClaimOptions, ClaimPart

ALPHA = 0.05  # the two-sided level of every printed 95% interval
FAMILYWISE = 0.025  # one-sided, per side, before multiplicity: a single claim is decided by its 95% interval
POWER = 0.80
Z = float(stats.norm.ppf(1 - FAMILYWISE))
Verdict = Literal["supported", "contradicted", "not resolvable with this design"]
UNRESOLVED: Verdict = "not resolvable with this design"


def unusable(quantity: str, test: str, percent: bool, reason: str, n: int = 0, units: str = "",
             null: float = 0.0) -> ClaimEstimate:
    """An estimate that could not be made, and why."""
    return ClaimEstimate(math.nan, math.nan, math.nan, math.nan, n, quantity, test, percent, reason, None, null,
                         units)


def from_family(value: float, family, n: int, quantity: str, test: str, percent: bool = False, *, null: float = 0.0,
                units: str = "", detail: str = "") -> ClaimEstimate:
    """An estimate with its interval family: the 95% ends and the two-sided p against `null` are the
    family's own."""
    low, high = family(ALPHA)
    return ClaimEstimate(float(value), float(low), float(high), two_sided_p(family, null), n, quantity, test,
                         percent, None, family, null, units, detail)


def trend_across_models(rates: np.ndarray, params_b: np.ndarray, units_counted: int, percent: bool,
                        counted: str = "units") -> ClaimEstimate:
    """OLS slope of model-level rates on log2(parameters), per doubling, with its t family (models -
    2 df): the models are the units that vary in size, so between-model variation is the error
    term (pooling trials would treat model identity as size). n is the number of models; the units
    behind their rates are counted in `detail`. Needs 3 models of 2+ sizes."""
    y, x = np.asarray(rates, float), np.log2(np.asarray(params_b, float))
    quantity, test = "slope per doubling of parameters (model-level OLS)", "t interval of the slope, models - 2 df"
    detail = f"{units_counted} {counted}"
    if len(y) < 3 or len(np.unique(x)) < 2:
        return unusable(quantity, test, percent, f"needs at least 3 models of 2 or more sizes; have {len(y)}",
                        len(y), "models")
    fit = sm.OLS(y, sm.add_constant(x)).fit()
    se = float(fit.bse[1])
    if not (math.isfinite(se) and se > 0):
        return unusable(quantity, test, percent, "the models' rates lie exactly on a line: no error left to test",
                        len(y), "models")
    return from_family(float(fit.params[1]), t_family(float(fit.params[1]), se, len(y) - 2), len(y),
                       f"{quantity}, {len(y)} models", test, percent, units="models", detail=detail)


# ------------------------------------------------------------------------------------- the decision

def parts_of(est: ClaimEstimate, options: ClaimOptions) -> tuple[ClaimPart, ...]:
    """The conditions the claim holds under: the test's own parts, or the estimate with the claim."""
    return est.parts or (ClaimPart(options.claim, est, options.claimed(est.null)),)


def _usable(est: ClaimEstimate) -> bool:
    return est.reason is None and est.interval_at is not None


def part_p(part: ClaimPart) -> float:
    assert part.estimate.interval_at is not None
    return claim_p(part.estimate.interval_at, part.claimed.low, part.claimed.high)


def part_ps(est: ClaimEstimate, options: ClaimOptions) -> list[float] | None:
    """Each part's p-value against its claimed boundary; None when the claim has no estimate."""
    parts = parts_of(est, options)
    if not _usable(est) or not all(_usable(p.estimate) for p in parts):
        return None
    return [part_p(p) for p in parts]


def decision_p(est: ClaimEstimate, options: ClaimOptions) -> float:
    """The claim's p-value (NaN when it has no estimate): the largest over its parts of the inverted
    family's p against the claimed boundary (one-sided, or TOST for a range)."""
    ps = part_ps(est, options)
    return max(ps) if ps else math.nan


def verdict_of(low: float, high: float, claimed: Claimed) -> Verdict:
    """What an interval says about a claim: inside the claimed region, entirely outside it, or neither
    (a NaN end says nothing)."""
    if low > claimed.low and high < claimed.high:
        return "supported"
    if high < claimed.low or low > claimed.high:
        return "contradicted"
    return UNRESOLVED


def standard_error(est: ClaimEstimate) -> float:
    """The SE a 95% interval implies (normal approximation); NaN without an interval."""
    if not (math.isfinite(est.low) and math.isfinite(est.high)):
        return math.nan
    return (est.high - est.low) / (2 * float(stats.norm.ppf(1 - ALPHA / 2)))


def power_at(se: float, distance: float) -> float:
    """Power of the one-sided 2.5% test when the quantity lies `distance` beyond the claimed boundary."""
    if not math.isfinite(se) or se <= 0:
        return math.nan
    return float(stats.norm.cdf(distance / se - Z))


def range_power(se: float, low: float, high: float) -> float:
    """Power of the two one-sided 2.5% tests when the quantity lies at the range's centre."""
    if not math.isfinite(se) or se <= 0:
        return math.nan
    return float(max(0.0, 2 * stats.norm.cdf((high - low) / 2 / se - Z) - 1))


def minimum_detectable(se: float) -> float:
    """How far beyond the boundary the quantity must lie for 80% power at one-sided 2.5% (NaN without
    a standard error)."""
    if not math.isfinite(se) or se <= 0:
        return math.nan
    return (Z + float(stats.norm.ppf(POWER))) * se


@dataclass(frozen=True)
class PartDecision:
    label: str
    claimed: Claimed
    estimate: ClaimEstimate
    low: float  # at the claim's decision level
    high: float
    p: float
    verdict: Verdict


@dataclass(frozen=True)
class Decision:
    p: float  # the claim's p: one-sided against its boundary, TOST for a range, largest over parts
    holm_p: float  # Holm-adjusted across the report's claims
    alpha: float  # the one-sided level it is decided at (NaN: not tested)
    step: int  # its place in Holm's order, of `of` tested claims (0: not tested)
    of: int
    low: float  # the decision interval: two-sided 1 - 2 alpha, of the binding part
    high: float
    binding: str | None  # the binding part's label, for a claim of several parts
    power: float  # at the assumed effect (or a range's centre); NaN when none is assumed
    mdd: float
    verdict: Verdict
    why: str
    parts: tuple[PartDecision, ...] = field(default=())

    @property
    def level(self) -> float:
        """The decision interval's two-sided confidence level."""
        return 1 - 2 * self.alpha

    @property
    def bound(self) -> PartDecision | None:
        """The part the verdict is read from (the largest p); None when the claim was not tested."""
        return max(self.parts, key=lambda d: d.p) if self.parts else None


def _power(est: ClaimEstimate, options: ClaimOptions) -> tuple[float, float]:
    if est.parts:
        return math.nan, math.nan
    se = standard_error(est)
    if options.range is not None:
        return range_power(se, *options.range), minimum_detectable(se)
    return (power_at(se, options.effect) if options.effect is not None else math.nan), minimum_detectable(se)


def amount(x: float, percent: bool) -> str:
    """A value as the report prints it (a rate in percent); 0 as 0."""
    if not math.isfinite(x):
        return "—" if math.isnan(x) else ("∞" if x > 0 else "−∞")
    if x == 0:
        return "0"
    if percent:
        return f"{x * 100:.1f}%" if abs(x) < 0.1 else f"{x:.0%}"
    return f"{x:.3g}"


def boundary_text(claimed: Claimed, percent: bool) -> str:
    """Where the claim puts the quantity: above, below or inside."""
    if math.isfinite(claimed.low) and math.isfinite(claimed.high):
        return f"inside [{amount(claimed.low, percent)}, {amount(claimed.high, percent)}]"
    return (f"above {amount(claimed.low, percent)}" if math.isfinite(claimed.low)
            else f"below {amount(claimed.high, percent)}")


def _why(verdict: Verdict, claimed: Claimed, level: float, power: float, percent: bool) -> str:
    where = boundary_text(claimed, percent)
    interval = f"the {level:.4g}% interval"
    if verdict == "supported":
        return f"{interval} lies {where}"
    if verdict == "contradicted":
        return f"{interval} lies entirely outside the claim (claimed: {where})"
    assumed = (f"; the design had {power:.0%} power at the assumed effect" if math.isfinite(power) else "")
    return f"{interval} reaches across the claim's boundary (claimed: {where}){assumed}"


def decide(est: ClaimEstimate, options: ClaimOptions, holm: HolmStep | None,
           part_ps: list[float] | None = None) -> Decision:
    """One claim's verdict at its Holm step (None: the claim has no p-value); `part_ps`: its parts'
    p-values when already computed."""
    power, mdd = _power(est, options)
    if holm is None:
        reason = est.reason or next((p.estimate.reason for p in est.parts if p.estimate.reason), None) \
            or "the estimate has no interval family to test with"
        return Decision(math.nan, math.nan, math.nan, 0, 0, math.nan, math.nan, None, power, mdd, UNRESOLVED,
                        reason)
    parts = parts_of(est, options)
    part_ps = part_ps or [part_p(part) for part in parts]
    decided = []
    for part, p in zip(parts, part_ps):
        assert part.estimate.interval_at is not None
        low, high = part.estimate.interval_at(2 * holm.alpha)
        decided.append(PartDecision(part.label, part.claimed, part.estimate, low, high, p,
                                    verdict_of(low, high, part.claimed)))
    binding = max(range(len(decided)), key=lambda i: decided[i].p)
    bind = decided[binding]
    level = 100 * (1 - 2 * holm.alpha)
    why = _why(bind.verdict, bind.claimed, level, power, bind.estimate.percent)
    if len(decided) > 1:
        why = f"binding part ({bind.label}): {why}"
    return Decision(max(d.p for d in decided), holm.adjusted, holm.alpha, holm.step, holm.of, bind.low, bind.high,
                    bind.label if len(decided) > 1 else None, power, mdd, bind.verdict, why, tuple(decided))


def decide_claims(claims: list[tuple[ClaimOptions, ClaimEstimate]]) -> list[Decision]:
    """Every claim's verdict, Holm's procedure running across the claims that have a p-value."""
    ps = [part_ps(est, options) for options, est in claims]
    steps = holm_steps([max(p) if p else math.nan for p in ps], FAMILYWISE)
    return [decide(est, options, step, p) for (options, est), step, p in zip(claims, steps, ps)]
